// ReadModelConfig on stories260K.gguf and on small written files with missing or inconsistent
// hyper-parameters.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "gguf_test_util.h"
#include "model/gguf.h"
#include "model/gguf_writer.h"
#include "model/model_config.h"
#include "support/shared_model.h"

namespace swarm::model {
namespace {

using ::testing::HasSubstr;
using testing::ScratchDir;

const std::string& kStories = test_support::kSharedModel;

TEST(ModelConfig, Stories260K) {
  auto file = GgufFile::Open(kStories);
  ASSERT_TRUE(file.ok()) << file.status();
  auto config = ReadModelConfig(**file);
  ASSERT_TRUE(config.ok()) << config.status();
  const ModelConfig& c = *config;
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.n_layer, 5);
  EXPECT_EQ(c.n_embd, 64);
  EXPECT_EQ(c.n_ff, 172);
  EXPECT_EQ(c.n_head, 8);
  EXPECT_EQ(c.n_head_kv, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.kv_dim(), 32);
  EXPECT_EQ(c.n_vocab, 512);
  EXPECT_EQ(c.n_ctx_train, 2048);  // as the header says (it was trained with 512)
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_EQ(c.rope.freq_base, 10000.0f);
  EXPECT_EQ(c.rope.style, kernels::RopeStyle::kAdjacentPairs);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.model_id.size(), 16u);
  EXPECT_EQ(c.model_id.find_first_not_of("0123456789abcdef"), std::string::npos);
  // Stable: the same file gives the same id.
  auto again = GgufFile::Open(kStories);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(ReadModelConfig(**again)->model_id, c.model_id);
}

TEST(ModelConfig, VocabularyFiles) {
  // The SPM vocabulary file carries Llama-2's hyper-parameters and no tensors.
  auto spm = GgufFile::Open(SWARM_SHARED_DIR "/tokenizer-vectors/ggml-vocab-llama-spm.gguf");
  ASSERT_TRUE(spm.ok()) << spm.status();
  auto config = ReadModelConfig(**spm);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->n_layer, 32);
  EXPECT_EQ(config->n_embd, 4096);
  EXPECT_EQ(config->n_vocab, 32000);
  // GPT-2 is not a supported architecture.
  auto gpt2 = GgufFile::Open(SWARM_SHARED_DIR "/tokenizer-vectors/ggml-vocab-gpt-2.gguf");
  ASSERT_TRUE(gpt2.ok()) << gpt2.status();
  auto status = ReadModelConfig(**gpt2).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(status.message()), HasSubstr("architecture 'gpt2' is not supported"));
}

// Writes a metadata-only llama file, lets `edit` change it, and reads its config.
class ConfigFromMetadata : public ::testing::Test {
 protected:
  absl::StatusOr<ModelConfig> Read(const std::function<void(GgufWriter&)>& edit,
                                   std::string arch = "llama") {
    GgufWriter w;
    w.SetString("general.architecture", arch);
    w.SetString("general.name", "tiny");
    w.SetUint32(arch + ".block_count", 2);
    w.SetUint32(arch + ".embedding_length", 64);
    w.SetUint32(arch + ".feed_forward_length", 128);
    w.SetUint32(arch + ".attention.head_count", 8);
    w.SetUint32(arch + ".attention.head_count_kv", 2);
    w.SetUint32(arch + ".context_length", 256);
    w.SetFloat32(arch + ".attention.layer_norm_rms_epsilon", 1e-6f);
    std::vector<std::string> tokens;
    for (int i = 0; i < 300; ++i) tokens.push_back("t" + std::to_string(i));
    w.SetStringArray("tokenizer.ggml.tokens", tokens);
    edit(w);
    const std::string path = dir_.File("config.gguf");
    if (auto s = w.Begin(path); !s.ok()) return s;
    if (auto s = w.WriteTensorData(tensor_data_); !s.ok()) return s;
    if (auto s = w.Finish(); !s.ok()) return s;
    auto file = GgufFile::Open(path);
    if (!file.ok()) return file.status();
    return ReadModelConfig(**file);
  }
  void ExpectError(const std::function<void(GgufWriter&)>& edit, absl::StatusCode code,
                   const std::string& substring) {
    auto config = Read(edit);
    ASSERT_FALSE(config.ok());
    EXPECT_EQ(config.status().code(), code) << config.status();
    EXPECT_THAT(std::string(config.status().message()), HasSubstr(substring));
  }
  ScratchDir dir_;
  std::vector<uint8_t> tensor_data_;
};

TEST_F(ConfigFromMetadata, Defaults) {
  auto c = Read([](GgufWriter& w) { w.RemoveKey("llama.attention.head_count_kv"); });
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->n_head_kv, 8);  // defaults to head_count
  EXPECT_EQ(c->rope.freq_base, 10000.0f);
  EXPECT_EQ(c->name, "tiny");
  EXPECT_EQ(c->n_vocab, 300);
  EXPECT_FLOAT_EQ(c->rms_eps, 1e-6f);
  auto base = Read([](GgufWriter& w) {
    w.SetFloat32("llama.rope.freq_base", 500000.0f);
    w.SetUint32("llama.rope.dimension_count", 8);
  });
  ASSERT_TRUE(base.ok()) << base.status();
  EXPECT_EQ(base->rope.freq_base, 500000.0f);
}

TEST_F(ConfigFromMetadata, Qwen2) {
  auto c = Read([](GgufWriter&) {}, "qwen2");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "qwen2");
  EXPECT_EQ(c->rope.style, kernels::RopeStyle::kNeox);
  EXPECT_TRUE(c->qkv_bias);
}

TEST_F(ConfigFromMetadata, Qwen3HeadSizeFromKeyLength) {
  auto c = Read(
      [](GgufWriter& w) {
        w.SetUint32("qwen3.attention.key_length", 16);
        w.SetUint32("qwen3.attention.value_length", 16);
      },
      "qwen3");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 16);  // not 64 / 8
  EXPECT_EQ(c->q_dim(), 128);
  EXPECT_EQ(c->kv_dim(), 32);
  EXPECT_TRUE(c->qk_norm);
  EXPECT_FALSE(c->qkv_bias);
  EXPECT_EQ(c->rope.style, kernels::RopeStyle::kNeox);
  // Any architecture: heads of two sizes are refused.
  ExpectError(
      [](GgufWriter& w) {
        w.SetUint32("llama.attention.key_length", 16);
        w.SetUint32("llama.attention.value_length", 32);
      },
      absl::StatusCode::kUnimplemented, "llama.attention.value_length 32 differs");
}

TEST_F(ConfigFromMetadata, RopeScalingAndFrequencyFactors) {
  auto none = Read([](GgufWriter&) {});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->rope.freq_scale, 1.0f);
  EXPECT_EQ(none->rope.ext_factor, 0.0f);
  EXPECT_TRUE(none->rope.freq_factors.empty());
  auto linear = Read([](GgufWriter& w) {
    w.SetString("llama.rope.scaling.type", "linear");
    w.SetFloat32("llama.rope.scaling.factor", 4.0f);
  });
  ASSERT_TRUE(linear.ok()) << linear.status();
  EXPECT_EQ(linear->rope.freq_scale, 0.25f);
  EXPECT_EQ(linear->rope.ext_factor, 0.0f);
  // The older key, without a type (llama.cpp's default type is linear).
  auto old_key = Read([](GgufWriter& w) { w.SetFloat32("llama.rope.scale_linear", 2.0f); });
  ASSERT_TRUE(old_key.ok()) << old_key.status();
  EXPECT_EQ(old_key->rope.freq_scale, 0.5f);
  auto yarn = Read([](GgufWriter& w) {
    w.SetString("llama.rope.scaling.type", "yarn");
    w.SetFloat32("llama.rope.scaling.factor", 8.0f);
    w.SetUint32("llama.rope.scaling.original_context_length", 64);
    w.SetFloat32("llama.rope.scaling.yarn_beta_fast", 16.0f);
    w.SetFloat32("llama.rope.scaling.attn_factor", 0.5f);
  });
  ASSERT_TRUE(yarn.ok()) << yarn.status();
  EXPECT_EQ(yarn->rope.freq_scale, 0.125f);
  EXPECT_EQ(yarn->rope.ext_factor, 1.0f);
  EXPECT_EQ(yarn->rope.n_ctx_orig, 64);
  EXPECT_EQ(yarn->rope.beta_fast, 16.0f);
  EXPECT_EQ(yarn->rope.beta_slow, 1.0f);
  EXPECT_EQ(yarn->rope.attn_factor, 0.5f);
  EXPECT_NE(yarn->model_id, none->model_id);
  ExpectError([](GgufWriter& w) { w.SetString("llama.rope.scaling.type", "longrope"); },
              absl::StatusCode::kUnimplemented, "rope.scaling.type 'longrope' is not supported");
  ExpectError(
      [](GgufWriter& w) {
        w.SetString("llama.rope.scaling.type", "yarn");
        w.SetFloat32("llama.rope.scaling.yarn_log_multiplier", 0.1f);
      },
      absl::StatusCode::kUnimplemented, "yarn_log_multiplier");

  // rope_freqs.weight: [head_dim / 2] = [4] f32 factors.
  const float factors[4] = {1.0f, 1.5f, 4.0f, 8.0f};
  tensor_data_.assign(reinterpret_cast<const uint8_t*>(factors),
                      reinterpret_cast<const uint8_t*>(factors) + sizeof(factors));
  auto with = Read([](GgufWriter& w) {
    ASSERT_TRUE(w.AddTensor("rope_freqs.weight", kernels::GgmlType::kF32, {4}).ok());
  });
  ASSERT_TRUE(with.ok()) << with.status();
  EXPECT_EQ(with->rope.freq_factors, std::vector<float>(factors, factors + 4));
  EXPECT_NE(with->model_id, none->model_id);
  tensor_data_.assign(32, 0);
  ExpectError(
      [](GgufWriter& w) {
        ASSERT_TRUE(w.AddTensor("rope_freqs.weight", kernels::GgmlType::kF32, {8}).ok());
      },
      absl::StatusCode::kInvalidArgument, "rope_freqs.weight must be f32 [4]");
  tensor_data_.assign(16, 0);  // zero factors
  ExpectError(
      [](GgufWriter& w) {
        ASSERT_TRUE(w.AddTensor("rope_freqs.weight", kernels::GgmlType::kF32, {4}).ok());
      },
      absl::StatusCode::kInvalidArgument, "rope_freqs.weight holds 0");
}

TEST_F(ConfigFromMetadata, WhatTheEngineDoesNotImplementIsRefusedByName) {
  using C = absl::StatusCode;
  // Neutral values ask for nothing.
  auto neutral = Read([](GgufWriter& w) {
    w.SetFloat32("llama.attn_logit_softcapping", 0.0f);
    w.SetFloat32("llama.logit_scale", 1.0f);
    w.SetUint32("llama.attention.sliding_window", 256);  // the whole context
    w.SetFloat32("llama.attention.scale", 1.0f / std::sqrt(8.0f));
    w.SetBool("llama.attention.causal", true);
    w.SetUint32("llama.vocab_size", 300);
  });
  EXPECT_TRUE(neutral.ok()) << neutral.status();
  ExpectError([](GgufWriter& w) { w.SetFloat32("llama.attn_logit_softcapping", 50.0f); },
              C::kUnimplemented, "llama.attn_logit_softcapping");
  ExpectError([](GgufWriter& w) { w.SetFloat32("llama.final_logit_softcapping", 30.0f); },
              C::kUnimplemented, "final logit soft-capping");
  ExpectError([](GgufWriter& w) { w.SetUint32("llama.attention.sliding_window", 64); },
              C::kUnimplemented, "sliding-window attention (llama.attention.sliding_window = 64)");
  ExpectError([](GgufWriter& w) { w.SetFloat32("llama.attention.scale", 0.5f); }, C::kUnimplemented,
              "llama.attention.scale");
  ExpectError([](GgufWriter& w) { w.SetFloat32("llama.embedding_scale", 12.0f); },
              C::kUnimplemented, "embedding scaling");
  ExpectError([](GgufWriter& w) { w.SetFloat32("llama.residual_scale", 0.2f); }, C::kUnimplemented,
              "residual scaling");
  ExpectError([](GgufWriter& w) { w.SetBool("llama.attention.causal", false); }, C::kUnimplemented,
              "non-causal");
  ExpectError([](GgufWriter& w) { w.SetUint32("llama.rope.dimension_sections", 3); },
              C::kUnimplemented, "metadata key 'llama.rope.dimension_sections'");
  tensor_data_.assign(64 * 4, 0);
  ExpectError(
      [](GgufWriter& w) {
        ASSERT_TRUE(w.AddTensor("blk.0.attn_output.bias", kernels::GgmlType::kF32, {64}).ok());
      },
      C::kUnimplemented, "tensor 'blk.0.attn_output.bias'");
  ExpectError(
      [](GgufWriter& w) {
        ASSERT_TRUE(w.AddTensor("blk.1.attn_q_norm.weight", kernels::GgmlType::kF32, {64}).ok());
      },
      C::kUnimplemented,
      "tensor 'blk.1.attn_q_norm.weight' is not supported for architecture llama");
}

TEST_F(ConfigFromMetadata, MissingKeys) {
  for (const std::string key : {"llama.block_count", "llama.embedding_length",
                                "llama.feed_forward_length", "llama.attention.head_count",
                                "llama.context_length", "llama.attention.layer_norm_rms_epsilon"}) {
    ExpectError([&](GgufWriter& w) { w.RemoveKey(key); }, absl::StatusCode::kNotFound, key);
  }
  ExpectError([](GgufWriter& w) { w.RemoveKey("general.architecture"); },
              absl::StatusCode::kNotFound, "general.architecture");
  ExpectError([](GgufWriter& w) { w.RemoveKey("tokenizer.ggml.tokens"); },
              absl::StatusCode::kNotFound, "vocabulary size unknown");
}

TEST_F(ConfigFromMetadata, InconsistentOrAbsurdValues) {
  using C = absl::StatusCode;
  ExpectError([](GgufWriter& w) { w.SetString("general.architecture", "mamba"); },
              C::kUnimplemented, "'mamba' is not supported");
  ExpectError([](GgufWriter& w) { w.SetUint32("llama.attention.head_count", 6); },
              C::kInvalidArgument, "not a multiple of head_count 6");
  ExpectError([](GgufWriter& w) { w.SetUint32("llama.attention.head_count_kv", 3); },
              C::kInvalidArgument, "not a multiple of head_count_kv 3");
  ExpectError([](GgufWriter& w) { w.SetUint32("llama.attention.head_count_kv", 16); },
              C::kInvalidArgument, "not a multiple of head_count_kv 16");
  ExpectError([](GgufWriter& w) { w.SetUint32("llama.block_count", 0); }, C::kInvalidArgument,
              "llama.block_count' is 0");
  ExpectError([](GgufWriter& w) { w.SetInt32("llama.embedding_length", -64); }, C::kInvalidArgument,
              "is -64");
  ExpectError([](GgufWriter& w) { w.SetUint64("llama.feed_forward_length", 1ull << 40); },
              C::kInvalidArgument, "feed_forward_length");
  ExpectError([](GgufWriter& w) { w.SetUint64("llama.block_count", ~0ull); }, C::kInvalidArgument,
              "block_count");
  ExpectError([](GgufWriter& w) { w.SetString("llama.block_count", "2"); }, C::kInvalidArgument,
              "expected an integer");
  ExpectError([](GgufWriter& w) { w.SetFloat32("llama.attention.layer_norm_rms_epsilon", 0); },
              C::kInvalidArgument, "layer_norm_rms_epsilon");
  ExpectError([](GgufWriter& w) { w.SetFloat32("llama.rope.freq_base", -1.0f); },
              C::kInvalidArgument, "rope.freq_base");
  ExpectError([](GgufWriter& w) { w.SetUint32("llama.rope.dimension_count", 4); },
              C::kUnimplemented, "partial rotary");
  // Mixtures of experts: the counts must be consistent; routing this engine lacks is refused.
  ExpectError([](GgufWriter& w) { w.SetUint32("llama.expert_count", 8); }, C::kInvalidArgument,
              "expert_used_count is 0");
  ExpectError(
      [](GgufWriter& w) {
        w.SetUint32("llama.expert_count", 8);
        w.SetUint32("llama.expert_used_count", 9);
      },
      C::kInvalidArgument, "expected 1..expert_count (8)");
  ExpectError([](GgufWriter& w) { w.SetUint32("llama.expert_used_count", 2); }, C::kInvalidArgument,
              "has no experts");
  ExpectError([](GgufWriter& w) { w.SetUint32("llama.expert_count", 100000); }, C::kInvalidArgument,
              "expert_count is 100000");
  ExpectError(
      [](GgufWriter& w) {
        w.SetUint32("llama.expert_count", 8);
        w.SetUint32("llama.expert_used_count", 2);
        w.SetUint32("llama.expert_shared_count", 1);
      },
      C::kUnimplemented, "shared experts");
  ExpectError(
      [](GgufWriter& w) {
        w.SetUint32("llama.expert_count", 8);
        w.SetUint32("llama.expert_used_count", 2);
        w.SetUint32("llama.expert_gating_func", 2);
      },
      C::kUnimplemented, "only softmax gating");
  ExpectError(
      [](GgufWriter& w) {
        w.SetUint32("llama.expert_count", 8);
        w.SetUint32("llama.expert_used_count", 2);
        w.SetFloat32("llama.expert_weights_scale", 2.5f);
      },
      C::kUnimplemented, "expert_weights_scale");
  ExpectError([](GgufWriter& w) { w.SetUint32("llama.attention.head_count", 64); },
              C::kInvalidArgument, "odd");  // head_dim 1
  ExpectError([](GgufWriter& w) { w.SetString("swarm.model_id", "not an id!"); },
              C::kInvalidArgument, "swarm.model_id");
}

TEST_F(ConfigFromMetadata, MixtureOfExperts) {
  auto c = Read([](GgufWriter& w) {
    w.SetUint32("llama.expert_count", 8);
    w.SetUint32("llama.expert_used_count", 2);
    w.SetUint32("llama.expert_gating_func", 1);  // softmax, stated
  });
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->is_moe());
  EXPECT_EQ(c->n_expert, 8);
  EXPECT_EQ(c->n_expert_used, 2);
  EXPECT_EQ(c->n_ff_exp, c->n_ff);  // Mixtral: experts as wide as feed_forward_length
  auto wide = Read([](GgufWriter& w) {
    w.SetUint32("llama.expert_count", 8);
    w.SetUint32("llama.expert_used_count", 2);
    w.SetUint32("llama.expert_feed_forward_length", 48);
  });
  ASSERT_TRUE(wide.ok()) << wide.status();
  EXPECT_EQ(wide->n_ff_exp, 48);
  EXPECT_NE(wide->model_id, c->model_id);
  auto dense = Read([](GgufWriter&) {});
  ASSERT_TRUE(dense.ok());
  EXPECT_FALSE(dense->is_moe());
  EXPECT_NE(dense->model_id, c->model_id);
  // Qwen3-MoE: qwen3's attention, experts of expert_feed_forward_length.
  auto qwen = Read(
      [](GgufWriter& w) {
        w.SetUint32("qwen3moe.expert_count", 128);
        w.SetUint32("qwen3moe.expert_used_count", 8);
        w.SetUint32("qwen3moe.expert_feed_forward_length", 32);
        w.SetUint32("qwen3moe.attention.key_length", 16);
        w.SetUint32("qwen3moe.attention.value_length", 16);
      },
      "qwen3moe");
  ASSERT_TRUE(qwen.ok()) << qwen.status();
  EXPECT_TRUE(qwen->qk_norm);
  EXPECT_EQ(qwen->head_dim, 16);
  EXPECT_EQ(qwen->n_expert, 128);
  EXPECT_EQ(qwen->n_expert_used, 8);
  EXPECT_EQ(qwen->n_ff_exp, 32);
  EXPECT_EQ(qwen->rope.style, kernels::RopeStyle::kNeox);
}

TEST_F(ConfigFromMetadata, VocabularyMustMatchEmbeddings) {
  tensor_data_.assign(64 * 4 * 301, 0);
  ExpectError(
      [](GgufWriter& w) {
        ASSERT_TRUE(w.AddTensor("token_embd.weight", kernels::GgmlType::kF32, {64, 301}).ok());
      },
      absl::StatusCode::kInvalidArgument, "300 tokens but token_embd.weight has 301 rows");
  // Without a token list, the embedding table gives the vocabulary size.
  auto c = Read([](GgufWriter& w) {
    w.RemoveKey("tokenizer.ggml.tokens");
    ASSERT_TRUE(w.AddTensor("token_embd.weight", kernels::GgmlType::kF32, {64, 301}).ok());
  });
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->n_vocab, 301);
}

TEST_F(ConfigFromMetadata, ModelIdFollowsHyperParametersAndPrefersStoredId) {
  auto a = Read([](GgufWriter&) {});
  auto b = Read([](GgufWriter&) {});
  auto c = Read([](GgufWriter& w) { w.SetUint32("llama.feed_forward_length", 192); });
  auto d = Read([](GgufWriter& w) { w.SetString("general.name", "other"); });
  auto stored = Read([](GgufWriter& w) { w.SetString("swarm.model_id", "0123456789abcdef"); });
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && d.ok() && stored.ok());
  EXPECT_EQ(a->model_id, b->model_id);
  EXPECT_NE(a->model_id, c->model_id);
  EXPECT_NE(a->model_id, d->model_id);
  EXPECT_EQ(stored->model_id, "0123456789abcdef");
}

}  // namespace
}  // namespace swarm::model
