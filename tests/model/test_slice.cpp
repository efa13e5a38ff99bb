// WriteSlice: a slice of stories260K.gguf holds exactly the requested blocks' tensors, byte for
// byte, all metadata, the slice keys and the full model's id; loading outside it fails clearly.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "gguf_test_model.h"
#include "gguf_test_util.h"
#include "model/gguf.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "model/slice.h"
#include "support/shared_model.h"

namespace swarm::model {
namespace {

using ::testing::HasSubstr;
using testing::ScratchDir;

const std::string& kStories = test_support::kSharedModel;

bool SameValue(const GgufValue& a, const GgufValue& b) {
  if (a.type != b.type || a.value.index() != b.value.index()) return false;
  if (const auto* x = std::get_if<GgufValue::Array>(&a.value)) {
    const auto& y = std::get<GgufValue::Array>(b.value);
    if (x->element_type != y.element_type || x->elements.size() != y.elements.size()) return false;
    for (size_t i = 0; i < x->elements.size(); ++i) {
      if (!SameValue(x->elements[i], y.elements[i])) return false;
    }
    return true;
  }
  return std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, GgufValue::Array>) {
          return false;  // handled above
        } else {
          return x == std::get<T>(b.value);
        }
      },
      a.value);
}

void ExpectSameTensor(const GgufFile& a, const GgufFile& b, const std::string& name) {
  const GgufTensorInfo* ta = a.FindTensor(name);
  const GgufTensorInfo* tb = b.FindTensor(name);
  ASSERT_NE(ta, nullptr) << name;
  ASSERT_NE(tb, nullptr) << name;
  EXPECT_EQ(ta->type, tb->type) << name;
  EXPECT_EQ(ta->n_dims, tb->n_dims) << name;
  for (int d = 0; d < 4; ++d) EXPECT_EQ(ta->ne[d], tb->ne[d]) << name;
  auto da = a.TensorData(*ta), db = b.TensorData(*tb);
  ASSERT_EQ(da.size(), db.size()) << name;
  EXPECT_EQ(std::memcmp(da.data(), db.data(), da.size()), 0) << name;
}

class SliceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto full = GgufFile::Open(kStories);
    ASSERT_TRUE(full.ok()) << full.status();
    full_ = std::move(*full);
    auto config = ReadModelConfig(*full_);
    ASSERT_TRUE(config.ok()) << config.status();
    full_config_ = *config;
  }
  std::unique_ptr<GgufFile> Slice(const GgufFile& source, BlockRange r, bool with_client,
                                  const std::string& name) {
    const std::string path = dir_.File(name);
    auto summary = WriteSlice(source, {r, with_client}, path);
    EXPECT_TRUE(summary.ok()) << summary.status();
    if (!summary.ok()) return nullptr;
    EXPECT_EQ(summary->model_id, full_config_.model_id);
    auto file = GgufFile::Open(path);
    EXPECT_TRUE(file.ok()) << file.status();
    return file.ok() ? std::move(*file) : nullptr;
  }
  ScratchDir dir_;
  std::unique_ptr<GgufFile> full_;
  ModelConfig full_config_;
};

TEST_F(SliceTest, HoldsExactlyTheBlocksByteForByte) {
  auto slice = Slice(*full_, {1, 3}, false, "part.gguf");
  ASSERT_NE(slice, nullptr);
  ASSERT_EQ(slice->tensors().size(), 18u);
  for (const GgufTensorInfo& t : slice->tensors()) {
    EXPECT_TRUE(t.name.rfind("blk.1.", 0) == 0 || t.name.rfind("blk.2.", 0) == 0) << t.name;
    ExpectSameTensor(*full_, *slice, t.name);
  }
  // Every metadata key of the source, with the same value, plus the slice keys.
  for (const auto& [key, value] : full_->metadata()) {
    const GgufValue* v = slice->Find(key);
    ASSERT_NE(v, nullptr) << key;
    EXPECT_TRUE(SameValue(value, *v)) << key;
  }
  EXPECT_EQ(slice->metadata().size(), full_->metadata().size() + 3);
  EXPECT_EQ(slice->Find("swarm.block_first")->type, GgufValueType::kUint32);
  EXPECT_EQ(*slice->GetUint("swarm.block_first"), 1u);
  EXPECT_EQ(*slice->GetUint("swarm.block_last"), 3u);
  EXPECT_EQ(*slice->GetString("swarm.model_id"), full_config_.model_id);
  auto range = ReadSliceRange(*slice);
  ASSERT_TRUE(range.ok() && range->has_value());
  EXPECT_EQ(**range, (BlockRange{1, 3}));
  EXPECT_FALSE(ReadSliceRange(*full_)->has_value());

  // The slice's config equals the full model's, model_id included.
  auto config = ReadModelConfig(*slice);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model_id, full_config_.model_id);
  EXPECT_EQ(config->n_layer, 5);
  EXPECT_EQ(config->n_vocab, 512);

  // Blocks inside load and point at the same bytes as in the full model; outside is an error.
  auto blocks = LoadBlockWeights(*slice, *config, 1, 3);
  ASSERT_TRUE(blocks.ok()) << blocks.status();
  EXPECT_EQ((*blocks)[1].layer, 2);
  EXPECT_EQ(std::memcmp((*blocks)[1].w_down.data,
                        full_->TensorData(*full_->FindTensor("blk.2.ffn_down.weight")).data(),
                        172 * 64 * 4),
            0);
  auto outside = LoadBlockWeights(*slice, *config, 0, 2);
  EXPECT_EQ(outside.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(outside.status().message()),
              HasSubstr("tensor 'blk.0.attn_norm.weight' not found"));
  EXPECT_THAT(std::string(outside.status().message()), HasSubstr("blocks [1, 3) only"));
  EXPECT_EQ(LoadBlockWeights(*slice, *config, 2, 4).status().code(), absl::StatusCode::kNotFound);
  auto client = LoadClientWeights(*slice, *config);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(client.status().message()), HasSubstr("token_embd.weight"));
}

TEST_F(SliceTest, WithClient) {
  auto slice = Slice(*full_, {4, 5}, true, "tail.gguf");
  ASSERT_NE(slice, nullptr);
  EXPECT_EQ(slice->tensors().size(), 9u + 3u);
  for (const char* name :
       {"token_embd.weight", "output_norm.weight", "output.weight", "blk.4.ffn_up.weight"}) {
    ExpectSameTensor(*full_, *slice, name);
  }
  auto config = ReadModelConfig(*slice);
  ASSERT_TRUE(config.ok());
  EXPECT_TRUE(LoadClientWeights(*slice, *config).ok());
  EXPECT_TRUE(LoadBlockWeights(*slice, *config, 4, 5).ok());
}

TEST_F(SliceTest, SliceOfASlice) {
  auto part = Slice(*full_, {1, 4}, false, "part.gguf");
  ASSERT_NE(part, nullptr);
  auto sub = Slice(*part, {2, 3}, false, "sub.gguf");
  ASSERT_NE(sub, nullptr);
  EXPECT_EQ(sub->tensors().size(), 9u);
  ExpectSameTensor(*full_, *sub, "blk.2.attn_q.weight");
  EXPECT_EQ(ReadModelConfig(*sub)->model_id, full_config_.model_id);
  EXPECT_EQ(**ReadSliceRange(*sub), (BlockRange{2, 3}));
  // Blocks the source slice lacks, or client tensors it lacks.
  auto s = WriteSlice(*part, {{0, 2}, false}, dir_.File("bad.gguf"));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("holding blocks [1, 4) only"));
  EXPECT_EQ(WriteSlice(*part, {{1, 2}, true}, dir_.File("bad.gguf")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SliceTest, RejectsBadRanges) {
  for (BlockRange r : {BlockRange{0, 6}, BlockRange{-1, 2}, BlockRange{3, 3}, BlockRange{3, 2}}) {
    auto s = WriteSlice(*full_, {r, false}, dir_.File("bad.gguf"));
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << r.first << ":" << r.last;
  }
  EXPECT_FALSE(std::filesystem::exists(dir_.File("bad.gguf")));
  EXPECT_FALSE(WriteSlice(*full_, {{0, 1}, false}, dir_.File("no/such/dir/x.gguf")).ok());
}

TEST_F(SliceTest, QuantizedQwen2ModelWithExtraTensor) {
  // A quantized qwen2 model (biases) with an extra global tensor, which every slice keeps.
  testing::TinyModelSpec spec;
  spec.arch = "qwen2";
  spec.n_embd = 256;
  spec.n_ff = 512;
  spec.matrix_type = kernels::GgmlType::kQ4_K;
  spec.rope_freqs = true;
  const std::string path = dir_.File("qwen.gguf");
  ASSERT_TRUE(testing::WriteTinyModel(path, spec).ok());
  auto full = GgufFile::Open(path);
  ASSERT_TRUE(full.ok()) << full.status();
  auto summary = WriteSlice(**full, {{1, 2}, false}, dir_.File("qwen-part.gguf"));
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->n_tensors, 13u);
  auto part = GgufFile::Open(dir_.File("qwen-part.gguf"));
  ASSERT_TRUE(part.ok()) << part.status();
  for (const GgufTensorInfo& t : (*part)->tensors()) ExpectSameTensor(**full, **part, t.name);
  EXPECT_NE((*part)->FindTensor("rope_freqs.weight"), nullptr);
  EXPECT_NE((*part)->FindTensor("blk.1.attn_k.bias"), nullptr);
  auto config = ReadModelConfig(**part);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model_id, ReadModelConfig(**full)->model_id);
  EXPECT_TRUE(LoadBlockWeights(**part, *config, 1, 2).ok());
}

TEST(BlockRange, Parse) {
  EXPECT_EQ(*ParseBlockRange("0:5"), (BlockRange{0, 5}));
  EXPECT_EQ(*ParseBlockRange("12:22"), (BlockRange{12, 22}));
  for (const char* bad : {"", ":", "3", "3:", ":3", "a:b", "3:3", "4:2", "-1:2", "1:2:3", " 1:2",
                          "1:99999999999999999999"}) {
    EXPECT_FALSE(ParseBlockRange(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace swarm::model
