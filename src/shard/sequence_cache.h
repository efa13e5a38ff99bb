// One sequence's KV state over a serving stack's blocks: one KvCache per backend of the stack that
// made it (one for a BlockStack, one per segment for a MultiGpuStack), every part of the same
// length. Owned by a session; knows its stack, which refuses the caches of others. Used by one
// thread at a time (the one running the stack).
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "shard/kv_cache.h"

namespace swarm::shard {

class ServingStack;

class SequenceCache final {
 public:
  // parts: at least one, every one of the same capacity and length.
  SequenceCache(const ServingStack* stack, std::vector<std::unique_ptr<KvCache>> parts)
      : stack_(stack), parts_(std::move(parts)) {}

  // The stack that made it: the only one that may run it.
  const ServingStack* stack() const { return stack_; }
  int64_t capacity() const { return parts_.front()->capacity(); }
  // Positions [0, length) hold valid entries.
  int64_t length() const { return parts_.front()->length(); }
  // Forgets positions >= length (to rewind a step that must be redone).
  absl::Status Truncate(int64_t length);

  // For the stack that made it: part i holds the KV of its backend i's blocks.
  size_t n_parts() const { return parts_.size(); }
  KvCache& part(size_t i) { return *parts_[i]; }
  // Every part advances together (a step over a sub-range advances the parts it did not use too).
  void Advance(int64_t n_tokens) {
    for (auto& part : parts_) part->Advance(n_tokens);
  }

 private:
  const ServingStack* stack_;
  std::vector<std::unique_ptr<KvCache>> parts_;
};

}  // namespace swarm::shard
