#include "router/swarm_hop_provider.h"

#include <thread>

#include "absl/strings/str_cat.h"

namespace swarm::router {

void SwarmHopProvider::ReportFailure(const ChainHop& hop) {
  auto id = PeerId::FromHex(hop.peer_id);
  if (id.ok()) bans_.ReportFailure(*id);
}

void SwarmHopProvider::ReportSuccess(const ChainHop& hop) {
  auto id = PeerId::FromHex(hop.peer_id);
  if (id.ok()) bans_.ReportSuccess(*id);
}

absl::StatusOr<std::vector<ChainHop>> SwarmHopProvider::Route(int64_t first, int64_t last) {
  const absl::Time deadline = absl::Now() + options_.route_wait;
  absl::Status last_error = absl::UnavailableError("no registry snapshot read");
  while (true) {
    auto snapshot = registry_.Snapshot(options_.model_id);
    if (snapshot.ok()) {
      snapshot_ = std::move(*snapshot);
      RouteOptions route_options;
      route_options.start_block = first;
      route_options.end_block = last;
      route_options.banned = bans_.Banned();
      route_options.load = load_;
      route_options.cache_tokens_needed = options_.cache_tokens_needed;
      auto route = BuildRoute(snapshot_, options_.n_blocks, route_options);
      if (route.ok()) {
        std::vector<ChainHop> hops;
        for (const RouteHop& hop : route->hops) {
          hops.push_back({hop.address, static_cast<uint32_t>(hop.blocks.first),
                          static_cast<uint32_t>(hop.blocks.last), hop.peer_id.ToHex()});
          load_[hop.peer_id] += 1;
        }
        return hops;
      }
      last_error = route.status();
    } else {
      last_error = snapshot.status();
    }
    // The DHT has no change notification that covers every way a route can appear (a peer
    // joining, a ban ending), so poll at a modest rate until the deadline.
    if (absl::Now() + options_.poll_interval > deadline) break;
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(options_.poll_interval));
  }
  return absl::UnavailableError(
      absl::StrCat("no route over blocks ", first, "..", last, " after waiting ",
                   absl::FormatDuration(options_.route_wait), ": ", last_error.message()));
}

}  // namespace swarm::router
