// `--cache-type-k` / `--cache-type-v` on `swarm generate`, `serve`, `bench` and `api`: the real
// binary with the real model gives the reference text with an f32 or an f16 cache (f16 is the
// default), and a value it cannot use is a clear usage error naming the flag, never a crash.
#include <gtest/gtest.h>

#include "cli_test_util.h"

namespace swarm {
namespace {

using cli_test::kModel;
using cli_test::ReadFile;
using cli_test::Result;
using cli_test::RunSwarm;

TEST(CacheTypeCliTest, GreedyTextEqualsTheReferenceWithEitherFloatCache) {
  for (const char* type : {"f32", "f16"}) {
    Result r = RunSwarm({"generate", "-m", kModel, "-p", "", "-n", "200", "--temp", "0",
                         "--cache-type-k", type, "--cache-type-v", type});
    EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
    EXPECT_EQ(r.stdout_text, ReadFile(SWARM_SHARED_DIR "/models/stories260K.greedy-200.txt"))
        << type;
  }
}

TEST(CacheTypeCliTest, UnknownTypesAreRefusedNamingTheFlag) {
  const std::vector<std::vector<std::string>> commands = {
      {"generate", "-m", kModel, "-p", "x", "-n", "4"},
      {"bench", "-m", kModel, "-p", "8", "-n", "4", "-r", "1"},
      {"serve", "-m", kModel, "--blocks", "0:1", "--no-dht"},
      {"api", "-m", kModel},
  };
  for (const std::string flag : {"--cache-type-k", "--cache-type-v"}) {
    for (const std::string value : {"q4_0", "f64", ""}) {
      for (std::vector<std::string> args : commands) {
        args.insert(args.end(), {flag, value});
        const Result r = RunSwarm(args);
        EXPECT_NE(r.exit_code, 0) << args[0] << " " << flag << " " << value;
        EXPECT_LT(r.exit_code, 128) << args[0] << ": killed by a signal";
        EXPECT_NE(r.stderr_text.find(flag), std::string::npos) << args[0] << ": " << r.stderr_text;
      }
    }
  }
}

// stories260K's heads have 8 values: a q8_0 block (32) would span heads, which llama.cpp refuses
// too. The error says why and what to use instead.
TEST(CacheTypeCliTest, Q8CacheOnHeadsNotAMultipleOf32IsAClearError) {
  Result r = RunSwarm({"generate", "-m", kModel, "-p", "x", "-n", "4", "--cache-type-k", "q8_0"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.exit_code, 128);
  EXPECT_NE(r.stderr_text.find("multiple of 32"), std::string::npos) << r.stderr_text;
}

}  // namespace
}  // namespace swarm
