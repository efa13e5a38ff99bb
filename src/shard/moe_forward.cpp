#include "shard/moe_forward.h"

#include <algorithm>
#include <cmath>

#include "base/status_macros.h"

namespace swarm::shard {

void RouteTokens(const float* logits, int64_t n_expert, int64_t n_used, int64_t n_tokens,
                 MoeRouting& r) {
  r.tokens.resize(static_cast<size_t>(n_expert));
  r.weights.resize(static_cast<size_t>(n_expert));
  for (auto& list : r.tokens) list.clear();
  for (auto& list : r.weights) list.clear();
  r.probs.resize(static_cast<size_t>(n_expert));
  r.chosen.resize(static_cast<size_t>(n_used));
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* l = logits + t * n_expert;
    // Softmax as ggml_soft_max: max subtracted, exponentials summed in double.
    const float max = *std::max_element(l, l + n_expert);
    double sum = 0.0;
    for (int64_t e = 0; e < n_expert; ++e) {
      r.probs[e] = std::exp(l[e] - max);
      sum += r.probs[e];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t e = 0; e < n_expert; ++e) r.probs[e] *= inv;
    // Top n_used by probability; a NaN (a broken model) sorts last, so the choice stays valid.
    for (int64_t i = 0; i < n_used; ++i) {
      int32_t best = -1;
      for (int64_t e = 0; e < n_expert; ++e) {
        if (std::find(r.chosen.begin(), r.chosen.begin() + i, e) != r.chosen.begin() + i) continue;
        if (best < 0 || r.probs[e] > r.probs[best] ||
            (std::isnan(r.probs[best]) && !std::isnan(r.probs[e]))) {
          best = static_cast<int32_t>(e);
        }
      }
      r.chosen[i] = best;
    }
    float chosen_sum = 0.0f;
    for (int64_t i = 0; i < n_used; ++i) chosen_sum += r.probs[r.chosen[i]];
    for (int64_t i = 0; i < n_used; ++i) {
      const int32_t e = r.chosen[i];
      r.tokens[e].push_back(static_cast<int32_t>(t));
      r.weights[e].push_back(r.probs[e] / chosen_sum);
    }
  }
}

absl::Status MoeFeedForward(kernels::Backend& b, const model::ModelConfig& c,
                            const model::BlockWeights& w, int64_t n_tokens, const float* xb,
                            float* x, float* hb, float* hb2, float* out, const MoeBuffers& buffers,
                            MoeRouting& routing) {
  const int64_t n_embd = c.n_embd, n_expert = c.n_expert;
  // Router: logits: [n_expert, T] = ffn_gate_inp · xb, read back to choose the experts.
  b.MatMul(w.ffn_gate_inp, xb, n_tokens, buffers.router);
  routing.logits.resize(static_cast<size_t>(n_expert * n_tokens));
  SWARM_RETURN_IF_ERROR(
      b.CopyToHost(routing.logits.data(), buffers.router, routing.logits.size() * sizeof(float)));
  SWARM_RETURN_IF_ERROR(b.Synchronize());
  RouteTokens(routing.logits.data(), n_expert, c.n_expert_used, n_tokens, routing);

  // The normed inputs as a table of T rows, so that GetRows gathers an expert's tokens.
  const kernels::Weight table{kernels::GgmlType::kF32, n_embd, n_tokens, xb};
  for (int64_t e = 0; e < n_expert; ++e) {
    const std::vector<int32_t>& tokens = routing.tokens[static_cast<size_t>(e)];
    const int64_t n = static_cast<int64_t>(tokens.size());
    if (n == 0) continue;  // an expert no token chose is not read at all
    // An expert every token chose (always so in a one-token decode step) reads xb as it is.
    const float* in = xb;
    if (n != n_tokens) {
      b.GetRows(table, tokens.data(), n, buffers.xg);
      in = buffers.xg;
    }
    // out: [n_embd, n] = down_e · (silu(gate_e · in) * (up_e · in))
    b.MatMul(w.gate_exps[static_cast<size_t>(e)], in, n, hb);
    b.MatMul(w.up_exps[static_cast<size_t>(e)], in, n, hb2);
    b.SwiGlu(hb, hb2, c.n_ff_exp * n, hb);
    b.MatMul(w.down_exps[static_cast<size_t>(e)], hb, n, out);
    b.AddScaledColumns(x, out, n_embd, tokens.data(),
                       routing.weights[static_cast<size_t>(e)].data(), n);
  }
  return absl::OkStatus();
}

absl::Status PrepareExperts(kernels::Backend& b, const model::BlockWeights& host,
                            model::BlockWeights& resident,
                            std::vector<std::unique_ptr<kernels::Buffer>>& storage) {
  if (host.ffn_gate_inp.data == nullptr) return absl::OkStatus();  // a dense block
  SWARM_ASSIGN_OR_RETURN(resident.ffn_gate_inp, b.PrepareWeight(host.ffn_gate_inp, storage));
  for (auto* list : {&resident.gate_exps, &resident.up_exps, &resident.down_exps}) {
    for (kernels::Weight& expert : *list) {
      SWARM_ASSIGN_OR_RETURN(expert, b.PrepareWeight(expert, storage));
    }
  }
  return absl::OkStatus();
}

}  // namespace swarm::shard
