// The KV cache of one sequence over the blocks one backend runs: per layer, keys and values for up
// to `capacity` positions, in one backend buffer with per-layer views (as llama.cpp's
// llama_kv_cache). Owned by a SequenceCache; used by one thread at a time (the one running the
// session's steps).
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "kernels/backend.h"

namespace swarm::shard {

class KvCache final {
 public:
  // n_layers local layers, each k and v: [kv_dim, capacity] f32.
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(kernels::Backend& backend,
                                                         int64_t n_layers, int64_t kv_dim,
                                                         int64_t capacity);

  static size_t BytesPerToken(int64_t n_layers, int64_t kv_dim) {
    return static_cast<size_t>(n_layers) * 2 * static_cast<size_t>(kv_dim) * sizeof(float);
  }

  int64_t capacity() const { return capacity_; }
  // Positions [0, length) hold valid entries.
  int64_t length() const { return length_; }
  size_t bytes() const { return buffer_->size(); }

  // Keys/values of local layer `layer`: [kv_dim, capacity].
  float* keys(int64_t layer) { return base() + (2 * layer) * layer_stride(); }
  float* values(int64_t layer) { return base() + (2 * layer + 1) * layer_stride(); }

  void Advance(int64_t n_tokens) { length_ += n_tokens; }
  // Forgets positions >= length (to rewind a step that must be redone).
  absl::Status Truncate(int64_t length);

 private:
  KvCache(std::unique_ptr<kernels::Buffer> buffer, int64_t kv_dim, int64_t capacity)
      : buffer_(std::move(buffer)), kv_dim_(kv_dim), capacity_(capacity) {}
  float* base() { return static_cast<float*>(buffer_->data()); }
  int64_t layer_stride() const { return kv_dim_ * capacity_; }

  std::unique_ptr<kernels::Buffer> buffer_;
  int64_t kv_dim_;
  int64_t capacity_;
  int64_t length_ = 0;
};

}  // namespace swarm::shard
