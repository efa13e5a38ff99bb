// `swarm generate` as a user runs it: the real binary, the real model, stdout compared byte for
// byte with the reference continuation.
#include <gtest/gtest.h>

#include "cli_test_util.h"
#include "support/shared_model.h"

namespace swarm {
namespace {

using cli_test::kModel;
using cli_test::ReadFile;
using cli_test::Result;
using cli_test::RunSwarm;

TEST(GenerateCliTest, GreedyOutputEqualsTheReferenceByteForByte) {
  for (const char* backend : {"reference", "auto"}) {
    Result r = RunSwarm(
        {"generate", "-m", kModel, "-p", "", "-n", "200", "--temp", "0", "--backend", backend});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.stdout_text, ReadFile(test_support::kSharedReferenceText)) << "backend " << backend;
  }
}

TEST(GenerateCliTest, SeededSamplingIsReproducible) {
  std::vector<std::string> args = {"generate", "-m",     kModel, "-p",     "Once upon", "-n",
                                   "40",       "--temp", "0.9",  "--seed", "42"};
  Result a = RunSwarm(args), b = RunSwarm(args);
  EXPECT_EQ(a.exit_code, 0);
  EXPECT_EQ(a.stdout_text, b.stdout_text);
  EXPECT_GT(a.stdout_text.size(), 10u);
}

TEST(GenerateCliTest, BadInputGivesAnErrorNotACrash) {
  EXPECT_NE(RunSwarm({"generate", "-m", "/nonexistent.gguf", "-p", "x"}).exit_code, 0);
  EXPECT_NE(RunSwarm({"generate", "-m", kModel, "--temp", "-1"}).exit_code, 0);
  EXPECT_NE(RunSwarm({"generate", "-m", kModel, "-n", "abc"}).exit_code, 0);
  EXPECT_NE(RunSwarm({"generate", "-m", test_support::kSharedReferenceText}).exit_code, 0);
  const int code = RunSwarm({"generate", "-m", kModel, "--backend", "nope"}).exit_code;
  EXPECT_NE(code, 0);
  EXPECT_LT(code, 128) << "killed by a signal";
}

}  // namespace
}  // namespace swarm
