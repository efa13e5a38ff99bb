// Views of a model's weights inside a mapped GGUF file: the tensors of a block range [a, b), or the
// client part (embeddings, output norm, LM head). Each view's shape and type is validated against
// the ModelConfig. Views borrow from the GgufFile, which must outlive them. Loading touches no page
// of any other tensor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "model/model_config.h"

namespace swarm::model {

class GgufFile;

// Names as in GGUF: blk.N.attn_norm.weight, blk.N.attn_q.weight, ...
struct BlockWeights {
  int64_t layer = 0;             // model layer id
  kernels::Weight attn_norm;     // [n_embd] f32
  kernels::Weight wq, wk, wv;    // [n_embd] -> [q_dim], [kv_dim], [kv_dim]
  kernels::Weight bq, bk, bv;    // qwen2 only (data == nullptr otherwise), f32
  kernels::Weight q_norm;        // qwen3 only: [head_dim] f32, attn_q_norm.weight
  kernels::Weight k_norm;        // qwen3 only: [head_dim] f32, attn_k_norm.weight
  kernels::Weight wo;            // [q_dim] -> [n_embd]
  kernels::Weight ffn_norm;      // [n_embd] f32
  kernels::Weight w_gate, w_up;  // [n_embd] -> [n_ff]
  kernels::Weight w_down;        // [n_ff] -> [n_embd]
  // Mixture of experts (ModelConfig::is_moe()), in place of w_gate, w_up and w_down: the router,
  // and one view per expert into the 3-D tensors ffn_{gate,up,down}_exps [n_in, n_out, n_expert],
  // so that each expert is a plain matrix to every backend.
  kernels::Weight ffn_gate_inp;                     // [n_embd] -> [n_expert]
  std::vector<kernels::Weight> gate_exps, up_exps;  // n_expert x ([n_embd] -> [n_ff_exp])
  std::vector<kernels::Weight> down_exps;           // n_expert x ([n_ff_exp] -> [n_embd])
};

struct ClientWeights {
  kernels::Weight token_embd;   // [n_embd, n_vocab]
  kernels::Weight output_norm;  // [n_embd] f32
  kernels::Weight output;       // [n_embd] -> [n_vocab]; token_embd when tied
};

// Blocks [first, last) of the model. A GGUF slice holds only some blocks: loading one it lacks is
// an error naming the missing tensor.
absl::StatusOr<std::vector<BlockWeights>> LoadBlockWeights(const GgufFile& file,
                                                           const ModelConfig& config, int64_t first,
                                                           int64_t last);

absl::StatusOr<ClientWeights> LoadClientWeights(const GgufFile& file, const ModelConfig& config);

}  // namespace swarm::model
