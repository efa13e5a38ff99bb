// Models whose matrices are Q2_K, Q3_K or IQ4_XS, end to end through the real binary: make-model
// writes them, inspect names the type, slice cuts them, and generate runs them on the reference
// backend and the optimized CPU backend, with the same text for any thread count.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli_test_util.h"
#include "support/files.h"

namespace swarm {
namespace {

using cli_test::Result;
using cli_test::RunSwarm;

TEST(LowBitTypesCliTest, SyntheticModelsLoadSliceAndGenerate) {
  test_support::ScratchDir dir;
  for (const char* type : {"q2_k", "q3_k", "iq4_xs"}) {
    SCOPED_TRACE(type);
    const std::string model = dir.File(std::string(type) + ".gguf");
    Result made =
        RunSwarm({"make-model", "--n-layer", "2", "--n-embd", "256", "--n-ff", "512", "--n-head",
                  "4", "--n-head-kv", "2", "--n-vocab", "300", "--type", type, "-o", model});
    ASSERT_EQ(made.exit_code, 0) << made.stderr_text;

    Result inspected = RunSwarm({"inspect", model});
    EXPECT_EQ(inspected.exit_code, 0) << inspected.stderr_text;
    const std::string name = std::string(type) == "iq4_xs" ? "iq4_xs" : std::string(type, 2) + "_K";
    EXPECT_NE(inspected.stdout_text.find(name), std::string::npos) << inspected.stdout_text;

    const std::string part = dir.File(std::string(type) + "-part.gguf");
    Result sliced = RunSwarm({"slice", "-m", model, "--blocks", "1:2", "-o", part});
    EXPECT_EQ(sliced.exit_code, 0) << sliced.stderr_text;

    std::vector<std::string> args = {"generate", "-m", model,    "-p", "Once upon",
                                     "-n",       "12", "--temp", "0",  "--ignore-eos"};
    auto with = [&](std::vector<std::string> extra) {
      std::vector<std::string> a = args;
      a.insert(a.end(), extra.begin(), extra.end());
      return RunSwarm(a);
    };
    Result reference = with({"--backend", "reference"});
    EXPECT_EQ(reference.exit_code, 0) << reference.stderr_text;
    EXPECT_FALSE(reference.stdout_text.empty());
    for (const char* device : {"cpu:generic", "cpu"}) {
      Result one = with({"--backend", device, "-t", "1"});
      Result three = with({"--backend", device, "-t", "3"});
      EXPECT_EQ(one.exit_code, 0) << device << ": " << one.stderr_text;
      EXPECT_FALSE(one.stdout_text.empty()) << device;
      EXPECT_EQ(one.stdout_text, three.stdout_text) << device;
    }
  }
}

}  // namespace
}  // namespace swarm
