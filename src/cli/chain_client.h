// The blocks behind a text-generating subcommand (generate, chat): in-process, through a fixed
// chain of peers (--peers) or routed through the swarm's DHT (--initial-peers), with the flags that
// choose and tune that. The subcommand's thread owns every object here.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "absl/status/statusor.h"
#include "model/generator.h"
#include "registry/dht_registry.h"
#include "router/chain_session.h"
#include "router/peer_performance.h"
#include "router/swarm_hop_provider.h"
#include "shard/local_model.h"
#include "transport/swarm_secret.h"

namespace swarm::cli {

struct ChainFlags {
  std::vector<std::string> peers;          // a fixed chain, in order
  std::vector<std::string> initial_peers;  // DHT bootstrap: route through the swarm
  std::string dht_bind = "0.0.0.0";
  double route_wait_s = 20;
  int64_t min_step_timeout_ms = 2000;
  int64_t max_step_timeout_ms = 300000;
  std::string codec = "f32";
  double verify_share = 0.1;     // share of steps spot-checked on a replica (0: off)
  double verify_tolerance = -1;  // between backends; < 0: the built-in table
  std::string swarm_secret;

  // Without peers every block runs in this process.
  bool in_process() const { return peers.empty() && initial_peers.empty(); }
};

// --peers, --initial-peers, --dht-bind, --route-wait, the step timeouts, --codec, the verification
// flags and --swarm-secret.
void AddChainFlags(CLI::App& cmd, ChainFlags& flags);

// The parts of a swarm client that outlive one chain session: the DHT node, what this process
// measures of the peers, and the router. Made by the first OpenBlocks through the swarm and reused
// by the later ones (a chat opens one session per answer).
struct SwarmClient {
  std::unique_ptr<registry::DhtRegistry> registry;
  router::PeerPerformance performance;
  std::unique_ptr<router::SwarmHopProvider> provider;
};

// What runs the blocks for one sequence of up to max_length tokens.
struct OpenedBlocks {
  std::unique_ptr<model::BlockPipeline> pipeline;
  router::ChainSession* chain = nullptr;  // the pipeline when it is a chain of peers, else null
};

// Checks the flags' combination and loads the swarm secret (nullopt: an open swarm or in-process).
// InvalidArgument for --swarm-secret without peers.
absl::StatusOr<std::optional<transport::SwarmSecret>> LoadChainSecret(const ChainFlags& flags);

// In-process over m.blocks, else a chain of peers (a fixed one, or routed through `client`).
absl::StatusOr<OpenedBlocks> OpenBlocks(zmq::context_t& context, const ChainFlags& flags,
                                        shard::LocalModel& m, int64_t max_length,
                                        const std::optional<transport::SwarmSecret>& swarm_secret,
                                        SwarmClient& client);

// Failovers, verification and per-hop timings of a chain, on stderr.
// What the chain did for speculative decoding, appended to the `speculative:` line: ", chain: R
// rollbacks (P positions dropped), up to S steps in flight".
std::string ChainSpeculationSummary(const router::ChainSession& chain);
void PrintChainReport(const router::ChainSession& chain);

}  // namespace swarm::cli
