#include "router/route_builder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <queue>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "router/ban_list.h"

namespace swarm::router {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// Bound on the search graph (peer-blocks); a snapshot is untrusted and could claim anything.
constexpr int64_t kMaxStates = int64_t{1} << 24;

// Peer ids are SHA-1 digests: 8 of their bytes, mixed, hash as well as all 20, for less work.
struct PeerIdHash {
  size_t operator()(const registry::PeerId& id) const {
    uint64_t v;
    std::memcpy(&v, id.bytes().data(), sizeof(v));
    return absl::Hash<uint64_t>{}(v);
  }
};

// Entering peer q at a boundary i, with everything the inner loop needs in one place:
// the state reached is state0 + i (q has run block i), at cost `cost` (latency, cache penalty
// and block i's compute).
struct Entry {
  int32_t q = 0;
  int32_t lo = 0, hi = 0;  // q can be entered at boundaries [lo, hi)
  int32_t state0 = 0;
  double cost = 0;
};

// A peer that may carry part of the route, with its cost terms precomputed.
struct Candidate {
  const registry::PeerRecord* record = nullptr;
  int32_t lo = 0, hi = 0;      // its blocks clipped to [start, end)
  double load_factor = 1;      // 1 + load_weight x sessions
  double block_s = 0;          // compute seconds per block, load included
  double enter_penalty_s = 0;  // cache penalty, paid once per hop
  double est_latency_s = 0;    // one-way latency when no peer-to-peer RTT is known
  int32_t base = 0;            // first Dijkstra state of this peer
  // Peers this one has a measured latency to (either side measured), sorted by q.
  std::vector<Entry> known;

  int32_t span() const { return hi - lo; }
  // The Dijkstra state "has run blocks up to i on this peer" (i in (lo, hi]); a hop that enters
  // the peer at boundary i goes straight to Computing(i + 1).
  int32_t Computing(int32_t i) const { return base + (i - lo - 1); }
  Entry EnterBy(int32_t q, double latency_s) const {
    return Entry{q, lo, hi, base - lo, latency_s + enter_penalty_s + block_s};
  }
};

bool HasMeasurement(const Candidate& from, int32_t to) {
  auto it = std::lower_bound(from.known.begin(), from.known.end(), to,
                             [](const Entry& e, int32_t q) { return e.q < q; });
  return it != from.known.end() && it->q == to;
}

double ClientRttMs(const RouteOptions& o, const registry::PeerId& id) {
  auto it = o.client_rtt_ms.find(id);
  return it != o.client_rtt_ms.end() ? it->second : o.default_rtt_ms;
}

// Measured one-way latency between two records in either direction, preferring `from`'s own.
std::optional<double> RecordLatencyS(const registry::PeerRecord& from,
                                     const registry::PeerRecord& to) {
  if (auto it = from.rtt_ms.find(to.peer_id); it != from.rtt_ms.end()) return it->second / 2000.0;
  if (auto it = to.rtt_ms.find(from.peer_id); it != to.rtt_ms.end()) return it->second / 2000.0;
  return std::nullopt;
}

std::string FormatBlocks(const std::vector<registry::BlockRange>& ranges) {
  std::vector<std::string> parts;
  for (const registry::BlockRange& r : ranges) {
    parts.push_back(r.size() == 1 ? absl::StrCat(r.first)
                                  : absl::StrCat(r.first, "..", r.last - 1));
  }
  return absl::StrJoin(parts, ", ");
}

// Maximal runs of blocks in [start, end) that no range in `covered` touches.
std::vector<registry::BlockRange> Uncovered(const std::vector<registry::BlockRange>& covered,
                                            int32_t start, int32_t end) {
  std::vector<int32_t> delta(end - start + 1, 0);
  for (const registry::BlockRange& r : covered) {
    int32_t a = std::max(r.first, start), b = std::min(r.last, end);
    if (a >= b) continue;
    delta[a - start]++;
    delta[b - start]--;
  }
  std::vector<registry::BlockRange> out;
  int32_t depth = 0;
  for (int32_t i = start; i < end; ++i) {
    depth += delta[i - start];
    if (depth > 0) continue;
    if (!out.empty() && out.back().last == i) {
      out.back().last = i + 1;
    } else {
      out.push_back(registry::BlockRange{i, i + 1});
    }
  }
  return out;
}

absl::Status ValidateOptions(int64_t n_blocks, const RouteOptions& o, int32_t* start,
                             int32_t* end) {
  if (n_blocks <= 0 || n_blocks > registry::kMaxBlocks) {
    return absl::InvalidArgumentError(absl::StrCat("route: bad block count ", n_blocks));
  }
  const int64_t e = o.end_block < 0 ? n_blocks : o.end_block;
  if (o.start_block < 0 || o.start_block >= e || e > n_blocks) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "route: bad span [%d, %d) for a model of %d blocks", o.start_block, e, n_blocks));
  }
  auto finite_nonneg = [](double v) { return std::isfinite(v) && v >= 0; };
  if (!finite_nonneg(o.default_rtt_ms) || !finite_nonneg(o.load_weight) ||
      !finite_nonneg(o.relayed_hop_ms) || !finite_nonneg(o.cache_shortage_penalty_s) ||
      !finite_nonneg(o.nearly_full_penalty_s) ||
      !(o.default_tps_per_block > 0 && std::isfinite(o.default_tps_per_block)) ||
      !(o.nearly_full_fraction >= 0 && o.nearly_full_fraction < 1) || o.cache_tokens_needed < 0) {
    return absl::InvalidArgumentError("route: option out of range");
  }
  for (const auto& [id, ms] : o.client_rtt_ms) {
    if (!finite_nonneg(ms)) return absl::InvalidArgumentError("route: bad client RTT");
  }
  for (const auto& [id, l] : o.load) {
    if (!finite_nonneg(l)) return absl::InvalidArgumentError("route: bad load");
  }
  for (const auto& [id, tps] : o.measured_tps_per_block) {
    if (!(tps > 0 && std::isfinite(tps))) {
      return absl::InvalidArgumentError("route: bad measured throughput");
    }
  }
  if (!finite_nonneg(o.claim_cap_factor)) return absl::InvalidArgumentError("route: bad cap");
  *start = static_cast<int32_t>(o.start_block);
  *end = static_cast<int32_t>(e);
  return absl::OkStatus();
}

double CachePenalty(const registry::PeerRecord& r, const RouteOptions& o) {
  const int64_t need = o.cache_tokens_needed;
  if (need > 0 && r.free_cache_tokens < need) return o.cache_shortage_penalty_s;
  if (r.total_cache_tokens <= 0) return 0;
  const double fill = 1.0 - static_cast<double>(r.free_cache_tokens - need) /
                                static_cast<double>(r.total_cache_tokens);
  if (fill <= o.nearly_full_fraction) return 0;
  return o.nearly_full_penalty_s * (fill - o.nearly_full_fraction) / (1.0 - o.nearly_full_fraction);
}

// Each candidate's decode throughput per block for the estimate: what the client measured, else
// its claim (or the default), at most claim_cap_factor x a reference: over the blocks it serves,
// the fastest measured candidate serving that block or, where none is measured, the (lower) median
// claim of the candidates serving it. Linear in the candidates' blocks: snapshots can be large.
std::vector<double> CredibleThroughput(const std::vector<Candidate>& cands, int32_t start,
                                       int32_t end, const RouteOptions& options) {
  const size_t n = cands.size();
  std::vector<double> tps(n);
  std::vector<char> measured(n, 0);
  for (size_t k = 0; k < n; ++k) {
    const registry::PeerRecord& r = *cands[k].record;
    if (auto it = options.measured_tps_per_block.find(r.peer_id);
        it != options.measured_tps_per_block.end()) {
      tps[k] = it->second;
      measured[k] = 1;
    } else {
      tps[k] = r.decode_tps_per_block > 0 ? r.decode_tps_per_block : options.default_tps_per_block;
    }
  }
  if (options.claim_cap_factor <= 0) return tps;
  std::vector<double> best_measured(end - start, 0);
  std::vector<std::vector<double>> claims(end - start);
  for (size_t k = 0; k < n; ++k) {
    for (int32_t i = cands[k].lo; i < cands[k].hi; ++i) {
      if (measured[k]) {
        best_measured[i - start] = std::max(best_measured[i - start], tps[k]);
      } else {
        claims[i - start].push_back(tps[k]);
      }
    }
  }
  std::vector<double> reference(end - start, 0);
  for (int32_t i = start; i < end; ++i) {
    std::vector<double>& c = claims[i - start];
    if (best_measured[i - start] > 0) {
      reference[i - start] = best_measured[i - start];
    } else if (!c.empty()) {
      // The lower median: of two claims, the smaller one bounds the other.
      std::nth_element(c.begin(), c.begin() + (c.size() - 1) / 2, c.end());
      reference[i - start] = c[(c.size() - 1) / 2];
    }
  }
  for (size_t k = 0; k < n; ++k) {
    if (measured[k]) continue;
    double ref = 0;
    for (int32_t i = cands[k].lo; i < cands[k].hi; ++i) ref = std::max(ref, reference[i - start]);
    if (ref > 0) tps[k] = std::min(tps[k], options.claim_cap_factor * ref);
  }
  return tps;
}

}  // namespace

absl::StatusOr<Route> BuildRoute(const registry::RegistrySnapshot& peers, int64_t n_blocks,
                                 const RouteOptions& options) {
  int32_t start = 0, end = 0;
  if (absl::Status s = ValidateOptions(n_blocks, options, &start, &end); !s.ok()) return s;

  // Newest record per peer id (the snapshot is untrusted as to duplicates).
  absl::flat_hash_map<registry::PeerId, const registry::PeerRecord*> newest;
  for (const registry::PeerRecord& r : peers) {
    auto [it, inserted] = newest.try_emplace(r.peer_id, &r);
    if (!inserted && r.seq > it->second->seq) it->second = &r;
  }

  std::vector<Candidate> cands;
  std::vector<registry::BlockRange>
      unusable_ranges;  // served, but by banned or not-yet-online peers
  for (const auto& [id, rec] : newest) {
    const registry::PeerRecord& r = *rec;
    if (r.blocks.first < 0 || r.blocks.last > n_blocks || r.blocks.empty()) continue;
    const int32_t lo = std::max(r.blocks.first, start), hi = std::min(r.blocks.last, end);
    if (lo >= hi || r.state == registry::PeerState::kOffline) continue;
    if (r.state != registry::PeerState::kOnline || options.banned.contains(id) ||
        (!options.banned_addresses.empty() &&
         options.banned_addresses.contains(AddressKey(r.address)))) {
      unusable_ranges.push_back(r.blocks);
      continue;
    }
    Candidate c;
    c.record = rec;
    c.lo = lo;
    c.hi = hi;
    double load = r.active_sessions;
    if (auto it = options.load.find(id); it != options.load.end()) load += it->second;
    c.load_factor = 1.0 + options.load_weight * load;
    c.enter_penalty_s = CachePenalty(r, options);
    // The relay's leg: forwarding there and back, which no RTT to the relay's endpoint shows.
    if (r.relayed) c.enter_penalty_s += options.relayed_hop_ms / 1000.0;
    c.est_latency_s = ClientRttMs(options, id) / 2000.0;
    cands.push_back(std::move(c));
  }
  // Seconds per block: measured where the client has measured, else the claim within bounds.
  std::vector<double> tps = CredibleThroughput(cands, start, end, options);
  for (size_t k = 0; k < cands.size(); ++k) cands[k].block_s = cands[k].load_factor / tps[k];

  // Deterministic regardless of snapshot order: ties go to the lower peer id.
  std::sort(cands.begin(), cands.end(), [](const Candidate& a, const Candidate& b) {
    return a.record->peer_id < b.record->peer_id;
  });

  // States: per candidate, computing(i) for i in (lo, hi]; one sink at the end.
  int64_t total_span = 0;
  for (const Candidate& c : cands) total_span += c.span();
  if (total_span >= kMaxStates) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "route: ", cands.size(), " peers over ", end - start, " blocks are too many to search"));
  }
  int32_t n_states = 0;
  std::vector<int32_t> state_peer;
  state_peer.reserve(total_span);
  for (size_t k = 0; k < cands.size(); ++k) {
    cands[k].base = n_states;
    n_states += cands[k].span();
    state_peer.insert(state_peer.end(), cands[k].span(), static_cast<int32_t>(k));
  }
  const int32_t sink = n_states++;

  absl::flat_hash_map<registry::PeerId, int32_t, PeerIdHash> index;
  index.reserve(cands.size());
  for (size_t k = 0; k < cands.size(); ++k)
    index[cands[k].record->peer_id] = static_cast<int32_t>(k);
  // Measured latencies, both directions (RTT is symmetric: a measurement only the far side made
  // counts too), kept only where the route could actually step from one peer to the other: p
  // can end a hop at boundaries (p.lo, p.hi], q can start one at [q.lo, q.hi).
  auto can_follow = [&](int32_t p, int32_t q) {
    return std::max(cands[p].lo + 1, cands[q].lo) <= std::min(cands[p].hi, cands[q].hi - 1);
  };
  struct Measured {
    int32_t to;
    bool reverse;  // measured by the far side: used only if the near side has no measurement
    double seconds;
    bool operator<(const Measured& o) const {
      return std::tie(to, reverse) < std::tie(o.to, o.reverse);
    }
  };
  std::vector<std::vector<Measured>> measured(cands.size());
  for (size_t k = 0; k < cands.size(); ++k) {
    const int32_t p = static_cast<int32_t>(k);
    for (const auto& [other, ms] : cands[k].record->rtt_ms) {
      auto it = index.find(other);
      if (it == index.end() || it->second == p) continue;
      const int32_t q = it->second;
      if (can_follow(p, q)) measured[p].push_back({q, false, ms / 2000.0});
      if (can_follow(q, p)) measured[q].push_back({p, true, ms / 2000.0});
    }
  }
  for (size_t k = 0; k < cands.size(); ++k) {
    auto& list = measured[k];
    std::sort(list.begin(), list.end());
    auto& known = cands[k].known;
    known.reserve(list.size());
    for (const Measured& m : list) {
      if (known.empty() || known.back().q != m.to)
        known.push_back(cands[m.to].EnterBy(m.to, m.seconds));
    }
  }

  // Which candidates can be entered at each boundary, at their estimated latency.
  std::vector<std::vector<Entry>> cover(end - start);
  for (size_t k = 0; k < cands.size(); ++k) {
    const Entry e = cands[k].EnterBy(static_cast<int32_t>(k), cands[k].est_latency_s);
    for (int32_t i = cands[k].lo; i < cands[k].hi; ++i) cover[i - start].push_back(e);
  }

  const registry::PeerRecord* upstream = nullptr;
  const registry::PeerRecord* downstream = nullptr;
  if (options.upstream_peer) {
    if (auto it = newest.find(*options.upstream_peer); it != newest.end()) upstream = it->second;
  }
  if (options.downstream_peer) {
    if (auto it = newest.find(*options.downstream_peer); it != newest.end()) {
      downstream = it->second;
    }
  }
  auto latency_in = [&](const Candidate& q) {
    if (upstream) {
      if (auto s = RecordLatencyS(*upstream, *q.record)) return *s;
    }
    return q.est_latency_s;
  };
  auto latency_out = [&](const Candidate& p) {
    if (options.downstream_peer) {
      if (downstream) {
        if (auto s = RecordLatencyS(*p.record, *downstream)) return *s;
      }
      return ClientRttMs(options, *options.downstream_peer) / 2000.0;
    }
    return p.est_latency_s;
  };

  std::vector<double> dist(n_states, kInf);
  std::vector<int32_t> parent(n_states, -1);
  using Item = std::pair<double, int32_t>;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> queue;
  auto relax = [&](int32_t state, double d, int32_t from) {
    if (d < dist[state]) {
      dist[state] = d;
      parent[state] = from;
      queue.emplace(d, state);
    }
  };
  for (const Entry& e : cover[0]) {
    const Candidate& c = cands[e.q];
    relax(c.Computing(start + 1), latency_in(c) + c.enter_penalty_s + c.block_s, -1);
  }

  // Leaving peer p at boundary i for peer q costs p's measured latency to q if known, else q's
  // estimate, which does not depend on p. So only the first peer to leave at i (the cheapest,
  // since Dijkstra pops in order) needs to try every q by estimate; later ones only matter for
  // the q's every earlier one had a measurement for (`pending`), plus their own measured q's.
  std::vector<char> boundary_seen(end - start, 0);
  std::vector<std::vector<Entry>> pending(end - start);

  while (!queue.empty()) {
    auto [d, s] = queue.top();
    queue.pop();
    if (d > dist[s]) continue;
    if (s == sink) break;
    const int32_t k = state_peer[s];
    const Candidate& p = cands[k];
    const int32_t i = p.lo + (s - p.base) + 1;  // computing(i)
    if (i < p.hi) relax(p.Computing(i + 1), d + p.block_s, s);
    if (i == end) {
      relax(sink, d + latency_out(p), s);
      continue;
    }
    const int32_t b = i - start;
    if (!boundary_seen[b]) {
      boundary_seen[b] = 1;
      for (const Entry& e : cover[b]) {
        if (e.q == k || HasMeasurement(p, e.q)) {
          pending[b].push_back(e);
        } else {
          relax(e.state0 + i, d + e.cost, s);
        }
      }
    } else {
      auto& list = pending[b];
      size_t kept = 0;
      for (const Entry& e : list) {
        if (e.q != k && !HasMeasurement(p, e.q)) {
          relax(e.state0 + i, d + e.cost, s);
        } else {
          list[kept++] = e;
        }
      }
      list.resize(kept);
    }
    for (const Entry& e : p.known) {
      if (e.lo <= i && i < e.hi) relax(e.state0 + i, d + e.cost, s);
    }
  }

  if (dist[sink] == kInf) {
    std::vector<registry::BlockRange> usable;
    for (const Candidate& c : cands) usable.push_back(registry::BlockRange{c.lo, c.hi});
    const std::vector<registry::BlockRange> holes = Uncovered(usable, start, end);
    std::string msg =
        absl::StrCat("no route through blocks ", FormatBlocks({registry::BlockRange{start, end}}),
                     ": no online peer serves blocks ", FormatBlocks(holes));
    const bool hint = std::any_of(holes.begin(), holes.end(), [&](const registry::BlockRange& h) {
      return std::any_of(
          unusable_ranges.begin(), unusable_ranges.end(),
          [&](const registry::BlockRange& u) { return u.first < h.last && h.first < u.last; });
    });
    if (hint) absl::StrAppend(&msg, " (banned or still-joining peers serve some of them)");
    return absl::UnavailableError(msg);
  }

  Route route;
  route.cost_s = dist[sink];
  int32_t cur = parent[sink];
  while (cur >= 0) {
    const Candidate& p = cands[state_peer[cur]];
    const int32_t last = p.lo + (cur - p.base) + 1;
    // Back along this peer's blocks to where the hop entered it (a transition never stays on
    // the same peer, so a parent on another peer, or none, marks the hop's start).
    while (parent[cur] >= 0 && state_peer[parent[cur]] == state_peer[cur]) cur = parent[cur];
    const int32_t first = p.lo + (cur - p.base);
    route.hops.push_back(
        RouteHop{p.record->peer_id, p.record->address, registry::BlockRange{first, last}});
    cur = parent[cur];
  }
  std::reverse(route.hops.begin(), route.hops.end());
  return route;
}

std::string DescribeRoute(const Route& route) {
  std::vector<std::string> parts;
  for (const RouteHop& h : route.hops) {
    parts.push_back(
        absl::StrCat(h.blocks.first, "..", h.blocks.last - 1, "@", h.peer_id.ShortHex()));
  }
  return absl::StrJoin(parts, " ");
}

}  // namespace swarm::router
