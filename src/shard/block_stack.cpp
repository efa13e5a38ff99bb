#include "shard/block_stack.h"

#include "absl/strings/str_cat.h"
#include "base/checked_math.h"
#include "base/status_macros.h"

namespace swarm::shard {
namespace {

absl::StatusOr<kernels::Weight> Prepare(kernels::Backend& backend, const kernels::Weight& host,
                                        std::vector<std::unique_ptr<kernels::Buffer>>& storage) {
  if (host.data == nullptr) return host;  // absent optional tensor (e.g. no QKV bias)
  return backend.PrepareWeight(host, storage);
}

}  // namespace

absl::StatusOr<std::unique_ptr<BlockStack>> BlockStack::Create(
    kernels::Backend& backend, const model::ModelConfig& config,
    const std::vector<model::BlockWeights>& host_blocks) {
  if (host_blocks.empty()) return absl::InvalidArgumentError("a block stack needs >= 1 block");
  std::unique_ptr<BlockStack> stack(new BlockStack(backend, config));
  stack->first_ = host_blocks.front().layer;
  stack->last_ = host_blocks.back().layer + 1;
  for (size_t i = 0; i < host_blocks.size(); ++i) {
    if (host_blocks[i].layer != stack->first_ + static_cast<int64_t>(i)) {
      return absl::InvalidArgumentError("block weights are not a contiguous range");
    }
  }
  auto& storage = stack->weight_storage_;
  for (const model::BlockWeights& host : host_blocks) {
    model::BlockWeights w = host;
    SWARM_ASSIGN_OR_RETURN(w.attn_norm, Prepare(backend, host.attn_norm, storage));
    SWARM_ASSIGN_OR_RETURN(w.wq, Prepare(backend, host.wq, storage));
    SWARM_ASSIGN_OR_RETURN(w.wk, Prepare(backend, host.wk, storage));
    SWARM_ASSIGN_OR_RETURN(w.wv, Prepare(backend, host.wv, storage));
    SWARM_ASSIGN_OR_RETURN(w.bq, Prepare(backend, host.bq, storage));
    SWARM_ASSIGN_OR_RETURN(w.bk, Prepare(backend, host.bk, storage));
    SWARM_ASSIGN_OR_RETURN(w.bv, Prepare(backend, host.bv, storage));
    SWARM_ASSIGN_OR_RETURN(w.wo, Prepare(backend, host.wo, storage));
    SWARM_ASSIGN_OR_RETURN(w.ffn_norm, Prepare(backend, host.ffn_norm, storage));
    SWARM_ASSIGN_OR_RETURN(w.w_gate, Prepare(backend, host.w_gate, storage));
    SWARM_ASSIGN_OR_RETURN(w.w_up, Prepare(backend, host.w_up, storage));
    SWARM_ASSIGN_OR_RETURN(w.w_down, Prepare(backend, host.w_down, storage));
    stack->blocks_.push_back(w);
  }
  return stack;
}

absl::StatusOr<std::unique_ptr<KvCache>> BlockStack::NewCache(int64_t capacity) {
  return KvCache::Create(backend_, n_blocks(), config_.kv_dim(), capacity);
}

absl::StatusOr<std::unique_ptr<SequenceCache>> BlockStack::NewSequenceCache(int64_t capacity) {
  SWARM_ASSIGN_OR_RETURN(auto cache, NewCache(capacity));
  return std::unique_ptr<SequenceCache>(std::move(cache));
}

absl::Status BlockStack::ForwardSteps(std::span<const ServingStep> steps, int64_t first,
                                      int64_t last, const float* hidden_in, float* hidden_out) {
  std::vector<SequenceStep> own(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    auto* cache = dynamic_cast<KvCache*>(steps[i].cache);
    if (steps[i].cache != nullptr && cache == nullptr) {
      return absl::InvalidArgumentError("the cache belongs to another kind of block stack");
    }
    own[i] = {cache, steps[i].n_tokens};
  }
  return Forward(own, first, last, hidden_in, hidden_out);
}

absl::Status BlockStack::EnsureScratch(int64_t n_tokens) {
  if (n_tokens <= scratch_tokens_) return absl::OkStatus();
  const int64_t n_embd = config_.n_embd, kv = config_.kv_dim(), n_ff = config_.n_ff;
  // x, xb, xb2, q, att: n_embd each; k, v: kv_dim each; hb, hb2: n_ff each.
  const uint64_t per_token = 5 * n_embd + 2 * kv + 2 * n_ff;
  auto floats = CheckedMul(per_token, static_cast<uint64_t>(n_tokens));
  auto bytes = floats ? CheckedMul(*floats, sizeof(float)) : std::nullopt;
  if (!bytes) return absl::ResourceExhaustedError("scratch size overflows");
  scratch_.reset();
  SWARM_ASSIGN_OR_RETURN(scratch_, backend_.Allocate(*bytes));
  float* p = static_cast<float*>(scratch_->data());
  auto take = [&](int64_t rows) {
    float* view = p;
    p += rows * n_tokens;
    return view;
  };
  x_ = take(n_embd);
  xb_ = take(n_embd);
  xb2_ = take(n_embd);
  q_ = take(n_embd);
  att_ = take(n_embd);
  k_ = take(kv);
  v_ = take(kv);
  hb_ = take(n_ff);
  hb2_ = take(n_ff);
  scratch_tokens_ = n_tokens;
  return absl::OkStatus();
}

absl::Status BlockStack::Forward(std::span<const SequenceStep> steps, int64_t first, int64_t last,
                                 const float* hidden_in, float* hidden_out) {
  if (first < first_ || last > last_ || first >= last) {
    return absl::InvalidArgumentError(absl::StrCat("blocks [", first, ", ", last,
                                                   ") are not inside this peer's blocks [", first_,
                                                   ", ", last_, ")"));
  }
  int64_t total = 0;
  for (const SequenceStep& step : steps) {
    if (step.cache == nullptr || step.n_tokens <= 0) {
      return absl::InvalidArgumentError("a step needs a cache and at least one token");
    }
    if (step.n_tokens > step.cache->capacity() - step.cache->length()) {
      return absl::OutOfRangeError(absl::StrCat("step of ", step.n_tokens, " tokens at position ",
                                                step.cache->length(), " exceeds the cache of ",
                                                step.cache->capacity(), " positions"));
    }
    total += step.n_tokens;
  }
  if (total == 0) return absl::InvalidArgumentError("empty batch");
  SWARM_RETURN_IF_ERROR(EnsureScratch(total));

  positions_.clear();
  for (const SequenceStep& step : steps) {
    for (int64_t t = 0; t < step.n_tokens; ++t) {
      positions_.push_back(static_cast<int32_t>(step.cache->length() + t));
    }
  }
  const size_t hidden_bytes = static_cast<size_t>(config_.n_embd * total) * sizeof(float);
  SWARM_RETURN_IF_ERROR(backend_.CopyToBackend(x_, hidden_in, hidden_bytes));
  for (int64_t l = first - first_; l < last - first_; ++l) RunBlock(blocks_[l], l, steps, total);
  SWARM_RETURN_IF_ERROR(backend_.CopyToHost(hidden_out, x_, hidden_bytes));
  SWARM_RETURN_IF_ERROR(backend_.Synchronize());
  for (const SequenceStep& step : steps) step.cache->Advance(step.n_tokens);
  return absl::OkStatus();
}

void BlockStack::RunBlock(const model::BlockWeights& w, int64_t local_layer,
                          std::span<const SequenceStep> steps, int64_t n_tokens) {
  kernels::Backend& b = backend_;
  const model::ModelConfig& c = config_;
  const int64_t n_embd = c.n_embd, kv_dim = c.kv_dim();
  const kernels::AttentionShape shape{c.n_head, c.n_head_kv, c.head_dim};

  // Attention: x += wo · attention(rope(wq · norm(x)), rope(wk · norm(x)), wv · norm(x))
  b.RmsNorm(x_, static_cast<const float*>(w.attn_norm.data), n_embd, n_tokens, c.rms_eps, xb_);
  b.MatMul(w.wq, xb_, n_tokens, q_);
  b.MatMul(w.wk, xb_, n_tokens, k_);
  b.MatMul(w.wv, xb_, n_tokens, v_);
  if (w.bq.data != nullptr) {
    b.AddBias(q_, static_cast<const float*>(w.bq.data), n_embd, n_tokens);
    b.AddBias(k_, static_cast<const float*>(w.bk.data), kv_dim, n_tokens);
    b.AddBias(v_, static_cast<const float*>(w.bv.data), kv_dim, n_tokens);
  }
  b.Rope(q_, c.head_dim, c.n_head, n_tokens, positions_.data(), c.rope_freq_base, c.rope_style);
  b.Rope(k_, c.head_dim, c.n_head_kv, n_tokens, positions_.data(), c.rope_freq_base,
         c.rope_style);
  int64_t offset = 0;
  for (const SequenceStep& step : steps) {
    KvCache& cache = *step.cache;
    const int32_t* positions = positions_.data() + offset;
    b.StoreKv(k_ + offset * kv_dim, v_ + offset * kv_dim, kv_dim, step.n_tokens, positions,
              cache.keys(local_layer), cache.values(local_layer));
    b.Attention(q_ + offset * n_embd, cache.keys(local_layer), cache.values(local_layer), shape,
                step.n_tokens, positions, att_ + offset * n_embd);
    offset += step.n_tokens;
  }
  b.MatMul(w.wo, att_, n_tokens, xb2_);
  b.Add(x_, xb2_, n_embd * n_tokens);

  // Feed-forward: x += w_down · (silu(w_gate · norm(x)) * (w_up · norm(x)))
  b.RmsNorm(x_, static_cast<const float*>(w.ffn_norm.data), n_embd, n_tokens, c.rms_eps, xb_);
  b.MatMul(w.w_gate, xb_, n_tokens, hb_);
  b.MatMul(w.w_up, xb_, n_tokens, hb2_);
  b.SwiGlu(hb_, hb2_, c.n_ff * n_tokens, hb_);
  b.MatMul(w.w_down, hb_, n_tokens, xb2_);
  b.Add(x_, xb2_, n_embd * n_tokens);
}

}  // namespace swarm::shard
