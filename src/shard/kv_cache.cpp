#include "shard/kv_cache.h"

#include "absl/strings/str_cat.h"
#include "base/checked_math.h"
#include "base/status_macros.h"

namespace swarm::shard {

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::Create(kernels::Backend& backend,
                                                         int64_t n_layers, int64_t kv_dim,
                                                         int64_t capacity, kernels::KvTypes types) {
  if (n_layers <= 0 || kv_dim <= 0 || capacity <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("bad KV cache shape: ", n_layers, " layers, ",
                                                   kv_dim, " dims, ", capacity, " positions"));
  }
  auto bytes = CheckedMul(BytesPerToken(n_layers, kv_dim, types), static_cast<uint64_t>(capacity));
  if (!bytes) return absl::ResourceExhaustedError("KV cache size overflows");
  SWARM_ASSIGN_OR_RETURN(auto buffer, backend.Allocate(*bytes));
  return std::unique_ptr<KvCache>(new KvCache(std::move(buffer), kv_dim, capacity, types));
}

absl::Status KvCache::Truncate(int64_t length) {
  if (length < 0 || length > length_) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot truncate a cache of ", length_, " positions to ", length));
  }
  length_ = length;
  return absl::OkStatus();
}

}  // namespace swarm::shard
