// One transformer block's forward pass, shared by every stack that runs blocks (BlockStack on one
// backend, MultiGpuStack over several): the scratch activations it needs, and the sequence of
// backend operations, so that every stack computes the same bits.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "shard/kv_cache.h"
#include "shard/moe_forward.h"

namespace swarm::shard {

// Scratch activations for up to capacity() tokens, in one backend's memory. Each is
// [rows, tokens] with the rows named beside it.
class BlockActivations {
 public:
  // Makes room for n_tokens (reallocating only to grow; the old pointers are then invalid).
  absl::Status Reserve(kernels::Backend& backend, const model::ModelConfig& config,
                       int64_t n_tokens);
  int64_t capacity() const { return capacity_; }

  float* x = nullptr;    // [n_embd] residual stream
  float* xb = nullptr;   // [n_embd] normed input
  float* xb2 = nullptr;  // [n_embd] block output before the residual add
  float* q = nullptr;    // [q_dim]
  float* k = nullptr;    // [kv_dim]
  float* v = nullptr;    // [kv_dim]
  float* att = nullptr;  // [q_dim]
  float* hb = nullptr;   // [max(n_ff, n_ff_exp)]
  float* hb2 = nullptr;  // [max(n_ff, n_ff_exp)]
  MoeBuffers moe;        // mixture-of-experts models only (null otherwise)
  MoeRouting routing;    // host scratch of the MoE router

 private:
  std::unique_ptr<kernels::Buffer> buffer_;
  int64_t capacity_ = 0;
};

// Runs block w over the n_tokens tokens in a.x, in place. The batch is a sequence of steps, each
// one sequence's consecutive tokens: cache_of(step) is its KvCache (written at local_layer, at the
// step's positions) and step.n_tokens its token count; positions[t] is token t's position. A
// mixture-of-experts block synchronizes the backend once (its router's choice is read on the
// host), and reports a backend error then.
template <class Steps, class CacheOf>
absl::Status RunBlock(kernels::Backend& b, const model::ModelConfig& c,
                      const model::BlockWeights& w, int64_t local_layer, const Steps& steps,
                      CacheOf cache_of, const int32_t* positions, int64_t n_tokens,
                      BlockActivations& a) {
  const int64_t n_embd = c.n_embd, q_dim = c.q_dim(), kv_dim = c.kv_dim();
  const kernels::AttentionShape shape{c.n_head, c.n_head_kv, c.head_dim};

  // Attention: x += wo · attention(rope(wq · norm(x)), rope(wk · norm(x)), wv · norm(x))
  // (qwen3: rope(qnorm(wq · norm(x))), rope(knorm(wk · norm(x))), heads normed one by one)
  b.RmsNorm(a.x, static_cast<const float*>(w.attn_norm.data), n_embd, n_tokens, c.rms_eps, a.xb);
  b.MatMul(w.wq, a.xb, n_tokens, a.q);
  b.MatMul(w.wk, a.xb, n_tokens, a.k);
  b.MatMul(w.wv, a.xb, n_tokens, a.v);
  if (w.bq.data != nullptr) {
    b.AddBias(a.q, static_cast<const float*>(w.bq.data), q_dim, n_tokens);
    b.AddBias(a.k, static_cast<const float*>(w.bk.data), kv_dim, n_tokens);
    b.AddBias(a.v, static_cast<const float*>(w.bv.data), kv_dim, n_tokens);
  }
  if (w.q_norm.data != nullptr) {
    // qwen3: each head of q and k is RMS-normed on its own ([head_dim, n_heads * T] views).
    b.RmsNorm(a.q, static_cast<const float*>(w.q_norm.data), c.head_dim, c.n_head * n_tokens,
              c.rms_eps, a.q);
    b.RmsNorm(a.k, static_cast<const float*>(w.k_norm.data), c.head_dim, c.n_head_kv * n_tokens,
              c.rms_eps, a.k);
  }
  b.Rope(a.q, c.head_dim, c.n_head, n_tokens, positions, c.rope);
  b.Rope(a.k, c.head_dim, c.n_head_kv, n_tokens, positions, c.rope);
  int64_t offset = 0;
  for (const auto& step : steps) {
    KvCache& cache = cache_of(step);
    const int32_t* step_positions = positions + offset;
    kernels::AttentionShape step_shape = shape;
    step_shape.cache = cache.types();
    b.StoreKv(a.k + offset * kv_dim, a.v + offset * kv_dim, kv_dim, step.n_tokens, step_positions,
              cache.types(), cache.keys(local_layer), cache.values(local_layer));
    b.Attention(a.q + offset * q_dim, cache.keys(local_layer), cache.values(local_layer),
                step_shape, step.n_tokens, step_positions, a.att + offset * q_dim);
    offset += step.n_tokens;
  }
  b.MatMul(w.wo, a.att, n_tokens, a.xb2);
  b.Add(a.x, a.xb2, n_embd * n_tokens);

  // Feed-forward: x += w_down · (silu(w_gate · norm(x)) * (w_up · norm(x))), or the same summed
  // over each token's chosen experts (moe_forward.h).
  b.RmsNorm(a.x, static_cast<const float*>(w.ffn_norm.data), n_embd, n_tokens, c.rms_eps, a.xb);
  if (c.is_moe()) {
    return MoeFeedForward(b, c, w, n_tokens, a.xb, a.x, a.hb, a.hb2, a.xb2, a.moe, a.routing);
  }
  b.MatMul(w.w_gate, a.xb, n_tokens, a.hb);
  b.MatMul(w.w_up, a.xb, n_tokens, a.hb2);
  b.SwiGlu(a.hb, a.hb2, c.n_ff * n_tokens, a.hb);
  b.MatMul(w.w_down, a.hb, n_tokens, a.xb2);
  b.Add(a.x, a.xb2, n_embd * n_tokens);
  return absl::OkStatus();
}

}  // namespace swarm::shard
