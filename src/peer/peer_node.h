// A volunteer peer's life: it joins the swarm's DHT, takes the blocks it is given or chooses them
// where the swarm is weakest, binds its socket and announces itself "joining", loads its blocks,
// then serves them (a PeerServer) while announcing "online" records that carry its measured
// round trips to the peers of the next blocks; with automatic placement it moves when the swarm
// is weaker elsewhere. On Stop() it tells the open sessions, announces "offline" and leaves the
// DHT, each step within a short bound.
// Run() runs on the caller's thread and owns the threads it starts (RTT measurer, announcer),
// joined before it returns; Stop() and ReleaseJoining() may be called from any thread (a signal
// thread). Loading the blocks onto devices is the caller's (it owns the model file and backends).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kernels/kv_types.h"
#include "peer/session_table.h"
#include "registry/dht_registry.h"
#include "registry/peer_record.h"
#include "shard/serving_stack.h"
#include "shard/throughput_probe.h"
#include "transport/swarm_secret.h"

namespace swarm::peer {

class PeerServer;

// A block range ready to serve, from PeerNodeOptions::load_blocks.
struct LoadedBlocks {
  std::unique_ptr<shard::ServingStack> stack;
  shard::Throughput throughput;  // measured on these devices (or cached from an earlier run)
  std::string placement;         // which device runs which blocks, for the log
};

// What the node tells its owner each time it starts serving a range (again after each move).
struct PeerReady {
  std::string endpoint;  // the bound ROUTER endpoint, e.g. tcp://127.0.0.1:41237
  registry::BlockRange blocks;
  std::string peer_id;
  int dht_port = 0;  // 0 without a DHT node
  // With a DHT node: "public" (others reach `endpoint`) or "relayed" (`endpoint` is the public
  // endpoint a relay opened for this peer; peer/relay_tunnel.h). Empty without one.
  std::string reach = {};
  std::string relay_service = {};  // this peer's relay service, when it offers one
  std::string relay_peer = {};     // relayed: the relay's peer id
};

// How a peer with a DHT node decides whether others can reach it.
enum class ReachabilityMode {
  kAuto,     // asks other peers to dial it back (peer/reachability.h)
  kPublic,   // takes itself for reachable without asking (tests)
  kRelayed,  // takes itself for unreachable: serves through a relay (tests)
};

struct PeerNodeOptions {
  std::string model_id;
  int64_t n_layer = 0;
  // The blocks: these, or num_blocks of them where the swarm is weakest (and the peer moves when
  // that helps), or else all of them.
  std::optional<registry::BlockRange> blocks;
  int64_t num_blocks = 0;
  int64_t n_devices = 1;  // each needs at least one block

  std::string listen = "tcp://127.0.0.1:0";
  std::string public_host;  // host others reach this peer at (default: the listen host)
  // limits.cache_tokens is memory: what that many positions take in an f32 cache over the served
  // blocks (--cache-tokens). Sessions reserve positions of cache_types, so a range's budget holds
  // CacheBudgetFor(cache_tokens, its blocks, kv_dim, cache_types).tokens of them (kv_dim 0:
  // limits.cache_tokens positions, whatever the types).
  SessionLimits limits;
  int64_t kv_dim = 0;
  // The model's hidden size: the ROUTER refuses frames larger than a step of the longest session
  // can be (MaxMessageBytes). 0: only transport's generic limit.
  int64_t n_embd = 0;
  kernels::KvTypes cache_types = kernels::kDefaultKvTypes;
  std::string peer_id;  // reported without a DHT node (else the DHT key's id)

  // A private swarm: the peer's socket admits only the swarm's members, over CurveZMQ (so do its
  // pushes to the next peers and its round-trip probes), and its DHT node is the swarm's own
  // (registry::DhtRegistryOptions::swarm_secret).
  std::optional<transport::SwarmSecret> swarm_secret;

  // Relaying: a reachable peer relays for unreachable ones up to relay_mbit Mbit/s (0: it does
  // not; it still answers dial-backs). An unreachable one serves through such a relay.
  double relay_mbit = 100;
  ReachabilityMode reachability = ReachabilityMode::kAuto;

  // Discovery: without a DHT node the peer neither announces nor moves (static swarms, tests).
  bool dht = true;
  std::vector<std::string> initial_peers;
  std::string dht_bind = "0.0.0.0";
  uint16_t dht_port = 0;
  std::string identity_path;
  std::chrono::milliseconds announce_interval{5000};
  std::chrono::milliseconds record_ttl{60000};
  std::chrono::milliseconds rebalance_interval{30000};
  std::chrono::milliseconds rtt_interval{10000};
  // Announce "joining", then wait for ReleaseJoining() before loading (for tests).
  bool hold_joining = false;
  // Named values kept in the DHT while the node runs (the model's manifest, under
  // ManifestDhtName(model_id)); a failure to publish is logged, not fatal.
  std::vector<std::pair<std::string, std::string>> dht_values;

  // Required: loads blocks [first, last) onto the devices and measures them; its error ends
  // Run().
  std::function<absl::StatusOr<LoadedBlocks>(registry::BlockRange)> load_blocks;
  // What an earlier run measured for a span of n blocks (zero when unknown), announced while
  // joining. May be empty.
  std::function<shard::Throughput(int64_t n_blocks)> cached_throughput;
  // Called once the peer serves (its socket answers) and, with a DHT node, knows whether it is
  // reachable (from the announcer's thread then, else on Run()'s thread). May be empty.
  std::function<void(const PeerReady&)> on_ready;
};

class PeerNode {
 public:
  explicit PeerNode(PeerNodeOptions options);
  ~PeerNode();
  PeerNode(const PeerNode&) = delete;
  PeerNode& operator=(const PeerNode&) = delete;

  // Joins, serves and leaves; returns once the peer has left the swarm (after Stop(), or when the
  // serving loop ends on its own), or with the error that ended it (DHT, socket, loading).
  absl::Status Run();
  // Any thread: leave the swarm. Before Run() it makes Run() leave without serving.
  void Stop();
  // Any thread: with hold_joining, go on loading.
  void ReleaseJoining();

 private:
  class StopReason;
  class RttTable;

  absl::Status RunUntilLeft();

  PeerNodeOptions options_;
  std::unique_ptr<StopReason> stop_;
  std::unique_ptr<RttTable> rtts_;
  std::unique_ptr<registry::DhtRegistry> registry_;
  absl::Mutex server_mu_;
  PeerServer* running_server_ ABSL_GUARDED_BY(server_mu_) = nullptr;
};

}  // namespace swarm::peer
