#include "shard/serving_stack.h"

#include "absl/strings/str_cat.h"

namespace swarm::shard {

absl::StatusOr<int64_t> ServingStack::CheckBatch(std::span<const SequenceStep> steps, int64_t first,
                                                 int64_t last) const {
  if (first < first_block() || last > last_block() || first >= last) {
    return absl::InvalidArgumentError(absl::StrCat("blocks [", first, ", ", last,
                                                   ") are not inside this peer's blocks [",
                                                   first_block(), ", ", last_block(), ")"));
  }
  int64_t total = 0;
  for (const SequenceStep& step : steps) {
    if (step.cache == nullptr || step.n_tokens <= 0) {
      return absl::InvalidArgumentError("a step needs a cache and at least one token");
    }
    // After this check the stack may treat the cache's parts as its own.
    if (step.cache->stack() != this) {
      return absl::InvalidArgumentError("the cache belongs to another block stack");
    }
    if (step.n_tokens > step.cache->capacity() - step.cache->length()) {
      return absl::OutOfRangeError(absl::StrCat("step of ", step.n_tokens, " tokens at position ",
                                                step.cache->length(), " exceeds the cache of ",
                                                step.cache->capacity(), " positions"));
    }
    total += step.n_tokens;
  }
  if (total == 0) return absl::InvalidArgumentError("empty batch");
  return total;
}

}  // namespace swarm::shard
