// Route-builder benchmark: BuildRoute on random swarms of N peers over L blocks, each peer with
// R measured RTTs to random others. Prints one JSON object per configuration (best of `runs`
// wall and thread-CPU milliseconds; CPU time is the figure to trust on a busy machine).
// Usage: router_route_builder_bench [runs]
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>

#include "router/route_builder.h"

namespace {

using swarm::registry::PeerId;
using swarm::registry::PeerRecord;
using swarm::registry::PeerState;
using swarm::registry::RegistrySnapshot;
using swarm::router::BuildRoute;
using swarm::router::RouteOptions;

double CpuMs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

RegistrySnapshot MakeSwarm(int n_peers, int n_blocks, int rtts_per_peer, std::mt19937& rng) {
  RegistrySnapshot peers;
  for (int k = 0; k < n_peers; ++k) {
    PeerRecord p;
    p.peer_id = PeerId::FromName("bench-peer-" + std::to_string(k));
    p.address = "tcp://10.0.0.1:" + std::to_string(1024 + k % 60000);
    p.model_id = "bench";
    int span = std::min(n_blocks, 4 + static_cast<int>(rng() % 13));
    int first = static_cast<int>(rng() % (n_blocks - span + 1));
    if (k * 8 < n_blocks) {  // the first few tile the model, so a route always exists
      first = k * 8;
      span = std::min(8, n_blocks - first);
    }
    p.blocks = {first, first + span};
    p.state = PeerState::kOnline;
    p.decode_tps_per_block = 200 + rng() % 5000;
    p.free_cache_tokens = rng() % (1 << 20);
    p.total_cache_tokens = 1 << 20;
    p.active_sessions = static_cast<int32_t>(rng() % 8);
    peers.push_back(std::move(p));
  }
  for (int k = 0; k < n_peers; ++k) {
    for (int j = 0; j < rtts_per_peer; ++j) {
      const int other = static_cast<int>(rng() % n_peers);
      if (other != k) peers[k].rtt_ms[peers[other].peer_id] = 1 + rng() % 150;
    }
  }
  return peers;
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  struct Config {
    int peers, blocks, rtts;
  };
  const Config configs[] = {{10, 22, 4},    {100, 80, 16},  {1000, 80, 0},
                            {1000, 80, 32}, {5000, 80, 32}, {1000, 200, 32}};
  std::mt19937 rng(2024);
  for (const Config& c : configs) {
    const RegistrySnapshot peers = MakeSwarm(c.peers, c.blocks, c.rtts, rng);
    RouteOptions options;
    options.cache_tokens_needed = 2048;
    for (int k = 0; k < c.peers; k += 3) options.client_rtt_ms[peers[k].peer_id] = 5 + rng() % 100;
    double best_wall = std::numeric_limits<double>::infinity(), best_cpu = best_wall;
    size_t hops = 0;
    for (int r = 0; r < runs; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      const double c0 = CpuMs();
      auto route = BuildRoute(peers, c.blocks, options);
      const double cpu = CpuMs() - c0;
      const double wall =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (!route.ok()) {
        std::fprintf(stderr, "BuildRoute failed: %s\n",
                     std::string(route.status().message()).c_str());
        return 1;
      }
      hops = route->hops.size();
      best_wall = std::min(best_wall, wall);
      best_cpu = std::min(best_cpu, cpu);
    }
    std::printf(
        "{\"bench\": \"route_builder\", \"peers\": %d, \"blocks\": %d, \"rtts_per_peer\": %d, "
        "\"runs\": %d, \"hops\": %zu, \"best_wall_ms\": %.3f, \"best_cpu_ms\": %.3f}\n",
        c.peers, c.blocks, c.rtts, runs, hops, best_wall, best_cpu);
  }
  return 0;
}
