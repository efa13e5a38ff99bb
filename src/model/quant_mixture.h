// Which type each tensor of a model gets when it is quantized: llama.cpp's quantization schemes
// ("file types": Q4_K_M, Q5_K_M, Q3_K_M, Q2_K, Q8_0, ...) and their per-tensor rules (llama.cpp's
// llama_tensor_get_type: more bits for attn_v and ffn_down in some layers, for the output matrix,
// fallbacks for rows not divisible by a type's block), or one type for every matrix. Types are
// ggml type ids, so that types this build cannot write yet can still be named in errors. Immutable
// values and pure functions: any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace swarm::model {

// A ggml type id with its name and block size, known whether or not this build implements it.
struct QuantTypeInfo {
  uint32_t id;
  std::string_view name;  // as llama.cpp prints it, e.g. "Q4_K"
  int64_t block_size;     // elements per block
};
// The table of types a scheme may choose; nullptr for other ids.
const QuantTypeInfo* FindQuantType(uint32_t id);
std::string QuantTypeName(uint32_t id);  // "type id N" for ids outside the table

struct QuantScheme {
  std::string_view name;  // "Q4_K_M"
  uint32_t file_type;     // general.file_type (llama.cpp's llama_ftype)
  uint32_t base_type;     // the type most matrices get
};

// Accepts llama.cpp's scheme names (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K_M,
// Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, IQ4_NL, IQ4_XS) and llama-quantize's aliases Q3_K, Q4_K,
// Q5_K (for Q3_K_M, Q4_K_M, Q5_K_M), case-insensitive. InvalidArgument listing them otherwise.
absl::StatusOr<QuantScheme> ParseQuantScheme(std::string_view name);
std::string QuantSchemeNames();  // for help texts and errors

// What the rules need to know of a model.
struct QuantModelInfo {
  std::string arch;     // general.architecture
  int64_t n_layer = 0;  // {arch}.block_count
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t n_expert = 0;  // {arch}.expert_count, 0 for dense models
};

struct QuantTensorInfo {
  std::string name;
  int n_dims = 0;
  int64_t ne0 = 0;  // row length
  int64_t ne1 = 1;
};

// Whether llama.cpp quantizes a tensor at all: 2-D and up, named *weight, not a norm, not an
// expert router (ffn_gate_inp), not a positional embedding.
bool ShouldQuantize(const QuantTensorInfo& tensor);

// The type of every tensor to quantize, in the given order (llama.cpp's: block by block), which
// the per-layer rules count along. Tensors ShouldQuantize rejects are not passed.
class QuantTypeChooser {
 public:
  // `tensors`: every tensor of the model (ties of token_embd and output are seen from it).
  QuantTypeChooser(const QuantScheme& scheme, QuantModelInfo model,
                   const std::vector<QuantTensorInfo>& tensors);

  // The type for the next quantized tensor (call in order); `fallback` says why it is not the
  // rule's type when a row is not a multiple of that type's block ("" otherwise).
  // InvalidArgument when no type fits the rows (llama.cpp refuses those too).
  absl::StatusOr<uint32_t> Choose(const QuantTensorInfo& tensor, std::string* fallback);

 private:
  absl::StatusOr<uint32_t> RuleType(const QuantTensorInfo& tensor);

  QuantScheme scheme_;
  QuantModelInfo model_;
  bool has_output_ = false;
  int n_attention_wv_ = 0;
  int i_attention_wv_ = 0;
  int i_ffn_down_ = 0;
};

// llama.cpp's tensor order: tensors outside the blocks first, then block by block; by name within.
bool QuantTensorOrder(const std::string& a, const std::string& b);

}  // namespace swarm::model
