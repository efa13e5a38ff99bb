// Measures how fast a block stack runs on this machine, for the peer's announcement and the
// router's cost model: decode tokens/s and prompt tokens/s through ONE block (the stack's time
// divided by its block count). Runs real forwards on a scratch cache; takes a fraction of a second
// for small models. Results can be cached per model, backend and settings (LoadCached/StoreCached).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "shard/serving_stack.h"

namespace swarm::shard {

struct Throughput {
  double decode_tps_per_block = 0;
  double prompt_tps_per_block = 0;
};

absl::StatusOr<Throughput> MeasureThroughput(ServingStack& stack, int decode_steps = 8,
                                             int prompt_tokens = 32);

// A small text file per key under `directory` (created if missing); errors are not fatal to a peer,
// so LoadCached returns NotFound for anything unreadable.
absl::StatusOr<Throughput> LoadCachedThroughput(const std::string& directory,
                                                const std::string& key);
absl::Status StoreCachedThroughput(const std::string& directory, const std::string& key,
                                   const Throughput& throughput);

}  // namespace swarm::shard
