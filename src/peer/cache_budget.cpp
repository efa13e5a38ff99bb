#include "peer/cache_budget.h"

#include "shard/kv_cache.h"

namespace swarm::peer {

CacheBudget CacheBudgetFor(int64_t f32_tokens, int64_t n_blocks, int64_t kv_dim,
                           kernels::KvTypes types) {
  CacheBudget budget;
  const size_t f32_per_token = shard::KvCache::BytesPerToken(
      n_blocks, kv_dim, {kernels::GgmlType::kF32, kernels::GgmlType::kF32});
  budget.bytes = static_cast<uint64_t>(f32_tokens) * f32_per_token;
  budget.bytes_per_token = shard::KvCache::BytesPerToken(n_blocks, kv_dim, types);
  budget.tokens = budget.bytes_per_token > 0
                      ? static_cast<int64_t>(budget.bytes / budget.bytes_per_token)
                      : f32_tokens;
  return budget;
}

}  // namespace swarm::peer
