// Route building: the cheapest chain of peers through blocks [start, end) of a model, as a
// shortest path over block boundaries. A pure function of a registry snapshot and the client's
// own measurements; no I/O, no state, callable from any thread.
//
// Cost of a chain, in expected seconds per decode step:
//   sum over hops of  latency to reach the hop's peer        (client RTT/2 for the first hop,
//                                                             the previous peer's measured RTT/2
//                                                             if known, else the client's RTT/2)
//                   + blocks / decode_tps_per_block × (1 + load_weight × sessions on that peer)
//                     (the throughput the client measured of that peer when it has, else the
//                     peer's claim, capped: see RouteOptions::claim_cap_factor)
//                   + cache penalty                           (free KV cache below what the session
//                                                             needs, or nearly full)
//   + latency from the last peer back to the client.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "registry/peer_record.h"

namespace swarm::router {

struct RouteOptions {
  // Route only blocks [start_block, end_block) (re-routing a failed span); end_block < 0 means
  // up to n_blocks.
  int64_t start_block = 0;
  int64_t end_block = -1;
  // When re-routing a span inside a chain: the peer that feeds start_block and the one that
  // receives end_block's output (unset: the client itself).
  std::optional<registry::PeerId> upstream_peer;
  std::optional<registry::PeerId> downstream_peer;

  // The client's measured round-trip times; default_rtt_ms for peers it has not measured.
  absl::flat_hash_map<registry::PeerId, double> client_rtt_ms;
  double default_rtt_ms = 50;

  // Sessions this client has placed on each peer since the snapshot was taken (added to the
  // peer's announced active_sessions). Each session makes the peer's steps load_weight× slower
  // in the estimate, which spreads concurrent sessions over replicas.
  absl::flat_hash_map<registry::PeerId, double> load;
  double load_weight = 1.0;

  absl::flat_hash_set<registry::PeerId> banned;
  // Addresses banned whatever id announces them, as router::AddressKey() gives them.
  absl::flat_hash_set<std::string> banned_addresses;

  // Decode throughput per block this client measured (router::PeerPerformance): used instead of
  // the peer's claim.
  absl::flat_hash_map<registry::PeerId, double> measured_tps_per_block;
  // A claim is only a claim: a peer not measured counts as at most claim_cap_factor times the
  // fastest measured peer among those serving any of the same blocks or, where none is measured,
  // the median claim of the others serving them. So a record claiming 1e12 tokens/s attracts one
  // session, is measured, and from then on counts for what it delivers. 0: claims are believed.
  double claim_cap_factor = 4.0;

  // KV cache the session needs on every peer it uses (prompt + generated tokens).
  int64_t cache_tokens_needed = 0;
  // A peer whose announced free cache is below the need would likely refuse: used only when
  // nothing else serves those blocks.
  double cache_shortage_penalty_s = 30.0;
  // Above this fill (after the session's need), a penalty rising linearly to
  // nearly_full_penalty_s at 100%.
  double nearly_full_fraction = 0.9;
  double nearly_full_penalty_s = 1.0;

  // A relayed peer (registry::PeerRecord::relayed) is one hop further than its address suggests:
  // every message to it and back crosses its relay too. Added to its cost per step.
  double relayed_hop_ms = 10;

  // Throughput assumed for peers that have not measured theirs yet.
  double default_tps_per_block = 100;
};

struct RouteHop {
  registry::PeerId peer_id;
  std::string address;
  registry::BlockRange blocks;
  friend bool operator==(const RouteHop&, const RouteHop&) = default;
};

struct Route {
  std::vector<RouteHop> hops;  // consecutive: hops[k].blocks.last == hops[k+1].blocks.first
  double cost_s = 0;           // the estimate above, penalties included
};

// Only online peers that are not banned and whose range fits the model are used; a peer id
// that appears several times counts once (highest seq). Errors: InvalidArgument for bad
// options; Unavailable, naming the uncovered blocks ("no online peer serves blocks 3..4, 7"),
// when no chain exists.
absl::StatusOr<Route> BuildRoute(const registry::RegistrySnapshot& peers, int64_t n_blocks,
                                 const RouteOptions& options = {});

// "0..3@1a2b3c4d 4..7@5e6f7a8b" (inclusive block numbers), for logs.
std::string DescribeRoute(const Route& route);

}  // namespace swarm::router
