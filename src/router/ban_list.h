// Peers that failed recently, banned with exponential backoff: the first failure bans for
// `initial`, each further failure doubles the ban up to `max`, and a success (or `max` without a
// failure after the ban ended) forgets the peer. Peer ids are free to make, so a failure bans the
// announced address (host:port) too: a peer that comes back under a new id at the same address
// stays banned. A peer caught lying (wrong outputs) is banned for `lie`, and so is its address; a
// success does not lift that.
// Owned by a client's inference session (or a router); thread-safe, and the clock is injected so
// tests advance time without sleeping.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "registry/peer_record.h"

namespace swarm::router {

struct BanOptions {
  absl::Duration initial = absl::Seconds(1);
  absl::Duration max = absl::Minutes(5);
  double multiplier = 2.0;
  absl::Duration lie = absl::Hours(24);
  // The shortest ban of a relay's endpoint for a relayed peer that failed (ReportAddressFailure):
  // such an endpoint dies with its relay, and the peer announces another within seconds; retrying
  // the dead one before would cost an open timeout.
  absl::Duration relay_endpoint = absl::Seconds(10);
};

// The key an address is banned under: "host:port" of a tcp:// address with a numeric host in its
// canonical form (so "tcp://127.000.0.1:5" and "tcp://127.0.0.1:5" are one address), lowercased;
// any other address as it is.
std::string AddressKey(std::string_view address);

class BanList {
 public:
  using Clock = std::function<absl::Time()>;

  explicit BanList(
      BanOptions options = {}, Clock clock = [] { return absl::Now(); });

  // Bans `peer` from now for its current backoff, then grows the backoff. With an address, the
  // address is banned the same way (its own backoff). Returns the end of the peer's ban.
  absl::Time ReportFailure(const registry::PeerId& peer, std::string_view address = {});
  // Bans `address` alone, for its backoff but at least options.relay_endpoint, and not the peer
  // answering there: for an address that is not the peer's own, a relay's endpoint for it, which
  // dies with the relay while the peer moves to another relay and announces a new endpoint.
  // Returns the end of the address's ban.
  absl::Time ReportAddressFailure(std::string_view address);
  // The peer answered correctly: lift any ban and reset its backoff (and its address's), unless
  // it is a lie ban.
  void ReportSuccess(const registry::PeerId& peer, std::string_view address = {});
  // The peer returned wrong outputs: it (when its id is known) and its address are banned for
  // options.lie; a success does not lift it.
  void ReportLie(const registry::PeerId* peer, std::string_view address);

  bool IsBanned(const registry::PeerId& peer) const;
  bool IsAddressBanned(std::string_view address) const;
  // When the current ban ends (absl::InfinitePast() if not banned).
  absl::Time BannedUntil(const registry::PeerId& peer) const;
  // Every peer banned right now: what RouteOptions::banned wants.
  absl::flat_hash_set<registry::PeerId> Banned() const;
  // Every address banned right now, as AddressKey(): what RouteOptions::banned_addresses wants.
  absl::flat_hash_set<std::string> BannedAddresses() const;

 private:
  struct Entry {
    absl::Duration next_ban;  // length of the ban the next failure gets
    absl::Time until;
    bool liar = false;  // a lie ban: not lifted by a success
  };
  template <typename Key>
  absl::Time Ban(absl::flat_hash_map<Key, Entry>& entries, const Key& key, absl::Time now,
                 absl::Duration at_least = absl::ZeroDuration()) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const BanOptions options_;
  const Clock clock_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<registry::PeerId, Entry> entries_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Entry> addresses_ ABSL_GUARDED_BY(mu_);  // by AddressKey()
};

}  // namespace swarm::router
