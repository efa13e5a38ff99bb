// `swarm inspect`, `swarm slice` and `swarm make-model`, run as a user would: output on stdout,
// errors on stderr with a non-zero exit status.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "gguf_test_util.h"
#include "model/gguf.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "support/shared_model.h"

namespace swarm::model {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string& kStories = test_support::kSharedModel;

struct Result {
  int status = -1;
  std::string out;
  std::string err;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class GgufCommands : public ::testing::Test {
 protected:
  Result Run(const std::string& args) {
    const std::string out = dir_.File("stdout"), err = dir_.File("stderr");
    const std::string command = std::string("'") + SWARM_BINARY + "' " + args + " > '" + out +
                                "' 2> '" + err + "' < /dev/null";
    const int raw = std::system(command.c_str());
    Result r;
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    r.out = Slurp(out);
    r.err = Slurp(err);
    return r;
  }
  testing::ScratchDir dir_;
};

TEST_F(GgufCommands, InspectStories260K) {
  Result r = Run("inspect '" + kStories + "' --array-items 3");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, HasSubstr("GGUF version 3, alignment 32"));
  EXPECT_THAT(r.out, HasSubstr("metadata (19 keys)"));
  EXPECT_THAT(r.out, HasSubstr("string[512]"));
  EXPECT_THAT(r.out, HasSubstr("[\"<unk>\", \"<s>\", \"</s>\", ... (509 more)]"));
  EXPECT_THAT(r.out, HasSubstr("tensors (48, 1171200 bytes)"));
  EXPECT_THAT(r.out, HasSubstr("blk.4.ffn_down.weight"));
  EXPECT_THAT(r.out, HasSubstr("[172, 64]"));
  EXPECT_THAT(r.out, HasSubstr("heads          8 (KV 4, head dim 8)"));
  EXPECT_THAT(r.out, HasSubstr("n_vocab        512"));
  auto file = GgufFile::Open(kStories);
  ASSERT_TRUE(file.ok());
  EXPECT_THAT(r.out, HasSubstr("model_id       " + ReadModelConfig(**file)->model_id));
}

TEST_F(GgufCommands, InspectErrors) {
  const std::string bad = dir_.File("bad.gguf");
  const auto bytes = test_support::ReadBytes(kStories);
  ASSERT_TRUE(testing::WriteFile(bad, bytes.data(), 5000));
  Result r = Run("inspect '" + bad + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, HasSubstr("error: "));
  EXPECT_THAT(r.err, HasSubstr("bad.gguf"));
  EXPECT_EQ(r.out, "");
  r = Run("inspect '" + dir_.File("missing.gguf") + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, HasSubstr("cannot open"));
  // A valid GGUF that is no supported model is not an error.
  r = Run("inspect '" SWARM_SHARED_DIR "/tokenizer-vectors/ggml-vocab-gpt-2.gguf'");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("unavailable: "));
}

TEST_F(GgufCommands, SliceAndInspectTheSlice) {
  const std::string part = dir_.File("part.gguf");
  Result r = Run("slice -m '" + kStories + "' --blocks 1:3 -o '" + part + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("blocks [1, 3), 18 tensors"));
  r = Run("inspect '" + part + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("slice          blocks [1, 3) of 5"));
  EXPECT_THAT(r.out, Not(HasSubstr("token_embd.weight")));

  const std::string tail = dir_.File("tail.gguf");
  r = Run("slice -m '" + kStories + "' --blocks 3:5 --with-client -o '" + tail + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  auto file = GgufFile::Open(tail);
  ASSERT_TRUE(file.ok()) << file.status();
  auto config = ReadModelConfig(**file);
  ASSERT_TRUE(config.ok());
  EXPECT_TRUE(LoadClientWeights(**file, *config).ok());
  EXPECT_TRUE(LoadBlockWeights(**file, *config, 3, 5).ok());

  r = Run("slice -m '" + kStories + "' --blocks 4:9 -o '" + dir_.File("x.gguf") + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, HasSubstr("not a range inside the model's 5 blocks"));
  r = Run("slice -m '" + kStories + "' --blocks 4 -o '" + dir_.File("x.gguf") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("not of the form A:B"));
  r = Run("slice -m '" + part + "' --blocks 0:2 -o '" + dir_.File("x.gguf") + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, HasSubstr("holding blocks [1, 3) only"));
}

TEST_F(GgufCommands, MakeModel) {
  const std::string path = dir_.File("tiny.gguf");
  Result r =
      Run("make-model --n-layer 2 --n-embd 64 --n-ff 128 --n-head 4 --n-head-kv 2 --n-vocab 300 "
          "--type q8_0 --seed 9 --context 256 -t 2 -o '" +
          path + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("2 blocks, n_embd 64, n_ff 128, 4 heads (2 KV), vocab 300, q8_0"));
  auto file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  auto config = ReadModelConfig(**file);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->n_ctx_train, 256);
  EXPECT_EQ(config->n_head_kv, 2);
  auto blocks = LoadBlockWeights(**file, *config, 0, 2);
  ASSERT_TRUE(blocks.ok()) << blocks.status();
  EXPECT_EQ((*blocks)[0].wq.type, kernels::GgmlType::kQ8_0);

  // Same seed, same bytes.
  const std::string again = dir_.File("again.gguf");
  r =
      Run("make-model --n-layer 2 --n-embd 64 --n-ff 128 --n-head 4 --n-head-kv 2 --n-vocab 300 "
          "--type q8_0 --seed 9 --context 256 -t 1 -o '" +
          again + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(test_support::ReadBytes(path), test_support::ReadBytes(again));

  r = Run("make-model --preset stories260k-shape --type f32 -o '" + dir_.File("s.gguf") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("5 blocks, n_embd 64, n_ff 172, 8 heads (4 KV), vocab 512"));

  r = Run("make-model --n-layer 2 -o '" + dir_.File("x.gguf") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("--n-embd is required"));
  r = Run("make-model --preset nope -o '" + dir_.File("x.gguf") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown preset"));
  r = Run("make-model --preset stories260k-shape --type iq2_xxs -o '" + dir_.File("x.gguf") + "'");
  EXPECT_EQ(r.status, 2);
  r = Run("make-model --preset stories260k-shape --n-head 7 -o '" + dir_.File("x.gguf") + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, HasSubstr("n_head"));
}

TEST_F(GgufCommands, MakeModelArchitectures) {
  const std::string qwen3 = dir_.File("qwen3.gguf");
  Result r =
      Run("make-model --preset stories260k-shape --arch qwen3 --type q8_0 -o '" + qwen3 + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  r = Run("inspect '" + qwen3 + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("head dim 16"));  // not 64 / 8
  EXPECT_THAT(r.out, HasSubstr("qk_norm        yes"));

  const std::string llama3 = dir_.File("llama3.gguf");
  r =
      Run("make-model --preset stories260k-shape --arch llama3 --rope-scaling linear "
          "--rope-scaling-factor 2 --type f16 -o '" +
          llama3 + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  // A slice keeps the frequency factors and the scaling.
  const std::string part = dir_.File("llama3-part.gguf");
  r = Run("slice -m '" + llama3 + "' --blocks 1:3 -o '" + part + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  for (const std::string& path : {llama3, part}) {
    auto file = GgufFile::Open(path);
    ASSERT_TRUE(file.ok()) << file.status();
    auto config = ReadModelConfig(**file);
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(config->rope.freq_factors.size(), 4u) << path;
    EXPECT_EQ(config->rope.freq_scale, 0.5f) << path;
  }
  r = Run("inspect '" + part + "'");
  EXPECT_THAT(r.out, HasSubstr("rope_freqs factors, scale 2"));

  // Refused by the flag parser (CLI11's validation exit code), naming the value.
  r = Run("make-model --preset stories260k-shape --arch mamba -o '" + dir_.File("x.gguf") + "'");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.err, HasSubstr("mamba"));
  r = Run("make-model --preset stories260k-shape --rope-scaling longrope -o '" +
          dir_.File("x.gguf") + "'");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.err, HasSubstr("longrope"));
}

TEST_F(GgufCommands, HelpHasExamples) {
  for (const char* cmd : {"inspect", "slice", "make-model"}) {
    Result r = Run(std::string(cmd) + " --help");
    EXPECT_EQ(r.status, 0) << cmd;
    EXPECT_THAT(r.out, HasSubstr("Examples:")) << cmd;
  }
}

}  // namespace
}  // namespace swarm::model
