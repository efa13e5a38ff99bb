// Test support for the CLI tests: the real `swarm` binary (SWARM_BINARY) run as a user runs it,
// with its exit code, stdout and stderr, and the stories260K model from ../shared.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "base/subprocess.h"
#include "support/files.h"
#include "support/shared_model.h"

namespace swarm::cli_test {

inline const std::string& kModel = test_support::kSharedModel;

using test_support::ReadFile;

struct Result {
  int exit_code = -1;
  std::string stdout_text;
  std::string stderr_text;
};

// Runs `swarm ARGS...` (or another build of it, `binary`) to completion (2 minutes at most).
inline Result RunSwarm(std::vector<std::string> args, const std::string& binary = SWARM_BINARY) {
  using std::chrono::seconds;
  args.insert(args.begin(), binary);
  // One file per run: tests of one binary may run in parallel (ctest runs each test on its own).
  static std::atomic<int> runs{0};
  const std::string stderr_path = testing::TempDir() + "/swarm_cli_stderr_" +
                                  std::to_string(::getpid()) + "_" + std::to_string(++runs);
  Subprocess::Options options;
  options.argv = args;
  options.stderr_path = stderr_path;
  auto process = Subprocess::Start(options);
  EXPECT_TRUE(process.ok()) << process.status();
  Result result;
  if (!process.ok()) return result;
  auto out = (*process)->ReadAll(seconds(120));
  EXPECT_TRUE(out.ok()) << out.status();
  result.stdout_text = out.ok() ? *out : "";
  auto code = (*process)->Wait(seconds(30));
  EXPECT_TRUE(code.ok()) << code.status();
  result.exit_code = code.ok() ? *code : -1;
  result.stderr_text = ReadFile(stderr_path);
  std::remove(stderr_path.c_str());
  return result;
}

}  // namespace swarm::cli_test
