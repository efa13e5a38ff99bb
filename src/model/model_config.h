// Hyper-parameters of a Llama-family model, read from GGUF metadata and checked for consistency.
// A value type.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace swarm::model {

class GgufFile;

struct ModelConfig {
  std::string architecture;  // "llama", "qwen2" or "qwen3"
  std::string name;          // general.name, may be empty
  int64_t n_layer = 0;
  int64_t n_embd = 0;
  int64_t n_ff = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  // attention.key_length (= value_length) when given, else n_embd / n_head; qwen3's differs from
  // n_embd / n_head, so queries and attention outputs are q_dim() wide, not n_embd.
  int64_t head_dim = 0;
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  float rms_eps = 1e-5f;
  kernels::RopeParams rope;  // base, pairing, Llama 3 factors, linear / YaRN scaling
  bool qkv_bias = false;     // qwen2
  bool qk_norm = false;      // qwen3: per-head RMSNorm of queries and keys before RoPE
  // Mixture of experts (model/moe_config.h): 0 experts means a dense feed-forward.
  int64_t n_expert = 0;       // expert_count
  int64_t n_expert_used = 0;  // expert_used_count: experts chosen per token
  int64_t n_ff_exp = 0;       // rows of each expert's gate and up matrices
  // Stable identity of the model's weights (architecture, shapes and a hash of the tensor table),
  // so peers serving slices of the same model agree on it.
  std::string model_id;

  int64_t q_dim() const { return head_dim * n_head; }
  int64_t kv_dim() const { return head_dim * n_head_kv; }
  bool is_moe() const { return n_expert > 0; }
};

absl::StatusOr<ModelConfig> ReadModelConfig(const GgufFile& file);

}  // namespace swarm::model
