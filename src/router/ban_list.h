// Peers that failed recently, banned with exponential backoff: the first failure bans for
// `initial`, each further failure doubles the ban up to `max`, and a success (or `max` without a
// failure after the ban ended) forgets the peer.
// Owned by a client's inference session (or a router); thread-safe, and the clock is injected so
// tests advance time without sleeping.
#pragma once

#include <functional>

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

  bool IsBanned(const registry::PeerId& peer) const;
  // When the current ban ends (absl::InfinitePast() if not banned).
  absl::Time BannedUntil(const registry::PeerId& peer) const;
  // Every peer banned right now: what RouteOptions::banned wants.
  absl::flat_hash_set<registry::PeerId> Banned() const;

 private:
  struct Entry {
    absl::Duration next_ban;  // length of the ban the next failure gets
    absl::Time until;
  };

  const BanOptions options_;
  const Clock clock_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<registry::PeerId, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace swarm::router
