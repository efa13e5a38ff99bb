// The inference sessions a peer holds: each a KV cache over the peer's blocks, opened by a client
// for up to max_length tokens. The total of all sessions' max_length is bounded by a KV-cache
// budget, so a peer never promises more memory than it has; a request beyond it is refused with
// RESOURCE_EXHAUSTED and the router tries elsewhere. Idle sessions expire. Owned by the server
// loop; one thread uses it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "shard/serving_stack.h"

namespace swarm::peer {

// 128 random bits chosen by the client.
struct SessionKey {
  uint64_t hi = 0;
  uint64_t lo = 0;
  friend bool operator==(const SessionKey&, const SessionKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const SessionKey& k) {
    return H::combine(std::move(h), k.hi, k.lo);
  }
};

struct Session {
  SessionKey key;
  std::string owner;  // opaque id of the client connection that opened it
  std::unique_ptr<shard::SequenceCache> cache;
  std::chrono::steady_clock::time_point last_used;
};

struct SessionLimits {
  int64_t cache_tokens = 1 << 16;  // budget: sum of max_length over open sessions
  int64_t max_session_length = 4096;
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(5)};
  int64_t max_sessions = 1024;
};

class SessionTable {
 public:
  SessionTable(shard::ServingStack& stack, const SessionLimits& limits)
      : stack_(stack), limits_(limits) {}

  // AlreadyExists for a key in use; InvalidArgument for a bad length; ResourceExhausted when the
  // budget cannot hold max_length more tokens.
  absl::StatusOr<Session*> Open(const SessionKey& key, std::string owner, int64_t max_length,
                                std::chrono::steady_clock::time_point now);
  // Null when there is no such session (never opened, closed or expired).
  Session* Find(const SessionKey& key);
  bool Close(const SessionKey& key);
  // Closes sessions idle for longer than the limit; returns their keys.
  std::vector<SessionKey> ExpireIdle(std::chrono::steady_clock::time_point now);

  int64_t free_cache_tokens() const { return limits_.cache_tokens - reserved_tokens_; }
  size_t size() const { return sessions_.size(); }
  const SessionLimits& limits() const { return limits_; }

 private:
  shard::ServingStack& stack_;
  SessionLimits limits_;
  int64_t reserved_tokens_ = 0;
  absl::flat_hash_map<SessionKey, std::unique_ptr<Session>> sessions_;
};

}  // namespace swarm::peer
