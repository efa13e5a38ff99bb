// What a client has measured of each peer's decode steps: the time a hop's output took to come,
// per block, smoothed. Routing uses it instead of the throughput a peer claims in its record, so
// a peer that claims more than it delivers loses traffic (route_builder.h caps the claims of
// peers not measured yet). Owned by a client process's engine (one per `swarm api`, one per
// `swarm generate`) and shared by its sessions' routers; thread-safe, clock injected for tests.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "registry/peer_record.h"

namespace swarm::router {

struct PeerPerformanceOptions {
  // Weight of the newest step in the running average of a peer's seconds per block (the first
  // 1/smoothing steps are averaged with equal weights).
  double smoothing = 0.1;
  // Steps of more tokens than this are prefills, whose time per block says little about a decode
  // step's: not counted.
  int64_t max_step_tokens = 8;
  // A peer not observed for this long is forgotten (its claim is used again, capped): a peer that
  // was slow once gets another chance, and the store does not grow without bound.
  absl::Duration max_age = absl::Minutes(10);
};

class PeerPerformance {
 public:
  using Clock = std::function<absl::Time()>;

  explicit PeerPerformance(
      PeerPerformanceOptions options = {}, Clock clock = [] { return absl::Now(); });

  // One step of `n_tokens` positions ran through `blocks` of the peer's blocks, and the hop's share
  // of the step's time as the client saw it (its output's arrival after the earlier hops': compute
  // and the links around it) was `seconds`. Nonsense (non-positive or non-finite) is ignored.
  void ObserveStep(const registry::PeerId& peer, int64_t blocks, int64_t n_tokens, double seconds);

  // Decode steps per second through one block (the unit of PeerRecord::decode_tps_per_block), as
  // measured; nullopt for a peer not measured (or forgotten).
  std::optional<double> MeasuredTpsPerBlock(const registry::PeerId& peer) const;
  // Every peer measured: what RouteOptions::measured_tps_per_block wants.
  absl::flat_hash_map<registry::PeerId, double> MeasuredTps() const;
  // Steps observed of a peer (0 when not measured).
  int64_t Steps(const registry::PeerId& peer) const;

 private:
  struct Entry {
    double seconds_per_block = 0;  // smoothed
    int64_t steps = 0;
    absl::Time last;
  };

  const PeerPerformanceOptions options_;
  const Clock clock_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<registry::PeerId, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace swarm::router
