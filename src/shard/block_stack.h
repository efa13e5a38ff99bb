// A contiguous range of transformer blocks [first, last) ready to run on a backend: the unit of
// work a peer serves. Forward() runs a batch of sequences (a prompt, or one decode token of many
// sessions) through every block, so each weight is read once per batch. Caches are indexed by
// model layer, so a session may use any fixed sub-range of the blocks. Owns its weights' backend
// copies (if any) and scratch buffers; borrows the host weights (the mapped GGUF must outlive it).
// A ServingStack, so a peer can serve it. One thread calls Forward() at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "shard/block_forward.h"
#include "shard/kv_cache.h"
#include "shard/serving_stack.h"

namespace swarm::shard {

class BlockStack final : public ServingStack {
 public:
  // Sessions' caches hold keys and values of kv_types (InvalidArgument if the model's heads cannot
  // be stored in them: kernels::ValidateKvTypes).
  static absl::StatusOr<std::unique_ptr<BlockStack>> Create(
      kernels::Backend& backend, const model::ModelConfig& config,
      const std::vector<model::BlockWeights>& host_blocks,
      kernels::KvTypes kv_types = kernels::kDefaultKvTypes);

  int64_t first_block() const override { return first_; }
  int64_t last_block() const override { return last_; }
  const model::ModelConfig& config() const override { return config_; }
  std::string devices() const override { return backend_.name(); }
  kernels::Backend& backend() { return backend_; }
  // The blocks' weights as the backend holds them (after PrepareWeight), first block first.
  const std::vector<model::BlockWeights>& resident_weights() const { return blocks_; }

  kernels::KvTypes kv_types() const { return kv_types_; }
  size_t CacheBytesPerToken() const {
    return KvCache::BytesPerToken(n_blocks(), config_.kv_dim(), kv_types_);
  }
  // "backend cpu-avx2"
  std::string Describe() const override;

  // A cache of the stack's KV types.
  absl::StatusOr<std::unique_ptr<SequenceCache>> NewCache(int64_t capacity) override {
    return NewCache(capacity, kv_types_);
  }
  // A cache of other element types than the stack's (`swarm bench` compares them on one stack).
  absl::StatusOr<std::unique_ptr<SequenceCache>> NewCache(int64_t capacity, kernels::KvTypes types);
  using ServingStack::Forward;
  absl::Status Forward(std::span<const SequenceStep> steps, int64_t first, int64_t last,
                       const float* hidden_in, float* hidden_out) override;
  void Park() override { backend_.Park(); }
  void Unpark() override { backend_.Unpark(); }

 private:
  BlockStack(kernels::Backend& backend, const model::ModelConfig& config, kernels::KvTypes kv_types)
      : backend_(backend), config_(config), kv_types_(kv_types) {}

  kernels::Backend& backend_;
  model::ModelConfig config_;
  kernels::KvTypes kv_types_;
  int64_t first_ = 0;
  int64_t last_ = 0;
  std::vector<model::BlockWeights> blocks_;  // backend-resident views
  std::vector<std::unique_ptr<kernels::Buffer>> weight_storage_;

  // Scratch activations in backend memory.
  BlockActivations activations_;
  std::vector<int32_t> positions_;  // [T] host
};

}  // namespace swarm::shard
