// The official OpenAI client for Node.js sending n, penalties, logit_bias, a stop list, seed and
// response_format (json_object, json_schema) to `swarm api` over a real 3-peer swarm: runs
// openai_fields.mjs with `node` and passes when the script does. Skipped only when node or npm is
// missing, or the package is missing and the registry unreachable.
#include <unistd.h>

#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "local_swarm.h"
#include "node_runner.h"

namespace swarm::gateway::swarm_test {
namespace {

TEST(OpenAiNodeClient, RequestFieldsBeyondThePrompt) {
  const std::string log_path = absl::StrCat(::testing::TempDir(), "openai-fields-", ::getpid());
  if (const std::string why = PrepareOpenAiNodeClient(log_path); !why.empty()) {
    if (HasFailure()) return;
    GTEST_SKIP() << why;
  }
  LocalSwarm swarm;
  const absl::Status started = swarm.Start();
  ASSERT_TRUE(started.ok()) << started;
  const ProgramRun run = RunProgram({FindProgram("node"), kNodeTestDir + "/openai_fields.mjs"},
                                    {"SWARM_API_URL=" + swarm.url()}, log_path + ".node.log",
                                    std::chrono::seconds(100));
  std::cout << run.out;
  EXPECT_EQ(run.exit_code, 0) << run.out << ReadFile(log_path + ".node.log") << swarm.Logs();
  EXPECT_NE(run.out.find(": 7 passed, 0 failed"), std::string::npos) << run.out;
}

}  // namespace
}  // namespace swarm::gateway::swarm_test
