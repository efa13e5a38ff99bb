#include "router/peer_performance.h"

#include <algorithm>
#include <cmath>

namespace swarm::router {

PeerPerformance::PeerPerformance(PeerPerformanceOptions options, Clock clock)
    : options_(options), clock_(std::move(clock)) {}

void PeerPerformance::ObserveStep(const registry::PeerId& peer, int64_t blocks, int64_t n_tokens,
                                  double seconds) {
  if (blocks <= 0 || n_tokens <= 0 || n_tokens > options_.max_step_tokens) return;
  if (!std::isfinite(seconds) || seconds < 0) return;
  // A hop whose output came together with an earlier hop's added no time of its own; count it as
  // a microsecond rather than infinitely fast.
  const double per_block = std::max(seconds, 1e-6) / static_cast<double>(blocks);
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = entries_.try_emplace(peer);
  Entry& e = it->second;
  if (inserted || now - e.last > options_.max_age) {
    e = Entry{per_block, 1, now};
    return;
  }
  e.steps += 1;
  // A plain mean over the first 1/smoothing steps (a peer's first steps count equally, so one
  // generation's worth is a fair sample even when its slowness comes in bursts), then a running
  // average that follows changes.
  const double weight = std::max(options_.smoothing, 1.0 / static_cast<double>(e.steps));
  e.seconds_per_block += weight * (per_block - e.seconds_per_block);
  e.last = now;
}

std::optional<double> PeerPerformance::MeasuredTpsPerBlock(const registry::PeerId& peer) const {
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(peer);
  if (it == entries_.end() || now - it->second.last > options_.max_age) return std::nullopt;
  return 1.0 / it->second.seconds_per_block;
}

absl::flat_hash_map<registry::PeerId, double> PeerPerformance::MeasuredTps() const {
  const absl::Time now = clock_();
  absl::flat_hash_map<registry::PeerId, double> out;
  absl::MutexLock lock(&mu_);
  for (const auto& [peer, e] : entries_) {
    if (now - e.last <= options_.max_age) out[peer] = 1.0 / e.seconds_per_block;
  }
  return out;
}

int64_t PeerPerformance::Steps(const registry::PeerId& peer) const {
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(peer);
  if (it == entries_.end() || now - it->second.last > options_.max_age) return 0;
  return it->second.steps;
}

}  // namespace swarm::router
