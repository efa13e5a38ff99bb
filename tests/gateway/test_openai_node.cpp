// The official OpenAI client for Node.js against `swarm api` over a real 3-peer swarm: runs
// openai_client.mjs (completion, streamed completion, logprobs and echo, chat whole, streamed and
// with logprobs, an error) with `node`, and passes when the script does. The `openai` package
// lives in tests/gateway/node_modules: scripts/setup.sh installs it; so does this test when it is
// missing and npm is there. Skipped only when node or npm is not installed.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "local_swarm.h"

namespace swarm::gateway::swarm_test {
namespace {

const std::string kTestDir = SWARM_SOURCE_DIR "/tests/gateway";

// Runs argv to completion; its exit code and stdout (stderr goes to `log_path`).
struct ProgramRun {
  int exit_code = -1;
  bool timed_out = false;
  std::string out;
};
ProgramRun RunProgram(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                      const std::string& log_path, std::chrono::seconds timeout) {
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
bool IsNetworkFailure(const std::string& npm_output) {
  for (const char* code : {"ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNREFUSED", "ECONNRESET",
                           "ENETUNREACH", "EHOSTUNREACH"}) {
    if (npm_output.find(code) != std::string::npos) return true;
  }
  return false;
}

TEST(OpenAiNodeClient, StreamedChatAndCompletionGetTheReferenceText) {
  const std::string node = FindProgram("node");
  const std::string npm = FindProgram("npm");
  if (node.empty() || npm.empty()) {
    GTEST_SKIP() << "node or npm is not installed (scripts/setup.sh installs nodejs and npm): "
                    "the official OpenAI client cannot be run";
  }
  const std::string log_path = absl::StrCat(::testing::TempDir(), "openai-node-", ::getpid());
  if (!std::filesystem::exists(kTestDir + "/node_modules/openai/package.json")) {
    // What scripts/setup.sh does, for a checkout that skipped it.
    const ProgramRun install = RunProgram(
        {npm, "install", "--prefix", kTestDir, "--no-audit", "--no-fund", "--no-package-lock",
         "--no-save", "--fetch-retries=1", "--fetch-timeout=20000", "openai@4"},
        {}, log_path + ".npm.log", std::chrono::seconds(80));
    const std::string npm_output = install.out + ReadFile(log_path + ".npm.log");
    if (install.exit_code != 0 && (install.timed_out || IsNetworkFailure(npm_output))) {
      // The package registry cannot be reached from here: nothing about the gateway is known.
      GTEST_SKIP() << "the openai npm package is not installed and the registry cannot be "
                      "reached, so the official client cannot be run:\n"
                   << npm_output;
    }
    ASSERT_EQ(install.exit_code, 0)
        << "cannot install the openai npm package into tests/gateway/node_modules:\n"
        << npm_output;
  }

  LocalSwarm swarm;
  const absl::Status started = swarm.Start();
  ASSERT_TRUE(started.ok()) << started;
  const ProgramRun run =
      RunProgram({node, kTestDir + "/openai_client.mjs"},
                 {"SWARM_API_URL=" + swarm.url(), "SWARM_REFERENCE=" + kReferencePath},
                 log_path + ".node.log", std::chrono::seconds(90));
  std::cout << run.out;
  EXPECT_EQ(run.exit_code, 0) << run.out << ReadFile(log_path + ".node.log") << swarm.Logs();
  // Every check ran (the script counts them; each prints "ok N - ...").
  const size_t checks = static_cast<size_t>(std::count(run.out.begin(), run.out.end(), '\n'));
  EXPECT_NE(run.out.find(absl::StrCat(": ", checks - 1, " passed, 0 failed")), std::string::npos)
      << run.out;
}

}  // namespace
}  // namespace swarm::gateway::swarm_test
