// The quotas a public peer holds its clients to, so that no one of them can take what the others
// need: per connection (the ROUTER's routing id) and per identity (the remote address, or the
// CURVE public key when the link has one), on open sessions, KV-cache positions reserved and steps
// queued but not yet computed (counted by their decoded size). Admission hands out tickets that
// give their share back when they are destroyed, so every way a session or a queued step ends
// (close, expiry, shutdown, computed, dropped) releases it. Owned by the server loop; one thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace swarm::peer {

// Who asks: the connection, and the identity behind it (several connections may share one).
struct Requester {
  std::string connection;  // opaque ROUTER routing id
  std::string identity;    // "key:<z85>", "ip:<address>", "local:<connection>" (see IdentityOf)
  friend bool operator==(const Requester&, const Requester&) = default;
};

// The identity of a message's sender: its CURVE public key when ZAP authenticated one (keys are
// what a private swarm hands out), else its IP address as the socket reported it. A loopback
// address is this machine's own (the operator's gateway, a local demo, tests): each of its
// connections counts as an identity of its own, held to the per-connection quotas only.
std::string IdentityOf(std::string_view curve_user_id, std::string_view peer_address,
                       std::string_view connection);

// ZMQ_MAXMSGSIZE for a peer's ROUTER, from the model's shapes: no valid frame is larger than a
// step's input of max_tokens positions of n_embd f32 values (zstd may add a little) or a header,
// so libzmq drops the connection of whoever sends more before buffering it.
int64_t MaxMessageBytes(int64_t n_embd, int64_t max_tokens);

struct QuotaLimits {
  // Sessions open at once.
  int64_t sessions_per_connection = 8;
  int64_t sessions_per_identity = 32;
  // Shares of the KV-cache budget (positions reserved by open sessions). A share never holds less
  // than one session of the longest length, so a small peer still serves someone.
  double cache_share_per_connection = 0.125;
  double cache_share_per_identity = 0.25;
  // Steps received but not yet computed: their decoded inputs wait in memory. A step is always
  // taken when nothing else of that connection (identity) waits, so one step of any permitted
  // size still runs; beyond that these caps hold.
  int64_t queued_bytes_per_connection = int64_t{4} << 20;
  int64_t queued_bytes_per_identity = int64_t{16} << 20;
  int64_t queued_steps_per_connection = 64;
  int64_t queued_steps_per_identity = 256;
};

// What one connection or identity holds now.
struct QuotaUsage {
  int64_t sessions = 0;
  int64_t cache_tokens = 0;
  int64_t queued_steps = 0;
  int64_t queued_bytes = 0;
  bool empty() const {
    return sessions == 0 && cache_tokens == 0 && queued_steps == 0 && queued_bytes == 0;
  }
};

class Admission {
 public:
  // cache_tokens: the peer's KV budget in positions; max_session_length: the longest session.
  Admission(const QuotaLimits& limits, int64_t cache_tokens, int64_t max_session_length);
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  // A share held on behalf of a requester until destroyed. Move-only; the Admission that issued
  // it must outlive it.
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& other) noexcept { *this = std::move(other); }
    Ticket& operator=(Ticket&& other) noexcept;
    ~Ticket() { Release(); }

    const Requester& holder() const { return holder_; }
    // The share moves to another requester (a session re-opened from a new connection), without
    // checking its quota: it is the same reservation.
    void Transfer(Requester to);

   private:
    friend class Admission;
    void Release();
    Admission* admission_ = nullptr;
    Requester holder_;
    QuotaUsage charge_;
  };

  // ResourceExhausted, naming the quota, when the requester may not open one more session of
  // `tokens` positions.
  absl::StatusOr<Ticket> AdmitSession(const Requester& who, int64_t tokens);
  // ResourceExhausted, naming the quota, when `bytes` more (decoded) may not wait in the queue on
  // the requester's account.
  absl::StatusOr<Ticket> AdmitStep(const Requester& who, int64_t bytes);

  QuotaUsage connection(const std::string& connection) const;
  QuotaUsage identity(const std::string& identity) const;
  // The most positions one connection / identity may reserve.
  int64_t connection_cache_tokens() const { return connection_tokens_; }
  int64_t identity_cache_tokens() const { return identity_tokens_; }

 private:
  Ticket Charge(const Requester& who, const QuotaUsage& charge);
  void Add(const Requester& who, const QuotaUsage& charge, int sign);

  QuotaLimits limits_;
  int64_t connection_tokens_;
  int64_t identity_tokens_;
  // Entries that fall to zero are erased: a churn of connections leaves nothing behind.
  absl::flat_hash_map<std::string, QuotaUsage> connections_;
  absl::flat_hash_map<std::string, QuotaUsage> identities_;
};

}  // namespace swarm::peer
