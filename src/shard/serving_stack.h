// What a peer serves, whatever runs it: a block range [first, last) that runs batched steps of
// sequences, each with its own KV state. BlockStack (one backend) and MultiGpuStack (the range
// spread over several) implement it; the peer server, its session table, the throughput probe and
// the local pipeline see only this. A cache belongs to the stack that made it. One thread calls
// Forward() at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "model/model_config.h"
#include "shard/sequence_cache.h"

namespace swarm::shard {

// One sequence's part of a batch: n_tokens consecutive positions starting at the cache's length.
struct SequenceStep {
  SequenceCache* cache = nullptr;
  int64_t n_tokens = 0;
};

class ServingStack {
 public:
  virtual ~ServingStack() = default;

  virtual int64_t first_block() const = 0;
  virtual int64_t last_block() const = 0;
  int64_t n_blocks() const { return last_block() - first_block(); }
  virtual const model::ModelConfig& config() const = 0;
  // The backends' names in block order, comma-separated: "cpu-avx2", "cuda:0,cuda:1".
  virtual std::string devices() const = 0;
  // Which device runs which blocks, for the placement log: "backend cpu-avx2", "backend cuda:0
  // (decode steps replayed as CUDA graphs)", or "devices cuda:0,cuda:1 ([0, 3) on cuda:0, [3, 5)
  // on cuda:1, activations by NCCL)".
  virtual std::string Describe() const = 0;

  // A cache for up to `capacity` positions of one sequence, for this stack only.
  virtual absl::StatusOr<std::unique_ptr<SequenceCache>> NewCache(int64_t capacity) = 0;
  // Blocks [first, last) of this stack (a route may use part of a peer's span) for every step:
  // hidden_in, hidden_out: [n_embd, total tokens] host memory, the steps' tokens concatenated in
  // order (may alias). Each step's tokens take the positions [cache->length(), + n_tokens); on
  // success every cache advances by its n_tokens, on failure none does. Caches come from this
  // stack's NewCache() (another stack's is InvalidArgument).
  virtual absl::Status Forward(std::span<const SequenceStep> steps, int64_t first, int64_t last,
                               const float* hidden_in, float* hidden_out) = 0;
  // The same over all of this stack's blocks.
  absl::Status Forward(std::span<const SequenceStep> steps, const float* hidden_in,
                       float* hidden_out) {
    return Forward(steps, first_block(), last_block(), hidden_in, hidden_out);
  }

  // The serving loop is about to wait for the network / work is about to come: see
  // kernels::Backend::Park() and Unpark().
  virtual void Park() = 0;
  virtual void Unpark() = 0;

 protected:
  // What every Forward() checks first: the blocks lie in this stack, each step has tokens and a
  // cache of this stack with room for them. Returns the batch's total tokens.
  absl::StatusOr<int64_t> CheckBatch(std::span<const SequenceStep> steps, int64_t first,
                                     int64_t last) const;
};

}  // namespace swarm::shard
