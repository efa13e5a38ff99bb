#include "shard/sequence_cache.h"

#include "base/status_macros.h"

namespace swarm::shard {

absl::Status SequenceCache::Truncate(int64_t length) {
  // Every part has the same length: checking the first checks them all.
  SWARM_RETURN_IF_ERROR(parts_.front()->Truncate(length));
  for (size_t i = 1; i < parts_.size(); ++i) SWARM_RETURN_IF_ERROR(parts_[i]->Truncate(length));
  return absl::OkStatus();
}

}  // namespace swarm::shard
