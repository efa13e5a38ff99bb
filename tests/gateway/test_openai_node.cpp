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
#include "node_runner.h"

namespace swarm::gateway::swarm_test {
namespace {

TEST(OpenAiNodeClient, StreamedChatAndCompletionGetTheReferenceText) {
  const std::string log_path = absl::StrCat(::testing::TempDir(), "openai-node-", ::getpid());
  if (const std::string why = PrepareOpenAiNodeClient(log_path); !why.empty()) {
    GTEST_SKIP() << why << ": the official OpenAI client cannot be run";
  }

  LocalSwarm swarm;
  const absl::Status started = swarm.Start();
  ASSERT_TRUE(started.ok()) << started;
  const ProgramRun run =
      RunProgram({FindProgram("node"), kNodeTestDir + "/openai_client.mjs"},
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
