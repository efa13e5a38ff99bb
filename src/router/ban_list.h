// Peers that failed recently, banned with exponential backoff: the first failure bans for
// `initial`, each further failure doubles the ban up to `max`, and a success (or `max` without a
// failure after the ban ended) forgets the peer. A peer caught lying (wrong outputs) is banned for
// `lie` and so is its address: ids are free, so a liar could otherwise return under a new one.
// Owned by a client's inference session (or a router); thread-safe, and the clock is injected so
// tests advance time without sleeping.
#pragma once

#include <functional>
#include <string>

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
};

class BanList {
 public:
  using Clock = std::function<absl::Time()>;

  explicit BanList(
      BanOptions options = {}, Clock clock = [] { return absl::Now(); });

  // Bans `peer` from now for its current backoff, then grows the backoff. Returns the end of
  // the ban.
  absl::Time ReportFailure(const registry::PeerId& peer);
  // The peer answered correctly: lift any ban and reset its backoff.
  void ReportSuccess(const registry::PeerId& peer);
  // The peer returned wrong outputs: it (when its id is known) and its address are banned for
  // options.lie; a success does not lift it.
  void ReportLie(const registry::PeerId* peer, const std::string& address);

  bool IsBanned(const registry::PeerId& peer) const;
  // When the current ban ends (absl::InfinitePast() if not banned).
  absl::Time BannedUntil(const registry::PeerId& peer) const;
  // Every peer banned right now: what RouteOptions::banned wants.
  absl::flat_hash_set<registry::PeerId> Banned() const;
  bool IsAddressBanned(const std::string& address) const;

 private:
  struct Entry {
    absl::Duration next_ban;  // length of the ban the next failure gets
    absl::Time until;
    bool liar = false;  // a lie ban: not lifted by a success
  };

  const BanOptions options_;
  const Clock clock_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<registry::PeerId, Entry> entries_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, absl::Time> addresses_ ABSL_GUARDED_BY(mu_);  // ban ends
};

}  // namespace swarm::router
