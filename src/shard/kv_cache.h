// The KV cache of one sequence over the blocks one backend runs: per layer, keys and values for up
// to `capacity` positions, in one backend buffer with per-layer views (as llama.cpp's
// llama_kv_cache), each of its element type (f32, f16 or q8_0: kernels/kv_types.h). Owned by a
// SequenceCache; used by one thread at a time (the one running the session's steps).
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "kernels/kv_types.h"

namespace swarm::shard {

class KvCache final {
 public:
  // n_layers local layers, each k and v: [kv_dim, capacity] of types.k and types.v (checked by the
  // caller with kernels::ValidateKvTypes).
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(kernels::Backend& backend,
                                                         int64_t n_layers, int64_t kv_dim,
                                                         int64_t capacity, kernels::KvTypes types);

  // Bytes one position takes over n_layers layers (keys and values).
  static size_t BytesPerToken(int64_t n_layers, int64_t kv_dim, kernels::KvTypes types) {
    return static_cast<size_t>(n_layers) *
           (kernels::KvRowBytes(types.k, kv_dim) + kernels::KvRowBytes(types.v, kv_dim));
  }

  int64_t capacity() const { return capacity_; }
  // Positions [0, length) hold valid entries.
  int64_t length() const { return length_; }
  size_t bytes() const { return buffer_->size(); }
  kernels::KvTypes types() const { return types_; }

  // Keys/values of local layer `layer`: [kv_dim, capacity] of types().k / types().v.
  void* keys(int64_t layer) { return base() + layer * layer_bytes(); }
  void* values(int64_t layer) { return base() + layer * layer_bytes() + k_bytes(); }

  void Advance(int64_t n_tokens) { length_ += n_tokens; }
  // Forgets positions >= length (to rewind a step that must be redone).
  absl::Status Truncate(int64_t length);

 private:
  KvCache(std::unique_ptr<kernels::Buffer> buffer, int64_t kv_dim, int64_t capacity,
          kernels::KvTypes types)
      : buffer_(std::move(buffer)), kv_dim_(kv_dim), capacity_(capacity), types_(types) {}
  uint8_t* base() { return static_cast<uint8_t*>(buffer_->data()); }
  size_t k_bytes() const {
    return kernels::KvRowBytes(types_.k, kv_dim_) * static_cast<size_t>(capacity_);
  }
  size_t layer_bytes() const {
    return k_bytes() + kernels::KvRowBytes(types_.v, kv_dim_) * static_cast<size_t>(capacity_);
  }

  std::unique_ptr<kernels::Buffer> buffer_;
  int64_t kv_dim_;
  int64_t capacity_;
  kernels::KvTypes types_;
  int64_t length_ = 0;
};

}  // namespace swarm::shard
