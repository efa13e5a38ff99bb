// All blocks of a model for one sequence, run in-process: the reference a swarm must match.
// Owns the sequence's KV cache; borrows the BlockStack. One thread at a time.
#pragma once

#include <memory>

#include "model/generator.h"
#include "shard/block_stack.h"

namespace swarm::shard {

class LocalPipeline : public model::BlockPipeline {
 public:
  // The cache holds the stack's KV types, or `types`.
  static absl::StatusOr<std::unique_ptr<LocalPipeline>> Create(BlockStack& stack,
                                                               int64_t max_length) {
    return Create(stack, max_length, stack.kv_types());
  }
  static absl::StatusOr<std::unique_ptr<LocalPipeline>> Create(BlockStack& stack,
                                                               int64_t max_length,
                                                               kernels::KvTypes types);
  absl::Status Forward(int64_t n_tokens, const float* hidden_in, float* hidden_out) override;
  KvCache& cache() { return *cache_; }

 private:
  LocalPipeline(BlockStack& stack, std::unique_ptr<KvCache> cache)
      : stack_(stack), cache_(std::move(cache)) {}
  BlockStack& stack_;
  std::unique_ptr<KvCache> cache_;
};

}  // namespace swarm::shard
