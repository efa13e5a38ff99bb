// Running the official OpenAI client for Node.js from a test: a program run to completion with
// its output, and the `openai` npm package installed into tests/gateway/node_modules when missing
// (what scripts/setup.sh does). One thread.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "local_swarm.h"

namespace swarm::gateway::swarm_test {

inline const std::string kNodeTestDir = SWARM_SOURCE_DIR "/tests/gateway";

struct ProgramRun {
  int exit_code = -1;
  bool timed_out = false;
  std::string out;
};

// Runs argv to completion; its exit code and stdout (stderr goes to `log_path`).
inline ProgramRun RunProgram(const std::vector<std::string>& argv,
                             const std::vector<std::string>& env, const std::string& log_path,
                             std::chrono::seconds timeout) {
  ProgramRun run;
  Subprocess::Options options;
  options.argv = argv;
  options.extra_env = env;
  options.stderr_path = log_path;
  auto process = Subprocess::Start(options);
  if (!process.ok()) {
    run.out = process.status().ToString();
    return run;
  }
  auto out = (*process)->ReadAll(std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
  run.out = out.ok() ? *out : out.status().ToString();
  run.timed_out = absl::IsDeadlineExceeded(out.status());
  auto code = (*process)->Wait(std::chrono::seconds(5));
  run.exit_code = code.ok() ? *code : -1;
  return run;
}

// npm's error codes for a registry it cannot reach (no route, no DNS, refused, timed out).
inline bool IsNetworkFailure(const std::string& npm_output) {
  for (const char* code : {"ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNREFUSED", "ECONNRESET",
                           "ENETUNREACH", "EHOSTUNREACH"}) {
    if (npm_output.find(code) != std::string::npos) return true;
  }
  return false;
}

// Why the client cannot run here ("" when it can): node or npm missing, or the package neither
// installed nor installable because the registry is unreachable. Fails the test (and returns a
// reason) when npm reached the registry and still failed.
inline std::string PrepareOpenAiNodeClient(const std::string& log_path) {
  const std::string npm = FindProgram("npm");
  if (FindProgram("node").empty() || npm.empty()) {
    return "node or npm is not installed (scripts/setup.sh installs nodejs and npm)";
  }
  if (std::filesystem::exists(kNodeTestDir + "/node_modules/openai/package.json")) return "";
  const ProgramRun install = RunProgram(
      {npm, "install", "--prefix", kNodeTestDir, "--no-audit", "--no-fund", "--no-package-lock",
       "--no-save", "--fetch-retries=1", "--fetch-timeout=20000", "openai@4"},
      {}, log_path + ".npm.log", std::chrono::seconds(80));
  const std::string npm_output = install.out + ReadFile(log_path + ".npm.log");
  if (install.exit_code == 0) return "";
  if (install.timed_out || IsNetworkFailure(npm_output)) {
    return "the openai npm package is not installed and the registry cannot be reached:\n" +
           npm_output;
  }
  ADD_FAILURE() << "cannot install the openai npm package into tests/gateway/node_modules:\n"
                << npm_output;
  return "npm install failed";
}

}  // namespace swarm::gateway::swarm_test
