// All blocks of a model for one sequence, run in-process: the reference a swarm must match.
// Owns the sequence's KV cache; borrows the stack. One thread at a time.
#pragma once

#include <memory>

#include "kernels/kv_types.h"
#include "model/generator.h"
#include "shard/serving_stack.h"

namespace swarm::shard {

class BlockStack;

class LocalPipeline : public model::BlockPipeline {
 public:
  // The cache holds the stack's KV types.
  static absl::StatusOr<std::unique_ptr<LocalPipeline>> Create(ServingStack& stack,
                                                               int64_t max_length);
  // The cache holds `types` (`swarm bench` compares them on one stack).
  static absl::StatusOr<std::unique_ptr<LocalPipeline>> Create(BlockStack& stack,
                                                               int64_t max_length,
                                                               kernels::KvTypes types);
  absl::Status Forward(int64_t n_tokens, const float* hidden_in, float* hidden_out) override;
  // Truncates the cache (and drops uncollected steps): nothing is recomputed.
  absl::Status Rollback(int64_t position) override;
  SequenceCache& cache() { return *cache_; }

 private:
  LocalPipeline(ServingStack& stack, std::unique_ptr<SequenceCache> cache)
      : stack_(stack), cache_(std::move(cache)) {}
  ServingStack& stack_;
  std::unique_ptr<SequenceCache> cache_;
};

}  // namespace swarm::shard
