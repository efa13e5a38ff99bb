// LoadBlockWeights / LoadClientWeights: views into stories260K.gguf and into small written models,
// shape and type validation, missing tensors, tied output.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "gguf_test_model.h"
#include "gguf_test_util.h"
#include "model/gguf.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "support/shared_model.h"

namespace swarm::model {
namespace {

using kernels::GgmlType;
using ::testing::HasSubstr;
using testing::ScratchDir;
using testing::TinyModelSpec;
using testing::WriteTinyModel;

const std::string& kStories = test_support::kSharedModel;

void ExpectView(const GgufFile& file, const kernels::Weight& w, const std::string& name,
                int64_t n_in, int64_t n_out) {
  const GgufTensorInfo* t = file.FindTensor(name);
  ASSERT_NE(t, nullptr) << name;
  EXPECT_EQ(w.data, file.TensorData(*t).data()) << name;
  EXPECT_EQ(w.type, t->type) << name;
  EXPECT_EQ(w.n_in, n_in) << name;
  EXPECT_EQ(w.n_out, n_out) << name;
}

TEST(ModelWeights, Stories260KBlocksAndClient) {
  auto file = GgufFile::Open(kStories);
  ASSERT_TRUE(file.ok()) << file.status();
  auto config = ReadModelConfig(**file);
  ASSERT_TRUE(config.ok()) << config.status();
  auto blocks = LoadBlockWeights(**file, *config, 1, 4);
  ASSERT_TRUE(blocks.ok()) << blocks.status();
  ASSERT_EQ(blocks->size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const BlockWeights& b = (*blocks)[i];
    const std::string p = "blk." + std::to_string(i + 1) + ".";
    EXPECT_EQ(b.layer, i + 1);
    ExpectView(**file, b.attn_norm, p + "attn_norm.weight", 64, 1);
    ExpectView(**file, b.wq, p + "attn_q.weight", 64, 64);
    ExpectView(**file, b.wk, p + "attn_k.weight", 64, 32);
    ExpectView(**file, b.wv, p + "attn_v.weight", 64, 32);
    ExpectView(**file, b.wo, p + "attn_output.weight", 64, 64);
    ExpectView(**file, b.ffn_norm, p + "ffn_norm.weight", 64, 1);
    ExpectView(**file, b.w_gate, p + "ffn_gate.weight", 64, 172);
    ExpectView(**file, b.w_up, p + "ffn_up.weight", 64, 172);
    ExpectView(**file, b.w_down, p + "ffn_down.weight", 172, 64);
    EXPECT_EQ(b.bq.data, nullptr);
    EXPECT_EQ(b.bk.data, nullptr);
    EXPECT_EQ(b.bv.data, nullptr);
  }
  auto client = LoadClientWeights(**file, *config);
  ASSERT_TRUE(client.ok()) << client.status();
  ExpectView(**file, client->token_embd, "token_embd.weight", 64, 512);
  ExpectView(**file, client->output_norm, "output_norm.weight", 64, 1);
  ExpectView(**file, client->output, "output.weight", 64, 512);
  EXPECT_NE(client->output.data, client->token_embd.data);
  // The attention norm of a trained model is not all ones: a sanity check of the mapping.
  const float* norm = static_cast<const float*>((*blocks)[0].attn_norm.data);
  EXPECT_TRUE(std::isfinite(norm[0]));
}

TEST(ModelWeights, RangeChecks) {
  auto file = GgufFile::Open(kStories);
  ASSERT_TRUE(file.ok()) << file.status();
  auto config = ReadModelConfig(**file);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(LoadBlockWeights(**file, *config, 0, 5).ok());
  for (auto [a, b] : {std::pair{0, 6}, {-1, 2}, {3, 3}, {4, 2}}) {
    auto s = LoadBlockWeights(**file, *config, a, b).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << a << ":" << b;
  }
}

class TinyModel : public ::testing::Test {
 protected:
  absl::Status Load(const TinyModelSpec& spec, bool client) {
    const std::string path = dir_.File("tiny.gguf");
    if (auto s = WriteTinyModel(path, spec); !s.ok()) return s;
    auto file = GgufFile::Open(path);
    if (!file.ok()) return file.status();
    file_ = std::move(*file);
    auto config = ReadModelConfig(*file_);
    if (!config.ok()) return config.status();
    config_ = *config;
    if (client) return LoadClientWeights(*file_, config_).status();
    return LoadBlockWeights(*file_, config_, 0, spec.n_layer).status();
  }
  void ExpectError(const TinyModelSpec& spec, bool client, absl::StatusCode code,
                   const std::string& substring) {
    absl::Status s = Load(spec, client);
    EXPECT_EQ(s.code(), code) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(substring));
  }
  ScratchDir dir_;
  std::unique_ptr<GgufFile> file_;
  ModelConfig config_;
};

TEST_F(TinyModel, EveryWeightTypeLoads) {
  for (GgmlType type :
       {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ8_0, GgmlType::kQ4_0,
        GgmlType::kQ4_K, GgmlType::kQ6_K, GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1,
        GgmlType::kIQ4_NL, GgmlType::kQ5_K, GgmlType::kQ2_K, GgmlType::kQ3_K, GgmlType::kIQ4_XS}) {
    TinyModelSpec spec;
    spec.n_embd = 256;
    spec.n_ff = 512;
    spec.n_head = 4;
    spec.matrix_type = type;
    EXPECT_TRUE(Load(spec, false).ok()) << kernels::GgmlTypeName(type);
    EXPECT_TRUE(Load(spec, true).ok()) << kernels::GgmlTypeName(type);
  }
  // Q8_K is an activation type only.
  TinyModelSpec spec;
  spec.n_embd = 256;
  spec.n_ff = 512;
  spec.matrix_type = GgmlType::kQ8_K;
  ExpectError(spec, false, absl::StatusCode::kInvalidArgument, "not a weight type");
}

TEST_F(TinyModel, Qwen2Biases) {
  TinyModelSpec spec;
  spec.arch = "qwen2";
  ASSERT_TRUE(Load(spec, false).ok());
  auto blocks = LoadBlockWeights(*file_, config_, 0, 3);
  ASSERT_TRUE(blocks.ok()) << blocks.status();
  ExpectView(*file_, (*blocks)[2].bq, "blk.2.attn_q.bias", 64, 1);
  ExpectView(*file_, (*blocks)[2].bk, "blk.2.attn_k.bias", 32, 1);
  ExpectView(*file_, (*blocks)[2].bv, "blk.2.attn_v.bias", 32, 1);
  spec.skip = {"blk.1.attn_v.bias"};
  ExpectError(spec, false, absl::StatusCode::kNotFound, "tensor 'blk.1.attn_v.bias' not found");
}

TEST_F(TinyModel, TiedOutput) {
  TinyModelSpec spec;
  spec.tied_output = true;
  ASSERT_TRUE(Load(spec, true).ok());
  auto client = LoadClientWeights(*file_, config_);
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(client->output.data, client->token_embd.data);
  EXPECT_EQ(client->output.n_out, 40);
}

TEST_F(TinyModel, MissingTensors) {
  for (const std::string name : {"blk.0.attn_norm.weight", "blk.2.ffn_down.weight",
                                 "blk.1.attn_output.weight", "blk.1.ffn_up.weight"}) {
    TinyModelSpec spec;
    spec.skip = {name};
    ExpectError(spec, false, absl::StatusCode::kNotFound, "tensor '" + name + "' not found");
  }
  for (const std::string name : {"token_embd.weight", "output_norm.weight"}) {
    TinyModelSpec spec;
    spec.skip = {name};
    ExpectError(spec, true, absl::StatusCode::kNotFound, "tensor '" + name + "' not found");
  }
}

TEST_F(TinyModel, WrongShapesAndTypes) {
  using C = absl::StatusCode;
  auto with = [](std::string name, GgmlType type, std::vector<int64_t> ne) {
    TinyModelSpec spec;
    spec.overrides[name] = {type, ne};
    return spec;
  };
  ExpectError(with("blk.0.attn_norm.weight", GgmlType::kF16, {64}), false, C::kInvalidArgument,
              "'blk.0.attn_norm.weight' has type f16, expected f32");
  ExpectError(with("blk.0.attn_norm.weight", GgmlType::kF32, {32}), false, C::kInvalidArgument,
              "has shape [32], expected [64]");
  ExpectError(with("blk.0.attn_norm.weight", GgmlType::kF32, {64, 2}), false, C::kInvalidArgument,
              "has shape [64, 2], expected [64]");
  ExpectError(with("blk.1.attn_k.weight", GgmlType::kF32, {64, 64}), false, C::kInvalidArgument,
              "'blk.1.attn_k.weight' has shape [64, 64], expected [64, 32]");
  ExpectError(with("blk.2.ffn_down.weight", GgmlType::kF32, {64, 96}), false, C::kInvalidArgument,
              "expected [96, 64]");
  ExpectError(with("blk.2.ffn_gate.weight", GgmlType::kF32, {64, 96, 2}), false,
              C::kInvalidArgument, "expected [64, 96]");
  ExpectError(with("output.weight", GgmlType::kF32, {64, 41}), true, C::kInvalidArgument,
              "expected [64, 40]");
  ExpectError(with("output_norm.weight", GgmlType::kQ8_0, {64}), true, C::kInvalidArgument,
              "expected f32");
}

}  // namespace
}  // namespace swarm::model
