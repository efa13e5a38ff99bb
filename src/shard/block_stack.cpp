#include "shard/block_stack.h"

#include "absl/strings/str_cat.h"
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
    const std::vector<model::BlockWeights>& host_blocks, kernels::KvTypes kv_types) {
  if (host_blocks.empty()) return absl::InvalidArgumentError("a block stack needs >= 1 block");
  SWARM_RETURN_IF_ERROR(kernels::ValidateKvTypes(kv_types, config.head_dim));
  std::unique_ptr<BlockStack> stack(new BlockStack(backend, config, kv_types));
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
    SWARM_ASSIGN_OR_RETURN(w.q_norm, Prepare(backend, host.q_norm, storage));
    SWARM_ASSIGN_OR_RETURN(w.k_norm, Prepare(backend, host.k_norm, storage));
    SWARM_ASSIGN_OR_RETURN(w.wo, Prepare(backend, host.wo, storage));
    SWARM_ASSIGN_OR_RETURN(w.ffn_norm, Prepare(backend, host.ffn_norm, storage));
    SWARM_ASSIGN_OR_RETURN(w.w_gate, Prepare(backend, host.w_gate, storage));
    SWARM_ASSIGN_OR_RETURN(w.w_up, Prepare(backend, host.w_up, storage));
    SWARM_ASSIGN_OR_RETURN(w.w_down, Prepare(backend, host.w_down, storage));
    SWARM_RETURN_IF_ERROR(PrepareExperts(backend, host, w, storage));
    stack->blocks_.push_back(w);
  }
  return stack;
}

std::string BlockStack::Describe() const { return absl::StrCat("backend ", devices()); }

absl::StatusOr<std::unique_ptr<SequenceCache>> BlockStack::NewCache(int64_t capacity,
                                                                    kernels::KvTypes types) {
  SWARM_RETURN_IF_ERROR(kernels::ValidateKvTypes(types, config_.head_dim));
  std::vector<std::unique_ptr<KvCache>> parts(1);
  SWARM_ASSIGN_OR_RETURN(parts[0],
                         KvCache::Create(backend_, n_blocks(), config_.kv_dim(), capacity, types));
  return std::make_unique<SequenceCache>(this, std::move(parts));
}

absl::Status BlockStack::Forward(std::span<const SequenceStep> steps, int64_t first, int64_t last,
                                 const float* hidden_in, float* hidden_out) {
  SWARM_ASSIGN_OR_RETURN(const int64_t total, CheckBatch(steps, first, last));
  SWARM_RETURN_IF_ERROR(activations_.Reserve(backend_, config_, total));

  positions_.clear();
  for (const SequenceStep& step : steps) {
    for (int64_t t = 0; t < step.n_tokens; ++t) {
      positions_.push_back(static_cast<int32_t>(step.cache->length() + t));
    }
  }
  const size_t hidden_bytes = static_cast<size_t>(config_.n_embd * total) * sizeof(float);
  SWARM_RETURN_IF_ERROR(backend_.CopyToBackend(activations_.x, hidden_in, hidden_bytes));
  // CheckBatch found every cache to be this stack's: one part, for all of its blocks.
  auto cache_of = [](const SequenceStep& step) -> KvCache& { return step.cache->part(0); };
  for (int64_t l = first - first_; l < last - first_; ++l) {
    SWARM_RETURN_IF_ERROR(RunBlock(backend_, config_, blocks_[l], l, steps, cache_of,
                                   positions_.data(), total, activations_));
  }
  SWARM_RETURN_IF_ERROR(backend_.CopyToHost(hidden_out, activations_.x, hidden_bytes));
  SWARM_RETURN_IF_ERROR(backend_.Synchronize());
  for (const SequenceStep& step : steps) step.cache->Advance(step.n_tokens);
  return absl::OkStatus();
}

}  // namespace swarm::shard
