// WriteSyntheticModel: every weight type loads through ReadModelConfig + LoadBlockWeights +
// LoadClientWeights, the bytes depend only on the seed (not the thread count), values have the
// intended scale, block-size fallbacks, and the copied or built-in vocabulary.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <set>

#include "gguf_test_util.h"
#include "kernels/quant_reference.h"
#include "model/gguf.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "model/synthetic_model.h"
#include "model/tokenizer.h"

namespace swarm::model {
namespace {

using kernels::GgmlType;
using test_support::ReadBytes;
using ::testing::HasSubstr;
using testing::ScratchDir;

SyntheticModelSpec Tiny(GgmlType type) {
  SyntheticModelSpec s;
  s.n_layer = 2;
  s.n_embd = 256;  // a multiple of the K-quants' 256-element blocks
  s.n_ff = 256;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.n_vocab = 300;
  s.n_ctx = 128;
  s.type = type;
  s.seed = 42;
  s.n_threads = 2;
  return s;
}

struct Loaded {
  std::unique_ptr<GgufFile> file;
  ModelConfig config;
  std::vector<BlockWeights> blocks;
  ClientWeights client;
};

absl::StatusOr<Loaded> Load(const std::string& path) {
  Loaded l;
  auto file = GgufFile::Open(path);
  if (!file.ok()) return file.status();
  l.file = std::move(*file);
  auto config = ReadModelConfig(*l.file);
  if (!config.ok()) return config.status();
  l.config = *config;
  auto blocks = LoadBlockWeights(*l.file, l.config, 0, l.config.n_layer);
  if (!blocks.ok()) return blocks.status();
  l.blocks = *blocks;
  auto client = LoadClientWeights(*l.file, l.config);
  if (!client.ok()) return client.status();
  l.client = *client;
  return l;
}

TEST(SyntheticModel, EveryTypeLoadsAndIsDeterministic) {
  ScratchDir dir;
  for (GgmlType type :
       {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ8_0, GgmlType::kQ4_0,
        GgmlType::kQ4_K, GgmlType::kQ6_K, GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1,
        GgmlType::kIQ4_NL, GgmlType::kQ5_K, GgmlType::kQ2_K, GgmlType::kQ3_K, GgmlType::kIQ4_XS}) {
    SCOPED_TRACE(std::string(kernels::GgmlTypeName(type)));
    SyntheticModelSpec spec = Tiny(type);
    const std::string a = dir.File("a.gguf"), b = dir.File("b.gguf");
    auto summary = WriteSyntheticModel(spec, a);
    ASSERT_TRUE(summary.ok()) << summary.status();
    EXPECT_EQ(summary->n_tensors, 3u + 2u * 9u);
    EXPECT_TRUE(summary->fallbacks.empty());
    spec.n_threads = 3;  // another thread count gives the same bytes
    ASSERT_TRUE(WriteSyntheticModel(spec, b).ok());
    EXPECT_EQ(ReadBytes(a), ReadBytes(b));

    auto loaded = Load(a);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    const ModelConfig& c = loaded->config;
    EXPECT_EQ(c.architecture, "llama");
    EXPECT_EQ(c.n_layer, 2);
    EXPECT_EQ(c.n_embd, 256);
    EXPECT_EQ(c.n_ff, 256);
    EXPECT_EQ(c.n_head, 4);
    EXPECT_EQ(c.n_head_kv, 2);
    EXPECT_EQ(c.n_vocab, 300);
    EXPECT_EQ(c.n_ctx_train, 128);
    ASSERT_EQ(loaded->blocks.size(), 2u);
    const BlockWeights& blk = loaded->blocks[1];
    for (const kernels::Weight* w : std::vector<const kernels::Weight*>{
             &blk.wq, &blk.wk, &blk.wv, &blk.wo, &blk.w_gate, &blk.w_up, &blk.w_down,
             &loaded->client.token_embd, &loaded->client.output}) {
      EXPECT_EQ(w->type, type);
    }
    EXPECT_EQ(blk.attn_norm.type, GgmlType::kF32);
    const float* norm = static_cast<const float*>(blk.ffn_norm.data);
    for (int i = 0; i < 256; ++i) ASSERT_EQ(norm[i], 1.0f);

    // A dequantized row has mean ~0 and standard deviation ~1/sqrt(n_in).
    std::vector<float> row(256);
    kernels::DequantizeRow(type, blk.w_up.data, row.data(), 256);
    double sum = 0, sum2 = 0;
    for (float v : row) {
      ASSERT_TRUE(std::isfinite(v));
      sum += v;
      sum2 += double(v) * v;
    }
    const double mean = sum / 256, sd = std::sqrt(sum2 / 256 - mean * mean);
    EXPECT_NEAR(mean, 0.0, 0.02);
    EXPECT_NEAR(sd, 1.0 / 16, 0.1 / 16);
  }
}

TEST(SyntheticModel, SeedChangesWeightsAndModelId) {
  ScratchDir dir;
  SyntheticModelSpec spec = Tiny(GgmlType::kQ8_0);
  ASSERT_TRUE(WriteSyntheticModel(spec, dir.File("a.gguf")).ok());
  spec.seed = 43;
  ASSERT_TRUE(WriteSyntheticModel(spec, dir.File("b.gguf")).ok());
  auto a = Load(dir.File("a.gguf"));
  auto b = Load(dir.File("b.gguf"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(std::memcmp(a->blocks[0].wq.data, b->blocks[0].wq.data, 34), 0);
  EXPECT_NE(a->config.model_id, b->config.model_id);
  EXPECT_EQ(*a->file->GetUint("swarm.synthetic_seed"), 42u);
}

TEST(SyntheticModel, Qwen2HasBiases) {
  ScratchDir dir;
  SyntheticModelSpec spec = Tiny(GgmlType::kF16);
  spec.arch = "qwen2";
  ASSERT_TRUE(WriteSyntheticModel(spec, dir.File("q.gguf")).ok());
  auto l = Load(dir.File("q.gguf"));
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_TRUE(l->config.qkv_bias);
  EXPECT_EQ(l->config.rope.style, kernels::RopeStyle::kNeox);
  EXPECT_EQ(l->config.rope.freq_base, 1000000.0f);
  ASSERT_NE(l->blocks[0].bk.data, nullptr);
  EXPECT_EQ(l->blocks[0].bk.n_in, 128);
}

TEST(SyntheticModel, Qwen3HasQkNormsAndWiderHeads) {
  ScratchDir dir;
  SyntheticModelSpec spec = Tiny(GgmlType::kF16);
  spec.arch = "qwen3";
  ASSERT_TRUE(WriteSyntheticModel(spec, dir.File("q3.gguf")).ok());
  auto l = Load(dir.File("q3.gguf"));
  ASSERT_TRUE(l.ok()) << l.status();
  const ModelConfig& c = l->config;
  EXPECT_EQ(c.architecture, "qwen3");
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.head_dim, 2 * c.n_embd / c.n_head);
  EXPECT_EQ(l->blocks[0].wq.n_out, c.q_dim());
  EXPECT_EQ(l->blocks[0].wo.n_in, c.q_dim());
  ASSERT_NE(l->blocks[0].q_norm.data, nullptr);
  EXPECT_EQ(l->blocks[0].k_norm.n_in, c.head_dim);
  // The norms are not all ones: they change the result.
  const float* q_norm = static_cast<const float*>(l->blocks[0].q_norm.data);
  EXPECT_NE(q_norm[0], 1.0f);
}

TEST(SyntheticModel, Llama3HasRopeFactorsAndScaling) {
  ScratchDir dir;
  SyntheticModelSpec spec = Tiny(GgmlType::kF16);
  spec.arch = "llama3";
  spec.rope_scaling = "yarn";
  spec.rope_scaling_factor = 4.0f;
  ASSERT_TRUE(WriteSyntheticModel(spec, dir.File("l3.gguf")).ok());
  auto l = Load(dir.File("l3.gguf"));
  ASSERT_TRUE(l.ok()) << l.status();
  const ModelConfig& c = l->config;
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.rope.freq_base, 500000.0f);
  ASSERT_EQ(c.rope.freq_factors.size(), static_cast<size_t>(c.head_dim / 2));
  EXPECT_LT(c.rope.freq_factors.front(), 2.0f);  // the highest frequency is (nearly) kept
  EXPECT_EQ(c.rope.freq_factors.back(), 8.0f);   // the lowest is slowed 8 times
  EXPECT_EQ(c.rope.freq_scale, 0.25f);
  EXPECT_EQ(c.rope.ext_factor, 1.0f);
  EXPECT_EQ(c.rope.n_ctx_orig, spec.n_ctx / 4);
}

TEST(SyntheticModel, BlockSizeFallbacks) {
  ScratchDir dir;
  auto spec = SyntheticPreset("stories260k-shape");
  ASSERT_TRUE(spec.ok());
  spec->type = GgmlType::kQ4_K;  // n_embd 64 and n_ff 172 fit no 256-element block
  auto summary = WriteSyntheticModel(*spec, dir.File("s.gguf"));
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_THAT(summary->fallbacks, ::testing::Contains("blk.0.ffn_down.weight: f16"));
  EXPECT_THAT(summary->fallbacks, ::testing::Contains("blk.4.attn_q.weight: q8_0"));
  auto l = Load(dir.File("s.gguf"));
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->config.n_layer, 5);
  EXPECT_EQ(l->config.n_vocab, 512);
  EXPECT_EQ(l->blocks[0].w_down.type, GgmlType::kF16);
  EXPECT_EQ(l->blocks[0].w_up.type, GgmlType::kQ8_0);
}

TEST(SyntheticModel, BuiltInVocabularyTokenizes) {
  ScratchDir dir;
  ASSERT_TRUE(WriteSyntheticModel(Tiny(GgmlType::kF32), dir.File("v.gguf")).ok());
  auto file = GgufFile::Open(dir.File("v.gguf"));
  ASSERT_TRUE(file.ok());
  auto tokens = (*file)->GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok());
  ASSERT_EQ(tokens->size(), 300u);
  EXPECT_EQ((*tokens)[0], "<unk>");
  EXPECT_EQ((*tokens)[2], "</s>");
  EXPECT_EQ((*tokens)[3 + 0x41], "<0x41>");
  EXPECT_EQ((*tokens)[3 + 0xAB], "<0xAB>");
  EXPECT_EQ(std::set<std::string_view>(tokens->begin(), tokens->end()).size(), tokens->size());
  auto tokenizer = Tokenizer::FromGguf(**file);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const std::string text = "Hello, world! \xC3\xA9";  // é only through byte fallback
  auto ids = (*tokenizer)->Encode(text, true, false);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], 1);
  for (int32_t id : ids) EXPECT_LT(id, 300);
  EXPECT_EQ((*tokenizer)->Decode(ids), text);
}

TEST(SyntheticModel, CopiesVocabularyFromGguf) {
  ScratchDir dir;
  const std::string vocab = SWARM_SHARED_DIR "/tokenizer-vectors/ggml-vocab-llama-spm.gguf";
  SyntheticModelSpec spec = Tiny(GgmlType::kQ4_0);
  spec.n_layer = 1;
  spec.n_embd = 64;  // keeps the 32000-row tables small
  spec.n_ff = 64;
  spec.vocab_path = vocab;
  auto summary = WriteSyntheticModel(spec, dir.File("m.gguf"));
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->n_vocab, 32000);
  auto l = Load(dir.File("m.gguf"));
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->config.n_vocab, 32000);
  EXPECT_EQ(l->client.token_embd.n_out, 32000);
  auto source = GgufFile::Open(vocab);
  ASSERT_TRUE(source.ok());
  int copied = 0;
  for (const auto& [key, value] : (*source)->metadata()) {
    if (key.rfind("tokenizer.", 0) != 0) continue;
    ++copied;
    const GgufValue* v = l->file->Find(key);
    ASSERT_NE(v, nullptr) << key;
    EXPECT_EQ(v->type, value.type) << key;
  }
  EXPECT_EQ(copied, 10);
  EXPECT_EQ(*l->file->GetStringArray("tokenizer.ggml.tokens"),
            *(*source)->GetStringArray("tokenizer.ggml.tokens"));
  EXPECT_EQ(*l->file->GetFloatArray("tokenizer.ggml.scores"),
            *(*source)->GetFloatArray("tokenizer.ggml.scores"));
  EXPECT_FALSE(WriteSyntheticModel(
                   [&] {
                     auto s = spec;
                     s.vocab_path = dir.File("missing.gguf");
                     return s;
                   }(),
                   dir.File("x.gguf"))
                   .ok());
}

TEST(SyntheticModel, Presets) {
  auto t = SyntheticPreset("tinyllama-1.1b");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->n_layer, 22);
  EXPECT_EQ(t->n_embd, 2048);
  EXPECT_EQ(t->n_ff, 5632);
  EXPECT_EQ(t->n_head, 32);
  EXPECT_EQ(t->n_head_kv, 4);
  EXPECT_EQ(t->n_vocab, 32000);
  auto l = SyntheticPreset("llama-7b");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->n_layer, 32);
  EXPECT_EQ(l->n_embd, 4096);
  EXPECT_EQ(l->n_ff, 11008);
  EXPECT_EQ(l->n_head_kv, 32);
  EXPECT_FALSE(SyntheticPreset("gpt-5").ok());
}

TEST(SyntheticModel, RejectsBadSpecs) {
  ScratchDir dir;
  auto expect_bad = [&](const std::function<void(SyntheticModelSpec&)>& edit,
                        const std::string& substring) {
    SyntheticModelSpec spec = Tiny(GgmlType::kF32);
    edit(spec);
    auto s = WriteSyntheticModel(spec, dir.File("bad.gguf"));
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << s.status();
    EXPECT_THAT(std::string(s.status().message()), HasSubstr(substring));
  };
  expect_bad([](auto& s) { s.n_layer = 0; }, "n_layer");
  expect_bad([](auto& s) { s.n_head = 3; }, "n_head");
  expect_bad([](auto& s) { s.n_head_kv = 3; }, "n_head_kv");
  expect_bad([](auto& s) { s.n_vocab = 100; }, "259");
  expect_bad([](auto& s) { s.arch = "gpt2"; }, "gpt2");
  expect_bad([](auto& s) { s.type = GgmlType::kQ8_K; }, "not a weight type");
  EXPECT_FALSE(std::filesystem::exists(dir.File("bad.gguf")));
}

}  // namespace
}  // namespace swarm::model
