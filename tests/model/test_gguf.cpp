// GgufFile on real files: stories260K.gguf (a trained Llama model) and the vocabulary-only GGUFs.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <span>
#include <vector>

#include "absl/strings/match.h"
#include "model/gguf.h"
#include "support/shared_model.h"

namespace swarm::model {
namespace {

const std::string& kStories = test_support::kSharedModel;
const std::string kSpmVocab = SWARM_SHARED_DIR "/tokenizer-vectors/ggml-vocab-llama-spm.gguf";
const std::string kGpt2Vocab = SWARM_SHARED_DIR "/tokenizer-vectors/ggml-vocab-gpt-2.gguf";

TEST(GgufReader, Stories260KHeaderAndMetadata) {
  auto file = GgufFile::Open(kStories);
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& f = **file;
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.metadata().size(), 19u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  EXPECT_EQ(f.file_size(), 1185376u);

  EXPECT_EQ(*f.GetString("general.architecture"), "llama");
  EXPECT_EQ(*f.GetString("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(*f.GetUint("llama.block_count"), 5u);
  EXPECT_EQ(*f.GetUint("llama.embedding_length"), 64u);
  EXPECT_EQ(*f.GetUint("llama.feed_forward_length"), 172u);
  EXPECT_EQ(*f.GetInt("llama.attention.head_count"), 8);
  EXPECT_EQ(*f.GetUint("llama.attention.head_count_kv"), 4u);
  EXPECT_EQ(*f.GetUint("llama.context_length"), 2048u);
  EXPECT_EQ(*f.GetUint("llama.rope.dimension_count"), 8u);
  EXPECT_NEAR(*f.GetFloat("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-9);
  // Integer getters widen to float too.
  EXPECT_EQ(*f.GetFloat("llama.block_count"), 5.0);

  const GgufValue* v = f.Find("llama.block_count");
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->type, GgufValueType::kUint32);

  auto tokens = f.GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_EQ(tokens->size(), 512u);
  EXPECT_EQ((*tokens)[0], "<unk>");
  EXPECT_EQ((*tokens)[1], "<s>");
  EXPECT_EQ((*tokens)[2], "</s>");
  EXPECT_EQ((*tokens)[3], "<0x00>");
  auto scores = f.GetFloatArray("tokenizer.ggml.scores");
  ASSERT_TRUE(scores.ok()) << scores.status();
  EXPECT_EQ(scores->size(), 512u);
  auto types = f.GetIntArray("tokenizer.ggml.token_type");
  ASSERT_TRUE(types.ok()) << types.status();
  ASSERT_EQ(types->size(), 512u);
  EXPECT_EQ((*types)[0], 2);  // unknown
  EXPECT_EQ((*types)[1], 3);  // control
  EXPECT_EQ((*types)[3], 6);  // byte
}

TEST(GgufReader, Stories260KTensors) {
  auto file = GgufFile::Open(kStories);
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& f = **file;
  ASSERT_EQ(f.tensors().size(), 3u + 5u * 9u);
  EXPECT_EQ(f.tensors()[0].name, "token_embd.weight");

  struct Expected {
    std::string name;
    uint32_t n_dims;
    int64_t ne0, ne1;
  };
  std::vector<Expected> expected = {{"token_embd.weight", 2, 64, 512},
                                    {"output_norm.weight", 1, 64, 1},
                                    {"output.weight", 2, 64, 512}};
  for (int b = 0; b < 5; ++b) {
    const std::string p = "blk." + std::to_string(b) + ".";
    expected.push_back({p + "attn_q.weight", 2, 64, 64});
    expected.push_back({p + "attn_k.weight", 2, 64, 32});
    expected.push_back({p + "attn_v.weight", 2, 64, 32});
    expected.push_back({p + "attn_output.weight", 2, 64, 64});
    expected.push_back({p + "attn_norm.weight", 1, 64, 1});
    expected.push_back({p + "ffn_gate.weight", 2, 64, 172});
    expected.push_back({p + "ffn_down.weight", 2, 172, 64});
    expected.push_back({p + "ffn_up.weight", 2, 64, 172});
    expected.push_back({p + "ffn_norm.weight", 1, 64, 1});
  }
  uint64_t total = 0;
  for (const Expected& e : expected) {
    const GgufTensorInfo* t = f.FindTensor(e.name);
    ASSERT_NE(t, nullptr) << e.name;
    EXPECT_EQ(t->type, kernels::GgmlType::kF32) << e.name;
    EXPECT_EQ(t->n_dims, e.n_dims) << e.name;
    EXPECT_EQ(t->ne[0], e.ne0) << e.name;
    EXPECT_EQ(t->ne[1], e.ne1) << e.name;
    EXPECT_EQ(t->size, static_cast<uint64_t>(e.ne0 * e.ne1 * 4)) << e.name;
    EXPECT_EQ(t->offset % 32, 0u) << e.name;
    EXPECT_EQ(f.TensorData(*t).size(), t->size);
    total += t->size;
  }
  EXPECT_EQ(f.data_offset() + total, f.file_size());  // F32 sizes are all multiples of 32
  EXPECT_EQ(f.FindTensor("blk.5.attn_q.weight"), nullptr);

  // Tensor data points at the right bytes: compare with a plain read of the file.
  const GgufTensorInfo* norm = f.FindTensor("output_norm.weight");
  FILE* raw = std::fopen(kStories.c_str(), "rb");
  ASSERT_NE(raw, nullptr);
  std::vector<uint8_t> bytes(norm->size);
  ASSERT_EQ(std::fseek(raw, static_cast<long>(f.data_offset() + norm->offset), SEEK_SET), 0);
  ASSERT_EQ(std::fread(bytes.data(), 1, bytes.size(), raw), bytes.size());
  std::fclose(raw);
  auto data = f.TensorData(*norm);
  EXPECT_EQ(std::memcmp(data.data(), bytes.data(), bytes.size()), 0);
  f.Prefetch(*norm);  // a hint only; must not disturb anything
}

TEST(GgufReader, TypedGetterErrors) {
  auto file = GgufFile::Open(kStories);
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& f = **file;
  EXPECT_EQ(f.GetString("no.such.key").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(f.GetUint("no.such.key").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(f.GetString("llama.block_count").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.GetUint("general.architecture").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.GetBool("llama.block_count").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.GetUint("llama.attention.layer_norm_rms_epsilon").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.GetStringArray("tokenizer.ggml.scores").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.GetIntArray("tokenizer.ggml.scores").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.GetFloatArray("tokenizer.ggml.tokens").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.GetStringArray("llama.block_count").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(f.Has("general.name"));
  EXPECT_FALSE(f.Has("general.nam"));
}

TEST(GgufReader, SpmVocabulary) {
  auto file = GgufFile::Open(kSpmVocab);
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& f = **file;
  EXPECT_EQ(f.version(), 3u);
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_EQ(*f.GetString("tokenizer.ggml.model"), "llama");
  auto tokens = f.GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_EQ(tokens->size(), 32000u);
  EXPECT_EQ((*tokens)[1], "<s>");
  EXPECT_EQ(f.GetFloatArray("tokenizer.ggml.scores")->size(), 32000u);
  EXPECT_EQ(f.GetIntArray("tokenizer.ggml.token_type")->size(), 32000u);
  EXPECT_EQ(*f.GetUint("tokenizer.ggml.bos_token_id"), 1u);
  EXPECT_EQ(*f.GetUint("tokenizer.ggml.eos_token_id"), 2u);
  EXPECT_TRUE(*f.GetBool("tokenizer.ggml.add_bos_token"));
  EXPECT_FALSE(*f.GetBool("tokenizer.ggml.add_eos_token"));
}

TEST(GgufReader, Gpt2Vocabulary) {
  auto file = GgufFile::Open(kGpt2Vocab);
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& f = **file;
  EXPECT_EQ(*f.GetString("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(*f.GetString("tokenizer.ggml.pre"), "gpt-2");
  auto tokens = f.GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->size(), 50257u);
  EXPECT_EQ((*tokens)[0], "!");
  auto merges = f.GetStringArray("tokenizer.ggml.merges");
  ASSERT_TRUE(merges.ok()) << merges.status();
  EXPECT_EQ(merges->size(), 50000u);
  EXPECT_EQ((*merges)[0], "\xC4\xA0 t");  // "Ġ t"
}

// The bytes in memory parse as the file does (one parser), and errors name the given name.
TEST(GgufReader, FromBytesMatchesOpen) {
  auto opened = GgufFile::Open(kStories);
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::ifstream in(kStories, std::ios::binary);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
  auto parsed = GgufFile::FromBytes(bytes, "stories in memory");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const GgufFile& a = **opened;
  const GgufFile& b = **parsed;
  EXPECT_EQ(b.path(), "stories in memory");
  EXPECT_EQ(b.file_size(), a.file_size());
  EXPECT_EQ(b.data_offset(), a.data_offset());
  ASSERT_EQ(b.metadata().size(), a.metadata().size());
  for (size_t i = 0; i < a.metadata().size(); ++i) {
    EXPECT_EQ(b.metadata()[i].first, a.metadata()[i].first);
  }
  ASSERT_EQ(b.tensors().size(), a.tensors().size());
  for (const GgufTensorInfo& t : a.tensors()) {
    const GgufTensorInfo* u = b.FindTensor(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    const auto x = a.TensorData(t);
    const auto y = b.TensorData(*u);
    ASSERT_EQ(x.size(), y.size());
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size()), 0) << t.name;
  }

  auto truncated = GgufFile::FromBytes(std::span(bytes).first(100), "cut");
  ASSERT_FALSE(truncated.ok());
  EXPECT_TRUE(absl::StartsWith(truncated.status().message(), "cut: ")) << truncated.status();
}

TEST(GgufReader, MissingFile) {
  auto file = GgufFile::Open("/nonexistent/model.gguf");
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
}

TEST(GgufReader, ValueTypeNames) {
  EXPECT_EQ(GgufValueTypeName(GgufValueType::kUint32), "u32");
  EXPECT_EQ(GgufValueTypeName(GgufValueType::kArray), "array");
  EXPECT_EQ(GgufValueTypeName(static_cast<GgufValueType>(99)), "unknown");
}

}  // namespace
}  // namespace swarm::model
