#include "peer/peer_node.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/status_macros.h"
#include "peer/block_placement.h"
#include "peer/cache_budget.h"
#include "peer/peer_reach.h"
#include "peer/peer_server.h"
#include "peer/reachability.h"
#include "peer/relay_service.h"
#include "peer/rtt_probe.h"
#include "transport/zmq_curve.h"

namespace swarm::peer {
namespace {

// Leaving: how long the offline record may wait for acknowledgement, and the DHT node for
// handing its stored values over. Both keep spreading after we stop waiting; records of peers
// that stay are refreshed by their owners anyway.
constexpr absl::Duration kWithdrawWait = absl::Milliseconds(300);
constexpr absl::Duration kDhtShutdownWait = absl::Milliseconds(200);

std::string HostOf(const std::string& endpoint) {
  // tcp://HOST:PORT
  const size_t scheme = endpoint.find("://");
  const size_t colon = endpoint.rfind(':');
  if (scheme == std::string::npos || colon == std::string::npos || colon < scheme + 3) return "";
  return endpoint.substr(scheme + 3, colon - scheme - 3);
}

std::string PublicAddress(const std::string& endpoint, const std::string& public_host) {
  std::string host = public_host;
  if (host.empty()) {
    host = HostOf(endpoint);
    if (host == "0.0.0.0" || host == "*") host = "127.0.0.1";
  }
  const size_t colon = endpoint.rfind(':');
  return absl::StrCat("tcp://", host, endpoint.substr(colon));
}

registry::PeerRecord MakeRecord(const std::string& address, const std::string& model_id,
                                registry::BlockRange blocks, registry::PeerState state,
                                const shard::Throughput& throughput, int64_t free_tokens,
                                const CacheBudget& budget, int64_t sessions) {
  registry::PeerRecord record;
  record.address = address;
  record.model_id = model_id;
  record.blocks = blocks;
  record.state = state;
  record.decode_tps_per_block = throughput.decode_tps_per_block;
  record.prompt_tps_per_block = throughput.prompt_tps_per_block;
  record.free_cache_tokens = free_tokens;
  record.total_cache_tokens = budget.tokens;
  // Bytes of the positions sessions may reserve (bytes_per_token is 0 without a kv_dim: unknown).
  const auto per_token = static_cast<int64_t>(budget.bytes_per_token);
  record.free_cache_bytes = free_tokens * per_token;
  record.total_cache_bytes = budget.tokens * per_token;
  record.active_sessions = static_cast<int32_t>(sessions);
  return record;
}

// Binds the peer's ROUTER. After a move the old socket's port is released by ZeroMQ's I/O thread
// asynchronously, so binding it again at once can fail with EADDRINUSE: `rebinding` retries.
absl::StatusOr<std::unique_ptr<transport::RouterServer>> BindRouter(
    zmq::context_t& context, const std::string& listen, bool rebinding,
    const transport::ServerOptions& options) {
  auto bound = transport::RouterServer::Bind(context, listen, options);
  for (int attempt = 0; rebinding && !bound.ok() && attempt < 50 &&
                        absl::StrContains(bound.status().message(), "Address already in use");
       ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    bound = transport::RouterServer::Bind(context, listen, options);
  }
  return bound;
}

}  // namespace

// Why the serving loop ended, shared between the signal thread, the announcer and Run().
class PeerNode::StopReason {
 public:
  void Shutdown() { Set(kShutdown); }
  void Move(registry::BlockRange range) {
    std::lock_guard lock(mu_);
    if (reason_ == kNone) {
      reason_ = kMove;
      move_to_ = range;
    }
    cv_.notify_all();
  }
  bool shutdown() {
    std::lock_guard lock(mu_);
    return reason_ == kShutdown;
  }
  std::optional<registry::BlockRange> move_to() {
    std::lock_guard lock(mu_);
    if (reason_ != kMove) return std::nullopt;
    return move_to_;
  }
  void Reset() {
    std::lock_guard lock(mu_);
    if (reason_ == kMove) reason_ = kNone;
  }
  // Waits up to `timeout`; true if a stop was requested meanwhile.
  bool WaitFor(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return reason_ != kNone; });
  }
  // hold_joining: Release() lets the peer load its blocks.
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  void WaitForReleaseOrShutdown() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return released_ || reason_ == kShutdown; });
  }

 private:
  enum Reason { kNone, kShutdown, kMove };
  void Set(Reason r) {
    std::lock_guard lock(mu_);
    reason_ = r;
    cv_.notify_all();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  Reason reason_ = kNone;
  registry::BlockRange move_to_;
  bool released_ = false;
};

// Round trips to the peers of the next blocks: written by the measuring thread, read by the
// announcer.
class PeerNode::RttTable {
 public:
  void Set(absl::btree_map<registry::PeerId, double> rtt_ms) {
    std::lock_guard lock(mu_);
    rtt_ms_ = std::move(rtt_ms);
  }
  absl::btree_map<registry::PeerId, double> Get() {
    std::lock_guard lock(mu_);
    return rtt_ms_;
  }

 private:
  std::mutex mu_;
  absl::btree_map<registry::PeerId, double> rtt_ms_;
};

PeerNode::PeerNode(PeerNodeOptions options)
    : options_(std::move(options)),
      stop_(std::make_unique<StopReason>()),
      rtts_(std::make_unique<RttTable>()) {}

PeerNode::~PeerNode() = default;

void PeerNode::Stop() {
  stop_->Shutdown();
  absl::MutexLock lock(&server_mu_);
  if (running_server_ != nullptr) running_server_->Stop();
}

void PeerNode::ReleaseJoining() { stop_->Release(); }

absl::Status PeerNode::Run() {
  absl::Status status = RunUntilLeft();
  registry_.reset();  // leaves the DHT, if an error left it joined
  return status;
}

absl::Status PeerNode::RunUntilLeft() {
  const PeerNodeOptions& o = options_;
  if (o.dht) {
    registry::DhtRegistryOptions dht;
    dht.bind_address = o.dht_bind;
    dht.port = o.dht_port;
    dht.initial_peers = o.initial_peers;
    dht.identity_path = o.identity_path;
    dht.record_ttl = absl::Milliseconds(o.record_ttl.count());
    dht.refresh_interval =
        absl::Milliseconds(std::min(o.announce_interval.count(), o.record_ttl.count() / 2));
    dht.shutdown_timeout = kDhtShutdownWait;
    dht.swarm_secret = o.swarm_secret;
    SWARM_ASSIGN_OR_RETURN(registry_, registry::DhtRegistry::Create(dht));
    for (const auto& [name, value] : o.dht_values) {
      if (absl::Status published = registry_->PublishBlob(name, value); !published.ok()) {
        std::fprintf(stderr, "serve: publishing %s in the DHT: %s\n", name.c_str(),
                     std::string(published.message()).c_str());
      }
    }
  }
  registry::DhtRegistry* const registry = registry_.get();
  const std::string peer_id = registry ? registry->peer_id().ToHex() : o.peer_id;
  const bool automatic_placement = o.num_blocks > 0 && !o.blocks;

  // The blocks: given, or chosen where the swarm is weakest.
  registry::BlockRange range{0, static_cast<int32_t>(o.n_layer)};
  if (o.blocks) {
    range = *o.blocks;
  } else if (o.num_blocks > 0) {
    registry::RegistrySnapshot snapshot;
    if (registry) {
      auto read = registry->Snapshot(o.model_id);
      if (read.ok()) snapshot = std::move(*read);
    }
    SWARM_ASSIGN_OR_RETURN(range, ChooseBlocks(snapshot, o.n_layer, o.num_blocks, 0));
  }
  if (const int64_t n_blocks = range.size(); o.n_devices > n_blocks) {
    return absl::InvalidArgumentError(absl::StrCat(
        o.n_devices, " devices for blocks [", range.first, ", ", range.last, "), ", n_blocks,
        n_blocks == 1 ? " block" : " blocks", ": each device needs at least one block"));
  }

  std::string listen = o.listen;
  zmq::context_t context(1);
  // A private swarm: every socket of this peer speaks CurveZMQ with the swarm's keys; the ROUTER
  // admits only the members' key. The authenticator serves the context's CURVE sockets and goes
  // before the context, after them.
  std::unique_ptr<transport::ZapAuthenticator> authenticator;
  transport::ServerOptions server_options;
  std::optional<transport::CurveClientOptions> client_curve;
  if (o.swarm_secret) {
    SWARM_ASSIGN_OR_RETURN(const transport::SwarmCurveKeys keys,
                           transport::DeriveCurveKeys(*o.swarm_secret));
    SWARM_ASSIGN_OR_RETURN(authenticator,
                           transport::ZapAuthenticator::Start(context, {keys.client.public_key}));
    server_options.curve = transport::SwarmCurveServer(keys, authenticator.get());
    client_curve = transport::SwarmCurveClient(keys);
  }
  StopReason& stop = *stop_;
  // Reachability: this peer's socket echoes the nonce to helpers that dial it back; a peer that may
  // be reachable runs a relay service (dial-backs for others, relaying when it is reachable).
  const uint64_t dial_back_nonce = RandomDialBackNonce();
  std::unique_ptr<RelayService> relay_service;
  if (registry && o.reachability != ReachabilityMode::kRelayed) {
    RelayServiceOptions relay;
    relay.listen_host = HostOf(o.listen);
    relay.public_host = o.public_host;
    relay.relay_mbit = o.relay_mbit;
    relay.server = server_options;
    relay.client.curve = client_curve;
    SWARM_ASSIGN_OR_RETURN(relay_service, RelayService::Start(context, relay));
  }
  while (true) {
    const registry::BlockRange blocks = range;
    // Bound first, so the joining record has the address the peer will serve at (a move rebinds
    // the same port).
    if (o.n_embd > 0) {
      server_options.max_message_bytes = std::min(
          server_options.max_message_bytes, MaxMessageBytes(o.n_embd, o.limits.max_session_length));
    }
    SWARM_ASSIGN_OR_RETURN(auto router,
                           BindRouter(context, listen, listen != o.listen, server_options));
    listen = router->endpoint();
    const std::string address = PublicAddress(listen, o.public_host);
    // The same memory holds this many positions of the peer's cache types over these blocks: what
    // sessions reserve and the records show.
    const CacheBudget budget =
        CacheBudgetFor(o.limits.cache_tokens, blocks.size(), o.kv_dim, o.cache_types);
    if (registry) {
      // Joining: placement counts this peer (with what an earlier run measured, if anything);
      // routes leave it out until it is online. Unavailable for a lone node: harmless.
      const shard::Throughput cached =
          o.cached_throughput ? o.cached_throughput(blocks.size()) : shard::Throughput{};
      (void)registry->Announce(MakeRecord(address, o.model_id, blocks,
                                          registry::PeerState::kJoining, cached, budget.tokens,
                                          budget, 0));
    }
    if (o.hold_joining) {
      std::fprintf(stderr, "serve: joining blocks [%d, %d), held until SIGUSR2\n", blocks.first,
                   blocks.last);
      stop.WaitForReleaseOrShutdown();
    }
    if (stop.shutdown()) break;

    SWARM_ASSIGN_OR_RETURN(LoadedBlocks loaded, o.load_blocks(blocks));
    shard::ServingStack& stack = *loaded.stack;
    const shard::Throughput throughput = loaded.throughput;

    PeerServerOptions options;
    options.model_id = o.model_id;
    options.peer_id = peer_id;
    options.limits = o.limits;
    options.limits.cache_tokens = budget.tokens;
    options.forward_tokens_per_sec = throughput.prompt_tps_per_block / stack.n_blocks();
    options.inference_steps_per_sec = throughput.decode_tps_per_block / stack.n_blocks();
    options.server = server_options;
    options.downstream.curve = client_curve;
    options.dial_back_nonce = dial_back_nonce;
    std::unique_ptr<PeerServer> server =
        PeerServer::Create(context, stack, options, std::move(router));
    {
      absl::MutexLock lock(&server_mu_);
      running_server_ = server.get();
    }
    if (stop.shutdown()) {
      absl::MutexLock lock(&server_mu_);
      running_server_ = nullptr;
      break;
    }
    // The log line first: whoever reads the ready line finds it in the log already.
    std::fprintf(stderr,
                 "serve: model %s, blocks [%lld, %lld) of %lld, %s, cache %lld tokens (%s, "
                 "%.1f MiB), %.0f decode / %.0f prompt tokens/s per block\n",
                 o.model_id.c_str(), static_cast<long long>(blocks.first),
                 static_cast<long long>(blocks.last), static_cast<long long>(o.n_layer),
                 loaded.placement.c_str(), static_cast<long long>(budget.tokens),
                 kernels::KvTypesText(o.cache_types).c_str(),
                 static_cast<double>(budget.bytes) / (1 << 20), throughput.decode_tps_per_block,
                 throughput.prompt_tps_per_block);
    if (o.on_ready && !registry) {
      o.on_ready(PeerReady{server->endpoint(), blocks, peer_id, 0});
    }

    // Measure round trips to the peers a chain would push to next (none after the last block).
    std::jthread measurer;
    if (registry && blocks.last < o.n_layer) {
      measurer = std::jthread([&] {
        RttProbeOptions probe;
        probe.socket.curve = client_curve;
        RttProber prober(context, probe);
        registry::PeerRecord me;
        me.peer_id = registry->peer_id();
        me.blocks = blocks;
        while (true) {
          auto snapshot = registry->Snapshot(o.model_id);
          if (snapshot.ok()) rtts_->Set(prober.Measure(NextPeers(*snapshot, me)));
          if (stop.WaitFor(o.rtt_interval)) return;
        }
      });
    }
    // Announce while serving; rebalance when placement is automatic.
    // Made by the announcer; outlives the serving loop, so that the goodbyes the loop sends its
    // relayed clients as it stops still go through the relay.
    std::unique_ptr<PeerReach> reach_holder;
    std::jthread announcer;
    if (registry) {
      announcer = std::jthread([&] {
        // Reachable at `address`, or through a relay: decided while the socket serves (it answers
        // the dial-back probes), before the ready line and the first online record.
        PeerReachOptions reach_options;
        reach_options.model_id = o.model_id;
        reach_options.address = address;
        reach_options.local_endpoint = PublicAddress(server->endpoint(), "");
        reach_options.dial_back_nonce = dial_back_nonce;
        reach_options.client.curve = client_curve;
        reach_holder =
            std::make_unique<PeerReach>(context, *registry, relay_service.get(), reach_options);
        PeerReach& reach = *reach_holder;
        const auto wait = [&](std::chrono::milliseconds t) { return !stop.WaitFor(t); };
        if (!reach.Establish(o.reachability, wait)) return;
        if (o.on_ready) {
          o.on_ready(PeerReady{reach.address(), blocks, peer_id, registry->port(),
                               reach.relayed() ? "relayed" : "public",
                               reach.relay_service_address(),
                               reach.relayed() ? reach.relay_peer().ToHex() : ""});
        }
        auto last_rebalance = std::chrono::steady_clock::now();
        while (true) {
          if (reach.relay_failed() && !reach.Repair(wait)) return;
          registry::PeerRecord record =
              MakeRecord(address, o.model_id, blocks, registry::PeerState::kOnline, throughput,
                         server->free_cache_tokens(), budget, server->active_sessions());
          reach.Fill(record);
          record.rtt_ms = rtts_->Get();
          (void)registry->Announce(record);  // Unavailable for a lone node: retried next time
          const auto now = std::chrono::steady_clock::now();
          if (automatic_placement && now - last_rebalance > o.rebalance_interval) {
            last_rebalance = now;
            auto snapshot = registry->Snapshot(o.model_id);
            registry::PeerRecord me = record;
            me.peer_id = registry->peer_id();
            if (snapshot.ok()) {
              if (auto move = ShouldMove(*snapshot, me, o.n_layer)) {
                stop.Move(*move);
                server->Stop();
                return;
              }
            }
          }
          // Until the next announcement; a relay's death is repaired at once.
          const auto next = std::chrono::steady_clock::now() + o.announce_interval;
          while (!reach.relay_failed()) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                next - std::chrono::steady_clock::now());
            if (left.count() <= 0) break;
            if (stop.WaitFor(std::min(left, std::chrono::milliseconds(200)))) return;
          }
        }
      });
    }
    absl::Status served = server->Run();
    {
      absl::MutexLock lock(&server_mu_);
      running_server_ = nullptr;
    }
    if (!stop.move_to()) {
      stop.Shutdown();  // the loop may have ended on its own: wake the other threads
      // Leaving: DHT operations in flight in those threads give up now.
      if (registry) registry->Interrupt();
    }
    if (announcer.joinable()) announcer.join();
    if (measurer.joinable()) measurer.join();
    reach_holder.reset();
    const PeerServerStats& s = server->stats();
    std::fprintf(stderr,
                 "serve: stopped after %lld steps (%lld tokens) in %lld batches, %.6f s "
                 "computing, %lld errors sent\n",
                 static_cast<long long>(s.steps), static_cast<long long>(s.tokens),
                 static_cast<long long>(s.batches), s.compute_seconds,
                 static_cast<long long>(s.errors_sent));
    SWARM_RETURN_IF_ERROR(served);
    const auto move = stop.move_to();
    if (!move || stop.shutdown()) break;
    std::fprintf(stderr, "serve: moving to blocks [%d, %d) where the swarm is weaker\n",
                 move->first, move->last);
    range = *move;
    rtts_->Set({});
    stop.Reset();
  }
  if (registry) {
    // Offline, then leave the DHT, each within its bound: the time from SIGTERM to exit.
    const auto leaving = std::chrono::steady_clock::now();
    registry->Interrupt();
    const absl::Status withdrawn = registry->Withdraw(kWithdrawWait);
    const auto withdrawn_at = std::chrono::steady_clock::now();
    registry_.reset();
    const auto left = std::chrono::steady_clock::now();
    std::fprintf(stderr, "serve: left the swarm in %.3f s (offline record %.3f s%s, DHT %.3f s)\n",
                 std::chrono::duration<double>(left - leaving).count(),
                 std::chrono::duration<double>(withdrawn_at - leaving).count(),
                 withdrawn.ok() ? "" : ", not acknowledged",
                 std::chrono::duration<double>(left - withdrawn_at).count());
  }
  return absl::OkStatus();
}

}  // namespace swarm::peer
