// `swarm tokenize`, run as a user would: text on stdin, ids on stdout, errors on stderr with
// exit status 1.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "gguf_test_util.h"

namespace swarm::model {
namespace {

const std::string kSpm = SWARM_SHARED_DIR "/tokenizer-vectors/ggml-vocab-llama-spm.gguf";
const std::string kGpt2 = SWARM_SHARED_DIR "/tokenizer-vectors/ggml-vocab-gpt-2.gguf";

struct Result {
  int status = -1;
  std::string out;
  std::string err;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class TokenizeCommand : public ::testing::Test {
 protected:
  Result Run(const std::string& args, const std::string& input) {
    const std::string in = dir_.File("in"), out = dir_.File("out"), err = dir_.File("err");
    EXPECT_TRUE(testing::WriteFile(in, input.data(), input.size()));
    const std::string command = std::string("'") + SWARM_BINARY + "' tokenize " + args + " < '" +
                                in + "' > '" + out + "' 2> '" + err + "'";
    const int raw = std::system(command.c_str());
    Result r;
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    r.out = Slurp(out);
    r.err = Slurp(err);
    return r;
  }
  testing::ScratchDir dir_;
};

TEST_F(TokenizeCommand, PrintsIdsOnOneLine) {
  Result r = Run("-m '" + kSpm + "'", "Hello world");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "15043 3186\n");
  EXPECT_EQ(r.err, "");

  r = Run("-m '" + kSpm + "' --add-bos", "Hello world");
  EXPECT_EQ(r.out, "1 15043 3186\n");
  r = Run("-m '" + kSpm + "' --parse-special", "<s>Hello</s>");
  EXPECT_EQ(r.out, "1 15043 2\n");
  // All of stdin, newlines included ("\n\n\n" is one of the reference vectors).
  r = Run("--model '" + kGpt2 + "'", "\n\n\n");
  EXPECT_EQ(r.out, "628 198\n");
  r = Run("-m '" + kGpt2 + "' --parse-special", "Hello<|endoftext|>");
  EXPECT_EQ(r.out, "15496 50256\n");
  r = Run("-m '" + kGpt2 + "'", "");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, "\n");
}

TEST_F(TokenizeCommand, ErrorsGoToStderr) {
  Result r = Run("-m '" + dir_.File("missing.gguf") + "'", "x");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("error:"), std::string::npos) << r.err;

  ASSERT_TRUE(testing::WriteFile(dir_.File("junk.gguf"), "not a gguf file", 15));
  r = Run("-m '" + dir_.File("junk.gguf") + "'", "x");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("GGUF"), std::string::npos) << r.err;

  r = Run("", "x");  // -m is required
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(r.out, "");
}

}  // namespace
}  // namespace swarm::model
