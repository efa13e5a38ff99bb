#include "model/model_config.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "base/status_macros.h"
#include "model/gguf.h"
#include "model/metadata_audit.h"
#include "model/moe_config.h"
#include "model/rope_config.h"

namespace swarm::model {

namespace {

// Upper bounds well beyond any released Llama-family model; they keep later size arithmetic
// (n_embd * n_ff, n_vocab * n_embd, ...) far from overflow.
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxEmbd = 1 << 16;
constexpr int64_t kMaxFf = 1 << 18;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxVocab = 1 << 22;
constexpr int64_t kMaxContext = int64_t{1} << 24;

absl::StatusOr<int64_t> GetBounded(const GgufFile& file, const std::string& key, int64_t max) {
  auto v = file.GetInt(key);
  if (!v.ok()) {
    if (v.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(absl::StrCat("model metadata lacks '", key, "'"));
    }
    return v.status();
  }
  if (*v <= 0 || *v > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("model metadata '", key, "' is ", *v, ", expected 1..", max));
  }
  return *v;
}

absl::StatusOr<int64_t> GetBoundedOr(const GgufFile& file, const std::string& key, int64_t max,
                                     int64_t default_value) {
  if (!file.Has(key)) return default_value;
  return GetBounded(file, key, max);
}

// FNV-1a, 64 bit: stable across platforms and releases (unlike std::hash).
class Fnv1a {
 public:
  void Add(std::string_view s) {
    AddInt(s.size());
    for (char c : s) Byte(static_cast<uint8_t>(c));
  }
  void AddInt(uint64_t v) {
    for (int i = 0; i < 8; ++i) Byte(static_cast<uint8_t>(v >> (8 * i)));
  }
  void AddBytes(std::span<const uint8_t> bytes) {
    AddInt(bytes.size());
    for (uint8_t b : bytes) Byte(b);
  }
  uint64_t value() const { return h_; }

 private:
  void Byte(uint8_t b) {
    h_ ^= b;
    h_ *= 0x100000001b3ull;
  }
  uint64_t h_ = 0xcbf29ce484222325ull;
};

std::string ComputeModelId(const GgufFile& file, const ModelConfig& c) {
  Fnv1a h;
  h.Add("swarm-model-id-v1");
  h.Add(c.architecture);
  h.Add(c.name);
  for (int64_t v : {c.n_layer, c.n_embd, c.n_ff, c.n_head, c.n_head_kv, c.n_vocab, c.n_ctx_train}) {
    h.AddInt(static_cast<uint64_t>(v));
  }
  // Dense models keep the identity they always had.
  if (c.is_moe()) {
    for (int64_t v : {c.n_expert, c.n_expert_used, c.n_ff_exp}) h.AddInt(static_cast<uint64_t>(v));
  }
  uint32_t bits;
  std::memcpy(&bits, &c.rms_eps, 4);
  h.AddInt(bits);
  std::memcpy(&bits, &c.rope.freq_base, 4);
  h.AddInt(bits);
  // RoPE scaling and factors, only when present (the ids of models without them are unchanged).
  kernels::RopeParams plain;
  plain.freq_base = c.rope.freq_base;
  plain.style = c.rope.style;
  if (!(c.rope == plain)) {
    h.Add("rope");
    for (float v : {c.rope.freq_scale, c.rope.ext_factor, c.rope.attn_factor, c.rope.beta_fast,
                    c.rope.beta_slow}) {
      std::memcpy(&bits, &v, 4);
      h.AddInt(bits);
    }
    h.AddInt(static_cast<uint64_t>(c.rope.n_ctx_orig));
    for (float v : c.rope.freq_factors) {
      std::memcpy(&bits, &v, 4);
      h.AddInt(bits);
    }
  }
  // The tensor table, in name order so that a file with the same tensors laid out differently
  // still has the same identity.
  std::vector<const GgufTensorInfo*> tensors;
  for (const GgufTensorInfo& t : file.tensors()) tensors.push_back(&t);
  std::sort(tensors.begin(), tensors.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->name < b->name; });
  h.AddInt(tensors.size());
  for (const GgufTensorInfo* t : tensors) {
    h.Add(t->name);
    h.AddInt(static_cast<uint32_t>(t->type));
    h.AddInt(t->n_dims);
    for (int d = 0; d < 4; ++d) h.AddInt(static_cast<uint64_t>(t->ne[d]));
  }
  // A few bytes of the embedding table tell apart models that differ only in their weights (two
  // seeds of a synthetic model, a fine-tune that kept the name). One page read, at most.
  if (const GgufTensorInfo* embd = file.FindTensor("token_embd.weight")) {
    auto data = file.TensorData(*embd);
    h.AddBytes(data.subspan(0, std::min<size_t>(data.size(), 64)));
  }
  return absl::StrCat(absl::Hex(h.value(), absl::kZeroPad16));
}

bool IsValidModelId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

absl::StatusOr<ModelConfig> ReadConfig(const GgufFile& file) {
  ModelConfig c;
  auto arch = file.GetString("general.architecture");
  if (!arch.ok()) {
    if (arch.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError("no general.architecture: not a model file");
    }
    return arch.status();
  }
  c.architecture = std::string(*arch);
  if (c.architecture != "llama" && c.architecture != "qwen2" && c.architecture != "qwen3" &&
      c.architecture != "qwen3moe") {
    return absl::UnimplementedError(
        absl::StrCat("architecture '", c.architecture,
                     "' is not supported (supported: llama, qwen2, qwen3, qwen3moe)"));
  }
  if (auto name = file.GetString("general.name"); name.ok()) c.name = std::string(*name);

  const std::string p = c.architecture + ".";
  SWARM_ASSIGN_OR_RETURN(c.n_layer, GetBounded(file, p + "block_count", kMaxLayers));
  SWARM_ASSIGN_OR_RETURN(c.n_embd, GetBounded(file, p + "embedding_length", kMaxEmbd));
  SWARM_ASSIGN_OR_RETURN(c.n_ff, GetBounded(file, p + "feed_forward_length", kMaxFf));
  SWARM_ASSIGN_OR_RETURN(c.n_head, GetBounded(file, p + "attention.head_count", kMaxHeads));
  SWARM_ASSIGN_OR_RETURN(c.n_head_kv,
                         GetBoundedOr(file, p + "attention.head_count_kv", kMaxHeads, c.n_head));
  SWARM_ASSIGN_OR_RETURN(c.n_ctx_train, GetBounded(file, p + "context_length", kMaxContext));

  if (c.n_head % c.n_head_kv != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("head_count ", c.n_head, " is not a multiple of head_count_kv ", c.n_head_kv));
  }
  // The head size: attention.key_length when given (qwen3's differs from n_embd / n_head; the
  // query and output projections are then [n_embd] -> [n_head * key_length] and back).
  if (file.Has(p + "attention.key_length")) {
    SWARM_ASSIGN_OR_RETURN(c.head_dim, GetBounded(file, p + "attention.key_length", kMaxEmbd));
  } else {
    if (c.n_embd % c.n_head != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "embedding_length ", c.n_embd, " is not a multiple of head_count ", c.n_head));
    }
    c.head_dim = c.n_embd / c.n_head;
  }
  if (c.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("head dimension ", c.head_dim, " is odd: RoPE rotates pairs"));
  }
  if (c.head_dim * c.n_head > kMaxEmbd) {
    return absl::InvalidArgumentError(absl::StrCat("head_count ", c.n_head, " times key_length ",
                                                   c.head_dim, " exceeds ", kMaxEmbd));
  }
  if (file.Has(p + "attention.value_length")) {
    SWARM_ASSIGN_OR_RETURN(int64_t length,
                           GetBounded(file, p + "attention.value_length", kMaxEmbd));
    if (length != c.head_dim) {
      return absl::UnimplementedError(absl::StrCat(p, "attention.value_length ", length,
                                                   " differs from the key length ", c.head_dim,
                                                   ": heads of two sizes are not supported"));
    }
  }
  if (file.Has(p + "rope.dimension_count")) {
    SWARM_ASSIGN_OR_RETURN(int64_t rope_dims,
                           GetBounded(file, p + "rope.dimension_count", kMaxEmbd));
    if (rope_dims != c.head_dim) {
      return absl::UnimplementedError(
          absl::StrCat("partial rotary embeddings (rope.dimension_count ", rope_dims,
                       ", head dimension ", c.head_dim, ") are not supported"));
    }
  }
  SWARM_RETURN_IF_ERROR(ReadMoeConfig(file, p, c));
  SWARM_RETURN_IF_ERROR(AuditModelFile(file, c.architecture, c.head_dim, c.n_ctx_train));
  {
    const std::string key = p + "attention.layer_norm_rms_epsilon";
    auto eps = file.GetFloat(key);
    if (!eps.ok()) {
      if (eps.status().code() == absl::StatusCode::kNotFound) {
        return absl::NotFoundError(absl::StrCat("model metadata lacks '", key, "'"));
      }
      return eps.status();
    }
    if (!(*eps > 0.0 && *eps < 1.0)) {
      return absl::InvalidArgumentError(absl::StrCat(key, " is ", *eps, ", expected (0, 1)"));
    }
    c.rms_eps = static_cast<float>(*eps);
  }
  SWARM_ASSIGN_OR_RETURN(c.rope, ReadRopeParams(file, c.architecture, c.head_dim, c.n_ctx_train));
  // qwen2 always has Q/K/V biases; llama.cpp's llama takes them when the file has them.
  c.qkv_bias = c.architecture == "qwen2";
  if (c.architecture == "llama") {
    for (const GgufTensorInfo& t : file.tensors()) {
      const std::string_view name = t.name;
      if (name.starts_with("blk.") && name.ends_with(".attn_q.bias")) c.qkv_bias = true;
    }
  }
  // qwen3moe: qwen3's attention, every block a mixture of experts.
  c.qk_norm = c.architecture == "qwen3" || c.architecture == "qwen3moe";

  // The vocabulary size: the tokenizer's token list, or the embedding table (a slice without the
  // client tensors has only the former; a model without a tokenizer only the latter).
  int64_t from_tokens = 0, from_embd = 0;
  if (const GgufValue* tokens = file.Find("tokenizer.ggml.tokens")) {
    const auto* array = std::get_if<GgufValue::Array>(&tokens->value);
    if (array == nullptr) {
      return absl::InvalidArgumentError("tokenizer.ggml.tokens is not an array");
    }
    from_tokens = static_cast<int64_t>(array->elements.size());
  }
  if (const GgufTensorInfo* embd = file.FindTensor("token_embd.weight")) from_embd = embd->ne[1];
  if (from_tokens > 0 && from_embd > 0 && from_tokens != from_embd) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.ggml.tokens has ", from_tokens,
                                                   " tokens but token_embd.weight has ", from_embd,
                                                   " rows"));
  }
  c.n_vocab = from_tokens > 0 ? from_tokens : from_embd;
  if (c.n_vocab <= 0) {
    return absl::NotFoundError(
        "vocabulary size unknown: neither tokenizer.ggml.tokens nor token_embd.weight present");
  }
  if (c.n_vocab > kMaxVocab) {
    return absl::InvalidArgumentError(
        absl::StrCat("vocabulary of ", c.n_vocab, " tokens exceeds ", kMaxVocab));
  }

  // A slice carries the full model's id; a full model's id is computed from the file.
  if (const GgufValue* stored = file.Find("swarm.model_id")) {
    const auto* id = std::get_if<std::string_view>(&stored->value);
    if (id == nullptr || !IsValidModelId(*id)) {
      return absl::InvalidArgumentError("swarm.model_id is not a short identifier string");
    }
    c.model_id = std::string(*id);
  } else {
    c.model_id = ComputeModelId(file, c);
  }
  return c;
}

}  // namespace

absl::StatusOr<ModelConfig> ReadModelConfig(const GgufFile& file) {
  auto config = ReadConfig(file);
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(file.path(), ": ", config.status().message()));
  }
  return config;
}

}  // namespace swarm::model
