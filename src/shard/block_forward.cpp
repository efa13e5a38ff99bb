#include "shard/block_forward.h"

#include <algorithm>
#include <optional>

#include "base/checked_math.h"
#include "base/status_macros.h"

namespace swarm::shard {

absl::Status BlockActivations::Reserve(kernels::Backend& backend, const model::ModelConfig& config,
                                       int64_t n_tokens) {
  if (n_tokens <= capacity_) return absl::OkStatus();
  const int64_t n_embd = config.n_embd, q_dim = config.q_dim(), kv = config.kv_dim();
  const int64_t n_ff = std::max(config.n_ff, config.n_ff_exp);
  const int64_t n_expert = config.n_expert, moe_embd = config.is_moe() ? n_embd : 0;
  // x, xb, xb2: n_embd each; q, att: q_dim each; k, v: kv_dim each; hb, hb2: n_ff each; MoE:
  // router n_expert, xg n_embd.
  const uint64_t per_token = 3 * n_embd + 2 * q_dim + 2 * kv + 2 * n_ff + n_expert + moe_embd;
  auto floats = CheckedMul(per_token, static_cast<uint64_t>(n_tokens));
  auto bytes = floats ? CheckedMul(*floats, sizeof(float)) : std::nullopt;
  if (!bytes) return absl::ResourceExhaustedError("scratch size overflows");
  buffer_.reset();
  capacity_ = 0;
  SWARM_ASSIGN_OR_RETURN(buffer_, backend.Allocate(*bytes));
  float* p = static_cast<float*>(buffer_->data());
  auto take = [&](int64_t rows) {
    float* view = p;
    p += rows * n_tokens;
    return view;
  };
  x = take(n_embd);
  xb = take(n_embd);
  xb2 = take(n_embd);
  q = take(q_dim);
  att = take(q_dim);
  k = take(kv);
  v = take(kv);
  hb = take(n_ff);
  hb2 = take(n_ff);
  moe.router = config.is_moe() ? take(n_expert) : nullptr;
  moe.xg = config.is_moe() ? take(moe_embd) : nullptr;
  capacity_ = n_tokens;
  return absl::OkStatus();
}

}  // namespace swarm::shard
