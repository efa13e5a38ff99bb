// The mixture-of-experts feed-forward of one block (Mixtral, Qwen3-MoE): the router chooses each
// token's experts on the host, tokens are grouped by expert so that each chosen expert's weights
// are read once per batch (a decode step reads only the chosen experts), and each expert's
// output is added to its tokens' residual stream, weighted by the gate. Free functions and a
// value type of host scratch; called by RunBlock on the thread that drives the backend.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "model/model_config.h"
#include "model/model_weights.h"

namespace swarm::shard {

// The router's decision for a batch: for each expert, the tokens that chose it (ascending) and
// their gate weights. Host memory, reused from batch to batch.
struct MoeRouting {
  std::vector<std::vector<int32_t>> tokens;  // [n_expert][tokens that chose the expert]
  std::vector<std::vector<float>> weights;   // same shape: gate weight of each
  std::vector<float> logits;                 // [n_expert, T] copied from the backend
  std::vector<float> probs;                  // [n_expert] one token's softmax
  std::vector<int32_t> chosen;               // [n_expert_used] one token's choice
};

// Routes T tokens from the router's logits: [n_expert, T]. Per token, as llama.cpp's
// llm_build_moe_ffn with softmax gating and renormalised weights: p = softmax(logits), the
// n_used experts of largest p (the lower index first among equals), weights p / sum of the
// chosen p.
void RouteTokens(const float* logits, int64_t n_expert, int64_t n_used, int64_t n_tokens,
                 MoeRouting& routing);

// Backend scratch the MoE feed-forward uses beside the dense one's, each [rows, T].
struct MoeBuffers {
  float* router = nullptr;  // [n_expert] the router's logits
  float* xg = nullptr;      // [n_embd] the normed inputs of one expert's tokens, gathered
};

// x: [n_embd, T] += sum over each token's chosen experts e of weight_e * down_e(silu(gate_e(xb))
// * up_e(xb)), xb: [n_embd, T] the normed input. hb, hb2: [n_ff_exp, T] and out: [n_embd, T] are
// scratch. Synchronizes the backend once, to read the router's logits.
absl::Status MoeFeedForward(kernels::Backend& b, const model::ModelConfig& c,
                            const model::BlockWeights& w, int64_t n_tokens, const float* xb,
                            float* x, float* hb, float* hb2, float* out, const MoeBuffers& buffers,
                            MoeRouting& routing);

// Prepares the router and every expert of `host` for backend b (Backend::PrepareWeight), into
// `resident`, whose other weights the caller prepares.
absl::Status PrepareExperts(kernels::Backend& b, const model::BlockWeights& host,
                            model::BlockWeights& resident,
                            std::vector<std::unique_ptr<kernels::Buffer>>& storage);

}  // namespace swarm::shard
