// `swarm generate` as a user runs it: the real binary, the real model, stdout compared byte for
// byte with the reference continuation.
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "base/subprocess.h"

namespace swarm {
namespace {

using std::chrono::seconds;

const std::string kModel = SWARM_SHARED_DIR "/models/stories260K.gguf";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Result {
  int exit_code = -1;
  std::string stdout_text;
};

Result RunSwarm(std::vector<std::string> args) {
  args.insert(args.begin(), SWARM_BINARY);
  Subprocess::Options options;
  options.argv = args;
  options.stderr_path = "/dev/null";
  auto process = Subprocess::Start(options);
  EXPECT_TRUE(process.ok()) << process.status();
  Result result;
  auto out = (*process)->ReadAll(seconds(120));
  EXPECT_TRUE(out.ok()) << out.status();
  result.stdout_text = out.ok() ? *out : "";
  auto code = (*process)->Wait(seconds(30));
  EXPECT_TRUE(code.ok()) << code.status();
  result.exit_code = code.ok() ? *code : -1;
  return result;
}

TEST(GenerateCliTest, GreedyOutputEqualsTheReferenceByteForByte) {
  for (const char* backend : {"reference", "auto"}) {
    Result r = RunSwarm({"generate", "-m", kModel, "-p", "", "-n", "200", "--temp", "0", "--backend",
                    backend});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.stdout_text, ReadFile(SWARM_SHARED_DIR "/models/stories260K.greedy-200.txt"))
        << "backend " << backend;
  }
}

TEST(GenerateCliTest, SeededSamplingIsReproducible) {
  std::vector<std::string> args = {"generate", "-m", kModel, "-p", "Once upon", "-n", "40",
                                   "--temp", "0.9", "--seed", "42"};
  Result a = RunSwarm(args), b = RunSwarm(args);
  EXPECT_EQ(a.exit_code, 0);
  EXPECT_EQ(a.stdout_text, b.stdout_text);
  EXPECT_GT(a.stdout_text.size(), 10u);
}

TEST(GenerateCliTest, BadInputGivesAnErrorNotACrash) {
  EXPECT_NE(RunSwarm({"generate", "-m", "/nonexistent.gguf", "-p", "x"}).exit_code, 0);
  EXPECT_NE(RunSwarm({"generate", "-m", kModel, "--temp", "-1"}).exit_code, 0);
  EXPECT_NE(RunSwarm({"generate", "-m", kModel, "-n", "abc"}).exit_code, 0);
  EXPECT_NE(RunSwarm({"generate", "-m", SWARM_SHARED_DIR "/models/stories260K.greedy-200.txt"}).exit_code,
            0);
  const int code = RunSwarm({"generate", "-m", kModel, "--backend", "nope"}).exit_code;
  EXPECT_NE(code, 0);
  EXPECT_LT(code, 128) << "killed by a signal";
}

}  // namespace
}  // namespace swarm
