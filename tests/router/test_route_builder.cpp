#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <functional>
#include <limits>
#include <map>
#include <random>

#include "router/route_builder.h"

namespace swarm::router {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

registry::PeerRecord Peer(const std::string& name, int first, int last, double tps = 1000) {
  registry::PeerRecord r;
  r.peer_id = registry::PeerId::FromName(name);
  r.address = "tcp://127.0.0.1:" + std::to_string(1000 + (name.size() * 31 + name[0]) % 60000);
  r.model_id = "m";
  r.blocks = {first, last};
  r.state = registry::PeerState::kOnline;
  r.decode_tps_per_block = tps;
  r.free_cache_tokens = 1 << 20;
  r.total_cache_tokens = 1 << 20;
  return r;
}

registry::PeerId Id(const std::string& name) { return registry::PeerId::FromName(name); }

std::vector<RouteHop> Hops(std::initializer_list<std::tuple<std::string, int, int>> hops,
                           const registry::RegistrySnapshot& peers) {
  std::vector<RouteHop> out;
  for (const auto& [name, a, b] : hops) {
    RouteHop h;
    h.peer_id = Id(name);
    for (const registry::PeerRecord& p : peers) {
      if (p.peer_id == h.peer_id) h.address = p.address;
    }
    h.blocks = {a, b};
    out.push_back(h);
  }
  return out;
}

TEST(RouteBuilderTest, PrefersFastPeer) {
  registry::RegistrySnapshot peers = {Peer("slow", 0, 4, 100), Peer("fast", 0, 4, 1000)};
  RouteOptions o;
  o.claim_cap_factor = 0;  // claims as given (capping: MeasuredThroughputOverridesClaims)
  auto route = BuildRoute(peers, 4, o);
  ASSERT_TRUE(route.ok()) << route.status();
  EXPECT_EQ(route->hops, Hops({{"fast", 0, 4}}, peers));
  // 50 ms RTT by default: 25 ms there, 25 ms back, 4 blocks at 1000 tokens/s.
  EXPECT_NEAR(route->cost_s, 0.025 + 0.004 + 0.025, 1e-12);
}

TEST(RouteBuilderTest, HopsCostLatency) {
  // Two fast half-peers against one slower whole-model peer.
  registry::RegistrySnapshot peers = {Peer("a", 0, 2, 1000), Peer("b", 2, 4, 1000),
                                      Peer("c", 0, 4, 200)};
  RouteOptions far;
  far.claim_cap_factor = 0;  // claims as given
  far.default_rtt_ms = 100;  // a+b: 3 × 50 ms + 4 ms = 154 ms; c: 2 × 50 ms + 20 ms = 120 ms
  auto r1 = BuildRoute(peers, 4, far);
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(r1->hops, Hops({{"c", 0, 4}}, peers));
  EXPECT_NEAR(r1->cost_s, 0.120, 1e-12);

  RouteOptions near;
  near.claim_cap_factor = 0;
  near.default_rtt_ms = 10;  // a+b: 15 + 4 = 19 ms; c: 10 + 20 = 30 ms
  auto r2 = BuildRoute(peers, 4, near);
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(r2->hops, Hops({{"a", 0, 2}, {"b", 2, 4}}, peers));
  EXPECT_NEAR(r2->cost_s, 0.019, 1e-12);
}

// A relayed peer costs its relay's leg: a direct replica wins at equal speed, and the relayed one
// costs exactly relayed_hop_ms more when it is the only one.
TEST(RouteBuilderTest, RelayedPeerCountsTheExtraHop) {
  registry::RegistrySnapshot peers = {Peer("direct", 0, 4), Peer("relayed", 0, 4)};
  peers[1].relayed = true;
  peers[1].relay_peer = Id("relay");
  RouteOptions o;
  o.claim_cap_factor = 0;
  o.relayed_hop_ms = 20;
  auto route = BuildRoute(peers, 4, o);
  ASSERT_TRUE(route.ok()) << route.status();
  EXPECT_EQ(route->hops, Hops({{"direct", 0, 4}}, peers));
  EXPECT_NEAR(route->cost_s, 0.025 + 0.004 + 0.025, 1e-12);
  registry::RegistrySnapshot only = {peers[1]};
  auto relayed = BuildRoute(only, 4, o);
  ASSERT_TRUE(relayed.ok()) << relayed.status();
  EXPECT_NEAR(relayed->cost_s, 0.025 + 0.020 + 0.004 + 0.025, 1e-12);
}

TEST(RouteBuilderTest, ClientRttPicksNearReplica) {
  registry::RegistrySnapshot peers = {Peer("far", 0, 4), Peer("near", 0, 4)};
  RouteOptions o;
  o.client_rtt_ms[Id("far")] = 200;
  o.client_rtt_ms[Id("near")] = 10;
  auto route = BuildRoute(peers, 4, o);
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->hops, Hops({{"near", 0, 4}}, peers));
}

TEST(RouteBuilderTest, PeerToPeerRttChoosesNextHop) {
  registry::RegistrySnapshot peers = {Peer("a", 0, 2), Peer("b1", 2, 4), Peer("b2", 2, 4)};
  peers[0].rtt_ms[Id("b1")] = 300;
  peers[0].rtt_ms[Id("b2")] = 4;
  auto route = BuildRoute(peers, 4);
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->hops, Hops({{"a", 0, 2}, {"b2", 2, 4}}, peers));
  // 25 ms in, 2 ms, 2 ms a->b2, 2 ms, 25 ms out.
  EXPECT_NEAR(route->cost_s, 0.025 + 0.002 + 0.002 + 0.002 + 0.025, 1e-12);

  // Measured by the far side only: RTT is symmetric.
  peers[0].rtt_ms.clear();
  peers[1].rtt_ms[Id("a")] = 2;
  peers[2].rtt_ms[Id("a")] = 400;
  route = BuildRoute(peers, 4);
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->hops, Hops({{"a", 0, 2}, {"b1", 2, 4}}, peers));
}

// What peers announce about their links decides between whole chains, not only the next hop:
// the faster-computing pair loses when the link between them is slow.
TEST(RouteBuilderTest, AnnouncedRttsPreferLowLatencyChains) {
  registry::RegistrySnapshot peers = {Peer("x1", 0, 2, 2000), Peer("x2", 0, 2, 1000),
                                      Peer("y1", 2, 4, 2000), Peer("y2", 2, 4, 1000)};
  // Without measurements the faster pair wins: 1 ms of compute against 2 ms per span.
  auto route = BuildRoute(peers, 4);
  ASSERT_TRUE(route.ok()) << route.status();
  EXPECT_EQ(route->hops, Hops({{"x1", 0, 2}, {"y1", 2, 4}}, peers));

  peers[0].rtt_ms[Id("y1")] = 200;  // x1 -> y1: 100 ms one way
  peers[0].rtt_ms[Id("y2")] = 150;
  peers[1].rtt_ms[Id("y1")] = 120;
  peers[1].rtt_ms[Id("y2")] = 2;  // x2 -> y2: 1 ms one way
  route = BuildRoute(peers, 4);
  ASSERT_TRUE(route.ok()) << route.status();
  EXPECT_EQ(route->hops, Hops({{"x2", 0, 2}, {"y2", 2, 4}}, peers));
  // 25 ms in, 2 ms on x2, 1 ms to y2, 2 ms on y2, 25 ms back.
  EXPECT_NEAR(route->cost_s, 0.025 + 0.002 + 0.001 + 0.002 + 0.025, 1e-12);

  // A low announced RTT also makes two hops beat one whole-model peer the client sees at the
  // same distance: x2 -> y2 adds 1 ms, not the 25 ms the client would assume.
  peers.push_back(Peer("whole", 0, 4, 600));  // 6.7 ms of compute
  route = BuildRoute(peers, 4);
  ASSERT_TRUE(route.ok()) << route.status();
  EXPECT_EQ(route->hops, Hops({{"x2", 0, 2}, {"y2", 2, 4}}, peers));
  peers[1].rtt_ms.clear();
  route = BuildRoute(peers, 4);
  ASSERT_TRUE(route.ok()) << route.status();
  EXPECT_EQ(route->hops, Hops({{"whole", 0, 4}}, peers));
}

TEST(RouteBuilderTest, AvoidsFullCaches) {
  registry::RegistrySnapshot peers = {Peer("fast-full", 0, 4, 5000), Peer("slow-free", 0, 4, 500)};
  peers[0].free_cache_tokens = 100;
  RouteOptions o;
  o.cache_tokens_needed = 1000;
  auto route = BuildRoute(peers, 4, o);
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->hops, Hops({{"slow-free", 0, 4}}, peers));

  // Nothing else serves those blocks: the full peer is still tried.
  registry::RegistrySnapshot only_full = {peers[0]};
  route = BuildRoute(only_full, 4, o);
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->hops, Hops({{"fast-full", 0, 4}}, only_full));

  // Nearly full (99.8% after this session): penalised, so a slightly slower peer wins...
  peers[0].free_cache_tokens = 1040;
  peers[0].total_cache_tokens = 25000;
  peers[1].decode_tps_per_block = 4000;
  route = BuildRoute(peers, 4, o);
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->hops, Hops({{"slow-free", 0, 4}}, peers));
  // ...but with room to spare it is the fastest again.
  peers[0].free_cache_tokens = 20000;
  route = BuildRoute(peers, 4, o);
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->hops, Hops({{"fast-full", 0, 4}}, peers));
}

TEST(RouteBuilderTest, RespectsBansAndState) {
  registry::RegistrySnapshot peers = {Peer("fast", 0, 4, 5000), Peer("slow", 0, 4, 100),
                                      Peer("joining", 0, 4, 9000)};
  peers[2].state = registry::PeerState::kJoining;
  RouteOptions o;
  o.banned.insert(Id("fast"));
  auto route = BuildRoute(peers, 4, o);
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->hops, Hops({{"slow", 0, 4}}, peers));

  o.banned.insert(Id("slow"));
  route = BuildRoute(peers, 4, o);
  ASSERT_FALSE(route.ok());
  EXPECT_EQ(route.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(route.status().message().find("banned or still-joining"), std::string_view::npos)
      << route.status();
}

TEST(RouteBuilderTest, ReroutesSubRange) {
  registry::RegistrySnapshot peers = {Peer("a", 0, 3), Peer("b", 2, 6), Peer("c", 4, 8),
                                      Peer("d", 3, 5, 50)};
  peers[0].rtt_ms[Id("b")] = 2;
  peers[1].rtt_ms[Id("c")] = 2;
  RouteOptions o;
  o.start_block = 3;
  o.end_block = 5;
  o.upstream_peer = Id("a");
  o.downstream_peer = Id("c");
  auto route = BuildRoute(peers, 8, o);
  ASSERT_TRUE(route.ok()) << route.status();
  EXPECT_EQ(route->hops, Hops({{"b", 3, 5}}, peers));
  // 1 ms from a, 2 blocks, 1 ms to c.
  EXPECT_NEAR(route->cost_s, 0.001 + 0.002 + 0.001, 1e-12);

  // With b banned, the slow d is the only way through [3, 5).
  o.banned.insert(Id("b"));
  route = BuildRoute(peers, 8, o);
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->hops, Hops({{"d", 3, 5}}, peers));
}

TEST(RouteBuilderTest, SpreadsSessionsOverReplicasWithLoadFeedback) {
  registry::RegistrySnapshot peers = {Peer("r1", 0, 8), Peer("r2", 0, 8)};
  RouteOptions o;
  std::map<registry::PeerId, int> count;
  for (int i = 0; i < 8; ++i) {
    auto route = BuildRoute(peers, 8, o);
    ASSERT_TRUE(route.ok());
    ASSERT_EQ(route->hops.size(), 1u);
    count[route->hops[0].peer_id]++;
    o.load[route->hops[0].peer_id] += 1;
  }
  EXPECT_EQ(count[Id("r1")], 4);
  EXPECT_EQ(count[Id("r2")], 4);

  // Uneven replicas: the one twice as fast gets about twice the sessions.
  peers[0].decode_tps_per_block = 2000;
  o.load.clear();
  count.clear();
  for (int i = 0; i < 9; ++i) {
    auto route = BuildRoute(peers, 8, o);
    ASSERT_TRUE(route.ok());
    count[route->hops[0].peer_id]++;
    o.load[route->hops[0].peer_id] += 1;
  }
  EXPECT_EQ(count[Id("r1")], 6);
  EXPECT_EQ(count[Id("r2")], 3);

  // Peers' own announced load counts too.
  peers[0].decode_tps_per_block = 1000;
  peers[0].active_sessions = 3;
  auto route = BuildRoute(peers, 8);
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->hops[0].peer_id, Id("r2"));
}

TEST(RouteBuilderTest, ErrorListsUncoveredBlocks) {
  registry::RegistrySnapshot peers = {Peer("a", 0, 3), Peer("b", 5, 7), Peer("off", 3, 8)};
  peers[2].state = registry::PeerState::kOffline;
  auto route = BuildRoute(peers, 8);
  ASSERT_FALSE(route.ok());
  EXPECT_EQ(route.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(route.status().message().find("no online peer serves blocks 3..4, 7"),
            std::string_view::npos)
      << route.status();

  auto empty = BuildRoute({}, 4);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("serves blocks 0..3"), std::string_view::npos)
      << empty.status();
}

TEST(RouteBuilderTest, RejectsBadArguments) {
  registry::RegistrySnapshot peers = {Peer("a", 0, 4)};
  EXPECT_EQ(BuildRoute(peers, 0).status().code(), absl::StatusCode::kInvalidArgument);
  RouteOptions o;
  o.start_block = 3;
  o.end_block = 3;
  EXPECT_EQ(BuildRoute(peers, 4, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.start_block = 0;
  o.end_block = 5;
  EXPECT_EQ(BuildRoute(peers, 4, o).status().code(), absl::StatusCode::kInvalidArgument);
  RouteOptions nan;
  nan.default_rtt_ms = std::nan("");
  EXPECT_EQ(BuildRoute(peers, 4, nan).status().code(), absl::StatusCode::kInvalidArgument);
  // A peer claiming blocks beyond the model is ignored, not trusted.
  registry::RegistrySnapshot wrong = {Peer("big", 0, 10)};
  EXPECT_EQ(BuildRoute(wrong, 4).status().code(), absl::StatusCode::kUnavailable);
}

TEST(RouteBuilderTest, DuplicatePeerRecordsUseNewest) {
  registry::PeerRecord old_rec = Peer("a", 0, 2);
  old_rec.seq = 1;
  registry::PeerRecord new_rec = Peer("a", 0, 4);
  new_rec.seq = 2;
  auto route = BuildRoute({old_rec, new_rec}, 4);
  ASSERT_TRUE(route.ok()) << route.status();
  EXPECT_EQ(route->hops.size(), 1u);
  EXPECT_EQ(route->hops[0].blocks, (registry::BlockRange{0, 4}));
}

// An exhaustive search with the cost model spelled out independently, to check the shortest
// path (and its shortcut for unmeasured peer-to-peer latency) on random small swarms.
struct Reference {
  const registry::RegistrySnapshot& peers;
  const RouteOptions& o;
  int start, end;
  std::map<std::pair<int, int>, double> memo;

  double ClientRtt(const registry::PeerRecord& p) const {
    auto it = o.client_rtt_ms.find(p.peer_id);
    return it == o.client_rtt_ms.end() ? o.default_rtt_ms : it->second;
  }
  double Lat(int from, int to) const {
    const registry::PeerRecord& p = peers[from];
    const registry::PeerRecord& q = peers[to];
    if (auto it = p.rtt_ms.find(q.peer_id); it != p.rtt_ms.end()) return it->second / 2000;
    if (auto it = q.rtt_ms.find(p.peer_id); it != q.rtt_ms.end()) return it->second / 2000;
    return ClientRtt(q) / 2000;
  }
  double BlockS(const registry::PeerRecord& p) const {
    double load = p.active_sessions;
    if (auto it = o.load.find(p.peer_id); it != o.load.end()) load += it->second;
    return (1 + o.load_weight * load) / p.decode_tps_per_block;
  }
  double Pen(const registry::PeerRecord& p) const {
    if (o.cache_tokens_needed > 0 && p.free_cache_tokens < o.cache_tokens_needed) {
      return o.cache_shortage_penalty_s;
    }
    double fill = 1.0 - double(p.free_cache_tokens - o.cache_tokens_needed) / p.total_cache_tokens;
    if (fill <= o.nearly_full_fraction) return 0;
    return o.nearly_full_penalty_s * (fill - o.nearly_full_fraction) / (1 - o.nearly_full_fraction);
  }
  bool Usable(int k) const {
    return peers[k].state == registry::PeerState::kOnline && !o.banned.contains(peers[k].peer_id);
  }
  double Best(int i, int prev) {
    if (auto it = memo.find({i, prev}); it != memo.end()) return it->second;
    double best = kInf;
    for (int q = 0; q < static_cast<int>(peers.size()); ++q) {
      const registry::PeerRecord& p = peers[q];
      if (q == prev || !Usable(q) || !p.blocks.Contains(i)) continue;
      const double in = (prev < 0 ? ClientRtt(p) / 2000 : Lat(prev, q)) + Pen(p);
      for (int e = i + 1; e <= std::min(p.blocks.last, end); ++e) {
        const double c = in + (e - i) * BlockS(p) + (e == end ? ClientRtt(p) / 2000 : Best(e, q));
        best = std::min(best, c);
      }
    }
    memo[{i, prev}] = best;
    return best;
  }
  // Cost of a given route under the same model.
  double CostOf(const Route& r) const {
    auto index = [&](const registry::PeerId& id) {
      for (size_t k = 0; k < peers.size(); ++k) {
        if (peers[k].peer_id == id) return static_cast<int>(k);
      }
      return -1;
    };
    double c = 0;
    int prev = -1;
    for (const RouteHop& h : r.hops) {
      const int q = index(h.peer_id);
      c += (prev < 0 ? ClientRtt(peers[q]) / 2000 : Lat(prev, q)) + Pen(peers[q]) +
           h.blocks.size() * BlockS(peers[q]);
      prev = q;
    }
    return c + ClientRtt(peers[prev]) / 2000;
  }
};

TEST(RouteBuilderTest, MatchesExhaustiveSearchOnRandomSwarms) {
  std::mt19937 rng(12345);
  int routed = 0, unroutable = 0;
  for (int iter = 0; iter < 400; ++iter) {
    const int n_blocks = 2 + static_cast<int>(rng() % 9);
    const int n_peers = 1 + static_cast<int>(rng() % 8);
    registry::RegistrySnapshot peers;
    for (int k = 0; k < n_peers; ++k) {
      const int a = static_cast<int>(rng() % n_blocks);
      const int b = a + 1 + static_cast<int>(rng() % (n_blocks - a));
      registry::PeerRecord p = Peer("p" + std::to_string(iter) + "_" + std::to_string(k), a, b,
                                    50 + static_cast<double>(rng() % 2000));
      p.free_cache_tokens = static_cast<int64_t>(rng() % 3000);
      p.total_cache_tokens = 3000;
      p.active_sessions = static_cast<int32_t>(rng() % 3);
      if (rng() % 10 == 0) p.state = registry::PeerState::kJoining;
      peers.push_back(p);
    }
    RouteOptions o;
    o.claim_cap_factor = 0;  // the search against claims as given (capping: tested above)
    o.default_rtt_ms = 1 + rng() % 100;
    for (int k = 0; k < n_peers; ++k) {
      if (rng() % 2) o.client_rtt_ms[peers[k].peer_id] = static_cast<double>(rng() % 150);
      if (rng() % 6 == 0) o.banned.insert(peers[k].peer_id);
      if (rng() % 3 == 0) o.load[peers[k].peer_id] = static_cast<double>(rng() % 4);
      for (int j = 0; j < n_peers; ++j) {
        if (j != k && rng() % 3 == 0) {
          peers[k].rtt_ms[peers[j].peer_id] = static_cast<double>(rng() % 200);
        }
      }
    }
    o.cache_tokens_needed = static_cast<int64_t>(rng() % 400);
    if (rng() % 3 == 0) {
      o.start_block = static_cast<int>(rng() % n_blocks);
      o.end_block = o.start_block + 1 + static_cast<int>(rng() % (n_blocks - o.start_block));
    }
    const int start = static_cast<int>(o.start_block);
    const int end = o.end_block < 0 ? n_blocks : static_cast<int>(o.end_block);

    Reference ref{peers, o, start, end, {}};
    const double expected = ref.Best(start, -1);
    auto route = BuildRoute(peers, n_blocks, o);
    if (expected == kInf) {
      ++unroutable;
      EXPECT_FALSE(route.ok()) << "iteration " << iter;
      continue;
    }
    ++routed;
    ASSERT_TRUE(route.ok()) << "iteration " << iter << ": " << route.status();
    EXPECT_NEAR(route->cost_s, expected, 1e-9) << "iteration " << iter;
    // The hops are a valid chain whose cost is the reported one.
    ASSERT_FALSE(route->hops.empty());
    EXPECT_EQ(route->hops.front().blocks.first, start);
    EXPECT_EQ(route->hops.back().blocks.last, end);
    for (size_t h = 0; h < route->hops.size(); ++h) {
      const RouteHop& hop = route->hops[h];
      EXPECT_FALSE(hop.blocks.empty());
      if (h > 0) {
        EXPECT_EQ(route->hops[h - 1].blocks.last, hop.blocks.first);
        EXPECT_NE(route->hops[h - 1].peer_id, hop.peer_id);
      }
      EXPECT_FALSE(o.banned.contains(hop.peer_id));
    }
    EXPECT_NEAR(ref.CostOf(*route), route->cost_s, 1e-9) << "iteration " << iter;
  }
  EXPECT_GT(routed, 100);
  EXPECT_GT(unroutable, 10);
}

TEST(RouteBuilderTest, ThousandPeersEightyBlocksIsFast) {
  std::mt19937 rng(99);
  constexpr int kBlocks = 80, kPeers = 1000;
  registry::RegistrySnapshot peers;
  for (int k = 0; k < kPeers; ++k) {
    const int span = 4 + static_cast<int>(rng() % 13);
    const int a = static_cast<int>(rng() % (kBlocks - span + 1));
    registry::PeerRecord p = Peer("peer" + std::to_string(k), a, a + span, 200 + rng() % 5000);
    p.free_cache_tokens = static_cast<int64_t>(rng() % (1 << 20));
    p.active_sessions = static_cast<int32_t>(rng() % 8);
    peers.push_back(p);
  }
  for (int k = 0; k < kPeers; ++k) {
    for (int j = 0; j < 32; ++j) {
      peers[k].rtt_ms[peers[rng() % kPeers].peer_id] = 1 + rng() % 150;
    }
    peers[k].rtt_ms.erase(peers[k].peer_id);
  }
  RouteOptions o;
  o.cache_tokens_needed = 2048;
  for (int k = 0; k < kPeers; k += 3) o.client_rtt_ms[peers[k].peer_id] = 5 + rng() % 100;

  // Wall time and this thread's CPU time (the machine running the tests may be busy).
  auto cpu_ms = [] {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
  };
  constexpr int kRuns = 5;
  double best_ms = kInf, best_cpu_ms = kInf;
  for (int run = 0; run < kRuns; ++run) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_ms();
    auto route = BuildRoute(peers, kBlocks, o);
    const double cpu = cpu_ms() - c0;
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(route.ok()) << route.status();
    best_ms = std::min(best_ms, ms);
    best_cpu_ms = std::min(best_cpu_ms, cpu);
    if (run == 0) std::printf("route: %s (%.4f s)\n", DescribeRoute(*route).c_str(), route->cost_s);
  }
  std::printf(
      "BuildRoute, %d peers x %d blocks, 32 RTTs each: best of %d = %.3f ms wall, "
      "%.3f ms CPU\n",
      kPeers, kBlocks, kRuns, best_ms, best_cpu_ms);
  EXPECT_LT(best_ms, 1000.0);  // generous: the point is the printed figure, not a timing test
}

// A peer this client measured counts for what it delivered, whatever it claims; a claim of a peer
// never measured is capped by the measured peers of its blocks (or the other claims), so a 1e12
// claim wins at most until it is measured.
TEST(RouteBuilderTest, MeasuredThroughputOverridesClaims) {
  registry::RegistrySnapshot peers = {Peer("honest", 0, 4, 1000), Peer("liar", 0, 4, 1e12)};
  RouteOptions o;
  // Never measured: the liar's claim counts as at most 4 x the honest claim (the lower median).
  auto route = BuildRoute(peers, 4, o);
  ASSERT_TRUE(route.ok()) << route.status();
  EXPECT_EQ(route->hops, Hops({{"liar", 0, 4}}, peers));
  EXPECT_NEAR(route->cost_s, 0.025 + 4 / 4000.0 + 0.025, 1e-12);
  // Without the cap the claim would be believed (what the cap changes).
  o.claim_cap_factor = 0;
  route = BuildRoute(peers, 4, o);
  ASSERT_TRUE(route.ok());
  EXPECT_NEAR(route->cost_s, 0.025 + 4 / 1e12 + 0.025, 1e-12);
  o.claim_cap_factor = 4;

  // Measured slow (10 steps/s per block): the honest peer, not measured, wins; its own claim is
  // now capped at 4 x the liar's measurement, 40, so it costs 4 / 40 s.
  o.measured_tps_per_block[Id("liar")] = 10;
  route = BuildRoute(peers, 4, o);
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->hops, Hops({{"honest", 0, 4}}, peers));
  EXPECT_NEAR(route->cost_s, 0.025 + 4 / 40.0 + 0.025, 1e-12);
  // Once measured too, each counts for its measurement.
  o.measured_tps_per_block[Id("honest")] = 800;
  route = BuildRoute(peers, 4, o);
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->hops, Hops({{"honest", 0, 4}}, peers));
  EXPECT_NEAR(route->cost_s, 0.025 + 4 / 800.0 + 0.025, 1e-12);

  // A peer claiming less than it delivers gets its measured speed.
  registry::RegistrySnapshot modest = {Peer("modest", 0, 4, 10), Peer("other", 0, 4, 100)};
  RouteOptions m;
  m.measured_tps_per_block[Id("modest")] = 1000;
  route = BuildRoute(modest, 4, m);
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->hops, Hops({{"modest", 0, 4}}, modest));

  // A measurement is validated like any option.
  m.measured_tps_per_block[Id("other")] = -1;
  EXPECT_TRUE(absl::IsInvalidArgument(BuildRoute(modest, 4, m).status()));
}

// A lone peer's claim has nothing to be capped by; a claim only counts against peers that share
// a block with it.
TEST(RouteBuilderTest, ClaimsAreCappedOnlyByPeersOfTheSameBlocks) {
  registry::RegistrySnapshot peers = {Peer("a", 0, 2, 1e9), Peer("b", 2, 4, 100)};
  RouteOptions o;
  o.measured_tps_per_block[Id("b")] = 1;
  auto route = BuildRoute(peers, 4, o);
  ASSERT_TRUE(route.ok());
  EXPECT_NEAR(route->cost_s, 0.025 + 2 / 1e9 + 0.025 + 2 / 1.0 + 0.025, 1e-9);
}

// A banned address is not used whatever id announces it; another address of the same host is.
TEST(RouteBuilderTest, RespectsBannedAddresses) {
  registry::RegistrySnapshot peers = {Peer("new id", 0, 4, 1e6), Peer("other", 0, 4, 1000)};
  peers[0].address = "tcp://127.0.0.1:5000";
  peers[1].address = "tcp://127.0.0.1:5001";
  RouteOptions o;
  o.banned_addresses = {"127.0.0.1:5000"};
  auto route = BuildRoute(peers, 4, o);
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->hops, Hops({{"other", 0, 4}}, peers));
  o.banned_addresses = {"127.0.0.1:5000", "127.0.0.1:5001"};
  route = BuildRoute(peers, 4, o);
  EXPECT_TRUE(absl::IsUnavailable(route.status()));
  EXPECT_NE(route.status().message().find("banned"), std::string_view::npos) << route.status();
}

}  // namespace
}  // namespace swarm::router
