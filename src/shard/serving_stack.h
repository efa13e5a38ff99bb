// What a peer serves, whatever runs it: a block range [first, last) that runs batched steps of
// sequences, each with its own KV state. BlockStack (one backend) and MultiGpuStack (the range
// spread over several) implement it; the peer server, its session table and the throughput probe
// see only this. A cache belongs to the stack that made it. One thread calls Forward() at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "model/model_config.h"

namespace swarm::shard {

// One sequence's KV state over a stack's blocks, on one backend or spread over several.
class SequenceCache {
 public:
  virtual ~SequenceCache() = default;
  virtual int64_t capacity() const = 0;
  // Positions [0, length) hold valid entries.
  virtual int64_t length() const = 0;
  // Forgets positions >= length (to rewind a step that must be redone).
  virtual absl::Status Truncate(int64_t length) = 0;
};

// One sequence's part of a batch: n_tokens consecutive positions starting at the cache's length.
struct ServingStep {
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

  virtual absl::StatusOr<std::unique_ptr<SequenceCache>> NewSequenceCache(int64_t capacity) = 0;
  // Blocks [first, last) of this stack (a route may use part of a peer's span) for every step:
  // hidden_in, hidden_out: [n_embd, total tokens] host memory, the steps' tokens concatenated in
  // order (may alias). On success every cache advances by its n_tokens, on failure none does.
  // Caches come from this stack's NewSequenceCache() (one of another kind is InvalidArgument).
  virtual absl::Status ForwardSteps(std::span<const ServingStep> steps, int64_t first, int64_t last,
                                    const float* hidden_in, float* hidden_out) = 0;

  // The serving loop is about to wait for the network / work is about to come: see
  // kernels::Backend::Park() and Unpark().
  virtual void Park() = 0;
  virtual void Unpark() = 0;
};

}  // namespace swarm::shard
