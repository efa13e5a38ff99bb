// A peer's KV-cache budget, counted in bytes. `--cache-tokens N` names memory: what N positions
// take in an f32 cache over the peer's blocks. Sessions' caches are as large as their element
// types make them, so the same budget holds twice the positions in f16 and about 3.8 times in
// q8_0. The session table admits sessions by positions of this peer's cache (one type per peer:
// a position is a fixed number of bytes), which is what the budget's `tokens` says. Pure
// functions, any thread.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/kv_types.h"

namespace swarm::peer {

struct CacheBudget {
  uint64_t bytes = 0;          // memory the sessions' caches may take together
  size_t bytes_per_token = 0;  // one position over the peer's blocks, of its cache types
  int64_t tokens = 0;          // positions the budget holds: bytes / bytes_per_token
};

// The budget of `f32_tokens` positions' worth of f32 cache, for n_blocks blocks of kv_dim keys and
// values per position held as `types`.
CacheBudget CacheBudgetFor(int64_t f32_tokens, int64_t n_blocks, int64_t kv_dim,
                           kernels::KvTypes types);

}  // namespace swarm::peer
