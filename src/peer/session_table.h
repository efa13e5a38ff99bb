// The inference sessions a peer holds, one record each: the KV cache over the peer's blocks, the
// route the client gave when opening it (blocks, hop, where outputs go), the client connection
// that owns it and its timestamps, keyed by the wire's SessionId. The total of all sessions'
// max_length is bounded by a KV-cache budget, so a peer never promises more memory than it has;
// a request beyond it is refused with RESOURCE_EXHAUSTED and the router tries elsewhere. Every
// way a session ends (close, idle expiry, shutdown) goes through the table, so nothing about a
// dead session outlives it (its quota ticket included). Owned by the server loop; one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "peer/admission.h"
#include "shard/serving_stack.h"
#include "transport/protocol.h"

namespace swarm::peer {

// Where a session's steps run and where their outputs go, as the client asked when opening it.
struct SessionRoute {
  uint32_t first_block = 0;  // the part of the peer's blocks this session uses: [first, last)
  uint32_t last_block = 0;
  uint32_t hop_index = 0;         // this peer's place in the client's chain
  bool return_outputs = true;     // a copy of every output goes back to the client
  transport::Codec output_codec;  // of that copy
  friend bool operator==(const SessionRoute&, const SessionRoute&) = default;
};

struct Session {
  transport::SessionId id;
  std::string owner;  // opaque id of the client connection that opened it (answers go there)
  // The client's secrets for this session: who may do what (peer/session_access.h).
  transport::SessionCapabilities capabilities;
  uint64_t last_pushed_step = 0;  // the latest step an upstream hop delivered (each only once)
  SessionRoute route;
  std::unique_ptr<shard::SequenceCache> cache;
  std::chrono::steady_clock::time_point opened;
  std::chrono::steady_clock::time_point last_used;
  bool started = false;  // a step was taken; until then the session expires sooner
  // The owner's share of the quotas (a session, its positions), given back when the session ends.
  Admission::Ticket quota;
};

struct SessionLimits {
  int64_t cache_tokens = 1 << 16;  // budget: sum of max_length over open sessions
  int64_t max_session_length = 4096;
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(5)};
  // A session that never got a step holds its reservation for no one: it ends sooner.
  std::chrono::milliseconds unstarted_timeout{std::chrono::seconds(30)};
  int64_t max_sessions = 1024;
  QuotaLimits quotas;  // per connection and identity (the server loop's Admission applies them)
};

class SessionTable {
 public:
  SessionTable(shard::ServingStack& stack, const SessionLimits& limits)
      : stack_(stack), limits_(limits) {}

  // AlreadyExists for an id in use; InvalidArgument for a bad length; ResourceExhausted when the
  // budget cannot hold max_length more tokens (or the table is full).
  absl::StatusOr<Session*> Open(const transport::SessionId& id, std::string owner,
                                const SessionRoute& route, int64_t max_length,
                                std::chrono::steady_clock::time_point now);
  // Null when there is no such session (never opened, closed or expired). The pointer stays
  // valid until the session ends.
  Session* Find(const transport::SessionId& id);
  bool Close(const transport::SessionId& id);
  // Ends sessions idle for longer than the limit (unstarted_timeout for one that never got a
  // step); returns them (their owners may be told).
  std::vector<std::unique_ptr<Session>> ExpireIdle(std::chrono::steady_clock::time_point now);
  // Ends every session (the peer stops); returns them so their owners can be told.
  std::vector<std::unique_ptr<Session>> CloseAll();

  int64_t free_cache_tokens() const { return limits_.cache_tokens - reserved_tokens_; }
  size_t size() const { return sessions_.size(); }
  const SessionLimits& limits() const { return limits_; }

 private:
  shard::ServingStack& stack_;
  SessionLimits limits_;
  int64_t reserved_tokens_ = 0;
  absl::flat_hash_map<transport::SessionId, std::unique_ptr<Session>> sessions_;
};

}  // namespace swarm::peer
