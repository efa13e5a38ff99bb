// `swarm serve`: a volunteer peer hosting a contiguous range of a model's blocks. It runs a DHT
// node, announces a signed record of what it serves (refreshed periodically), picks its blocks
// itself with --num-blocks, and moves when that would strengthen the swarm's weakest block.
// Life of a range: bind the socket, announce "joining", load and measure, serve and announce
// "online" (with measured round trips to the peers of the next blocks); on SIGTERM/SIGINT tell
// the open sessions, announce "offline" and leave the DHT, each step with a short bound.
// With several devices (--device cuda:0,cuda:1) the range is spread over them (MultiGpuStack).
#include <CLI/CLI.hpp>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "absl/container/btree_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "base/status_macros.h"
#include "cli/block_range_flag.h"
#include "cli/cache_type_flags.h"
#include "cli/commands.h"
#include "cli/device_list_flag.h"
#include "kernels/backend_factory.h"
#include "model/gguf.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "peer/block_placement.h"
#include "peer/cache_budget.h"
#include "peer/peer_server.h"
#include "peer/rtt_probe.h"
#include "registry/dht_registry.h"
#include "registry/peer_record.h"
#include "shard/block_stack.h"
#include "shard/multi_gpu_stack.h"
#include "shard/serving_stack.h"
#include "shard/throughput_probe.h"

namespace swarm::cli {
namespace {

struct ServeFlags {
  std::string model_path;
  std::string blocks;
  int64_t num_blocks = 0;
  std::string listen = "tcp://127.0.0.1:0";
  std::string public_host;
  int64_t cache_tokens = 16384;
  int64_t max_length = 2048;
  int64_t idle_timeout_s = 300;
  kernels::BackendOptions backend;
  std::string peer_id;
  // Discovery.
  bool no_dht = false;
  std::vector<std::string> initial_peers;
  std::string dht_bind = "0.0.0.0";
  int dht_port = 0;
  std::string identity;
  double announce_interval_s = 5;
  double record_ttl_s = 60;
  double rebalance_interval_s = 30;
  double rtt_interval_s = 10;
  std::string throughput_cache;
  bool hold_joining = false;
  CacheTypeFlags cache_types;
};

// Leaving: how long the offline record may wait for acknowledgement, and the DHT node for
// handing its stored values over. Both keep spreading after we stop waiting; records of peers
// that stay are refreshed by their owners anyway.
constexpr absl::Duration kWithdrawWait = absl::Milliseconds(300);
constexpr absl::Duration kDhtShutdownWait = absl::Milliseconds(200);

sigset_t StopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);  // SignalWatcher's own wake-up at destruction
  sigaddset(&signals, SIGUSR2);  // ends --hold-joining
  return signals;
}

// Blocked before any thread starts (ZeroMQ's and OpenDHT's included), so that only the
// SignalWatcher's thread receives them.
void BlockStopSignals() {
  const sigset_t signals = StopSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

// Why the serving loop ended, shared between the signal thread, the announcer and main.
class StopReason {
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
  // --hold-joining: Release() (SIGUSR2) lets the peer load its blocks.
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

// Waits for SIGINT/SIGTERM on its own thread and requests shutdown; no signal handler runs.
// SIGUSR2 releases --hold-joining.
class SignalWatcher {
 public:
  SignalWatcher(StopReason& reason, std::function<void()> on_signal)
      : signals_(StopSignals()), on_signal_(std::move(on_signal)) {
    waiter_ = std::thread([this, &reason] {
      while (true) {
        int signal = 0;
        sigwait(&signals_, &signal);
        if (signal == SIGUSR1) return;
        if (signal == SIGUSR2) {
          reason.Release();
          continue;
        }
        reason.Shutdown();
        on_signal_();
        return;
      }
    });
  }
  ~SignalWatcher() {
    pthread_kill(waiter_.native_handle(), SIGUSR1);
    waiter_.join();
  }

 private:
  sigset_t signals_;
  std::function<void()> on_signal_;
  std::thread waiter_;
};

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

std::string DefaultCacheDirectory() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
    return absl::StrCat(xdg, "/swarm");
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return absl::StrCat(home, "/.cache/swarm");
  }
  return "";
}

// Where measured throughput is cached, and under which key (model, backend, threads, span).
std::string ThroughputDirectory(const ServeFlags& flags) {
  return flags.throughput_cache.empty() ? DefaultCacheDirectory() : flags.throughput_cache;
}
std::string ThroughputKey(const ServeFlags& flags, const model::ModelConfig& config,
                          const std::string& backend_name, int64_t n_blocks) {
  return absl::StrCat(config.model_id, "-", backend_name, "-t", flags.backend.threads, "-b",
                      n_blocks);
}

// What an earlier run measured for this span, if anything (announced while joining).
shard::Throughput CachedThroughput(const ServeFlags& flags, const model::ModelConfig& config,
                                   const std::string& backend_name, int64_t n_blocks) {
  const std::string directory = ThroughputDirectory(flags);
  if (directory.empty()) return {};
  auto cached =
      shard::LoadCachedThroughput(directory, ThroughputKey(flags, config, backend_name, n_blocks));
  return cached.ok() ? *cached : shard::Throughput{};
}

absl::StatusOr<shard::Throughput> Throughput(shard::ServingStack& stack, const ServeFlags& flags,
                                             const model::ModelConfig& config,
                                             const std::string& backend_name) {
  const std::string directory = ThroughputDirectory(flags);
  const std::string key = ThroughputKey(flags, config, backend_name, stack.n_blocks());
  if (!directory.empty()) {
    auto cached = shard::LoadCachedThroughput(directory, key);
    if (cached.ok()) return cached;
  }
  SWARM_ASSIGN_OR_RETURN(auto measured, shard::MeasureThroughput(stack));
  if (!directory.empty()) (void)shard::StoreCachedThroughput(directory, key, measured);
  return measured;
}

registry::PeerRecord MakeRecord(const std::string& address, const model::ModelConfig& config,
                                registry::BlockRange blocks, registry::PeerState state,
                                const shard::Throughput& throughput, int64_t free_tokens,
                                int64_t total_tokens, int64_t sessions) {
  registry::PeerRecord record;
  record.address = address;
  record.model_id = config.model_id;
  record.blocks = blocks;
  record.state = state;
  record.decode_tps_per_block = throughput.decode_tps_per_block;
  record.prompt_tps_per_block = throughput.prompt_tps_per_block;
  record.free_cache_tokens = free_tokens;
  record.total_cache_tokens = total_tokens;
  record.active_sessions = static_cast<int32_t>(sessions);
  return record;
}

// Round trips to the peers of the next blocks: written by the measuring thread, read by the
// announcer.
class RttTable {
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

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1e3));
}

// Binds the peer's ROUTER. After a move the old socket's port is released by ZeroMQ's I/O thread
// asynchronously, so binding it again at once can fail with EADDRINUSE: `rebinding` retries.
absl::StatusOr<std::unique_ptr<transport::RouterServer>> BindRouter(zmq::context_t& context,
                                                                    const std::string& listen,
                                                                    bool rebinding) {
  auto bound = transport::RouterServer::Bind(context, listen);
  for (int attempt = 0; rebinding && !bound.ok() && attempt < 50 &&
                        absl::StrContains(bound.status().message(), "Address already in use");
       ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    bound = transport::RouterServer::Bind(context, listen);
  }
  return bound;
}

// One backend per device of --device, in block order.
absl::StatusOr<std::vector<std::unique_ptr<kernels::Backend>>> MakeBackends(
    const ServeFlags& flags) {
  SWARM_ASSIGN_OR_RETURN(auto devices, ParseDeviceList(flags.backend.name));
  std::vector<std::unique_ptr<kernels::Backend>> backends;
  for (const std::string& device : devices) {
    kernels::BackendOptions options = flags.backend;
    options.name = device;
    SWARM_ASSIGN_OR_RETURN(auto backend, kernels::MakeBackend(options));
    backends.push_back(std::move(backend));
  }
  return backends;
}

// Blocks [first, last) on one backend, or spread over several. A single GPU also gets a
// MultiGpuStack (of one segment): it replays decode steps as CUDA graphs, which BlockStack does
// not.
absl::StatusOr<std::unique_ptr<shard::ServingStack>> MakeStack(
    const std::vector<std::unique_ptr<kernels::Backend>>& backends,
    const model::ModelConfig& config, const std::vector<model::BlockWeights>& weights,
    kernels::KvTypes kv_types) {
  if (backends.size() == 1 && backends[0]->host_memory()) {
    SWARM_ASSIGN_OR_RETURN(auto stack,
                           shard::BlockStack::Create(*backends[0], config, weights, kv_types));
    return std::unique_ptr<shard::ServingStack>(std::move(stack));
  }
  std::vector<kernels::Backend*> raw;
  for (const auto& backend : backends) raw.push_back(backend.get());
  shard::MultiGpuOptions options;
  options.kv_types = kv_types;
  SWARM_ASSIGN_OR_RETURN(auto stack, shard::MultiGpuStack::Create(raw, config, weights, options));
  return std::unique_ptr<shard::ServingStack>(std::move(stack));
}

// Which device runs which blocks, for the log: "backend cpu-avx2", "backend cuda:0 (decode steps
// replayed as CUDA graphs)", or "devices cuda:0,cuda:1 ([0, 3) on cuda:0, [3, 5) on cuda:1,
// activations by NCCL)".
std::string Placement(const shard::ServingStack& stack) {
  const auto* multi = dynamic_cast<const shard::MultiGpuStack*>(&stack);
  if (multi == nullptr) return absl::StrCat("backend ", stack.devices());
  if (multi->n_segments() == 1) {
    return absl::StrCat("backend ", stack.devices(), " (decode steps replayed as CUDA graphs)");
  }
  const std::vector<std::string> names = absl::StrSplit(stack.devices(), ',');
  std::string placement = absl::StrCat("devices ", stack.devices(), " (");
  for (int i = 0; i < multi->n_segments(); ++i) {
    const auto [first, last] = multi->segment_blocks(i);
    absl::StrAppend(&placement, "[", first, ", ", last, ") on ", names[i], ", ");
  }
  absl::StrAppend(&placement, "activations by ", multi->uses_nccl() ? "NCCL" : "host memory", ")");
  return placement;
}

absl::Status Serve(const ServeFlags& flags) {
  BlockStopSignals();
  SWARM_ASSIGN_OR_RETURN(auto file, model::GgufFile::Open(flags.model_path));
  SWARM_ASSIGN_OR_RETURN(auto config, model::ReadModelConfig(*file));
  SWARM_ASSIGN_OR_RETURN(auto backends, MakeBackends(flags));
  std::vector<std::string> names;
  for (const auto& backend : backends) names.push_back(backend->name());
  const std::string devices = absl::StrJoin(names, ",");  // as ServingStack::devices()
  const int64_t n_devices = static_cast<int64_t>(backends.size());

  StopReason stop;
  std::mutex server_mu;
  peer::PeerServer* running_server = nullptr;  // guarded by server_mu
  auto stop_server = [&] {
    std::lock_guard lock(server_mu);
    if (running_server != nullptr) running_server->Stop();
  };
  SignalWatcher watcher(stop, stop_server);

  std::unique_ptr<registry::DhtRegistry> registry;
  if (!flags.no_dht) {
    registry::DhtRegistryOptions dht;
    dht.bind_address = flags.dht_bind;
    dht.port = static_cast<uint16_t>(flags.dht_port);
    dht.initial_peers = flags.initial_peers;
    dht.identity_path = flags.identity;
    dht.record_ttl = absl::Milliseconds(static_cast<int64_t>(flags.record_ttl_s * 1e3));
    dht.refresh_interval = absl::Milliseconds(
        static_cast<int64_t>(std::min(flags.announce_interval_s, flags.record_ttl_s / 2) * 1e3));
    dht.shutdown_timeout = kDhtShutdownWait;
    SWARM_ASSIGN_OR_RETURN(registry, registry::DhtRegistry::Create(dht));
  }
  const std::string peer_id = registry ? registry->peer_id().ToHex() : flags.peer_id;

  // The blocks: given, or chosen where the swarm is weakest.
  std::pair<int64_t, int64_t> range = {0, config.n_layer};
  if (!flags.blocks.empty()) {
    SWARM_ASSIGN_OR_RETURN(range, ParseBlockRange(flags.blocks, config.n_layer));
  } else if (flags.num_blocks > 0) {
    registry::RegistrySnapshot snapshot;
    if (registry) {
      auto read = registry->Snapshot(config.model_id);
      if (read.ok()) snapshot = std::move(*read);
    }
    SWARM_ASSIGN_OR_RETURN(auto chosen,
                           peer::ChooseBlocks(snapshot, config.n_layer, flags.num_blocks, 0));
    range = {chosen.first, chosen.last};
  }
  if (const int64_t n_blocks = range.second - range.first; n_devices > n_blocks) {
    return absl::InvalidArgumentError(absl::StrCat(
        n_devices, " devices for blocks [", range.first, ", ", range.second, "), ", n_blocks,
        n_blocks == 1 ? " block" : " blocks", ": each device needs at least one block"));
  }

  std::string listen = flags.listen;
  zmq::context_t context(1);
  RttTable rtts;
  while (true) {
    const registry::BlockRange blocks{static_cast<int32_t>(range.first),
                                      static_cast<int32_t>(range.second)};
    // Bound first, so the joining record has the address the peer will serve at (a move rebinds
    // the same port).
    SWARM_ASSIGN_OR_RETURN(auto router, BindRouter(context, listen, listen != flags.listen));
    listen = router->endpoint();
    const std::string address = PublicAddress(listen, flags.public_host);
    // --cache-tokens is memory (an f32 cache's worth of positions): in this peer's cache types
    // the same bytes hold budget.tokens positions, which sessions reserve and the record shows.
    const peer::CacheBudget budget = peer::CacheBudgetFor(
        flags.cache_tokens, range.second - range.first, config.kv_dim(), flags.cache_types.Types());
    if (registry) {
      // Joining: placement counts this peer (with what an earlier run measured, if anything);
      // routes leave it out until it is online. Unavailable for a lone node: harmless.
      (void)registry->Announce(MakeRecord(address, config, blocks, registry::PeerState::kJoining,
                                          CachedThroughput(flags, config, devices, blocks.size()),
                                          budget.tokens, budget.tokens, 0));
    }
    if (flags.hold_joining) {
      std::fprintf(stderr, "serve: joining blocks [%d, %d), held until SIGUSR2\n", blocks.first,
                   blocks.last);
      stop.WaitForReleaseOrShutdown();
    }
    if (stop.shutdown()) break;

    SWARM_ASSIGN_OR_RETURN(auto weights,
                           model::LoadBlockWeights(*file, config, range.first, range.second));
    SWARM_ASSIGN_OR_RETURN(auto stack,
                           MakeStack(backends, config, weights, flags.cache_types.Types()));
    SWARM_ASSIGN_OR_RETURN(auto throughput, Throughput(*stack, flags, config, devices));

    peer::PeerServerOptions options;
    options.model_id = config.model_id;
    options.peer_id = peer_id;
    options.limits.cache_tokens = budget.tokens;
    options.limits.max_session_length = flags.max_length;
    options.limits.idle_timeout = std::chrono::seconds(flags.idle_timeout_s);
    options.forward_tokens_per_sec = throughput.prompt_tps_per_block / stack->n_blocks();
    options.inference_steps_per_sec = throughput.decode_tps_per_block / stack->n_blocks();
    std::unique_ptr<peer::PeerServer> server =
        peer::PeerServer::Create(context, *stack, options, std::move(router));
    {
      std::lock_guard lock(server_mu);
      running_server = server.get();
    }
    if (stop.shutdown()) break;
    // The log line first: whoever reads "listening on" finds it in the log already.
    std::fprintf(stderr,
                 "serve: model %s, blocks [%lld, %lld) of %lld, %s, cache %lld tokens (%s, "
                 "%.1f MiB), %.0f decode / %.0f prompt tokens/s per block\n",
                 config.model_id.c_str(), static_cast<long long>(range.first),
                 static_cast<long long>(range.second), static_cast<long long>(config.n_layer),
                 Placement(*stack).c_str(), static_cast<long long>(budget.tokens),
                 kernels::KvTypesText(flags.cache_types.Types()).c_str(),
                 static_cast<double>(budget.bytes) / (1 << 20), throughput.decode_tps_per_block,
                 throughput.prompt_tps_per_block);
    // The first line of stdout says where the peer listens (scripts and tests read it).
    std::printf("listening on %s blocks %lld:%lld peer %s dht %d\n", server->endpoint().c_str(),
                static_cast<long long>(range.first), static_cast<long long>(range.second),
                peer_id.c_str(), registry ? registry->port() : 0);
    std::fflush(stdout);

    // Measure round trips to the peers a chain would push to next (none after the last block).
    std::thread measurer;
    if (registry && blocks.last < config.n_layer) {
      measurer = std::thread([&] {
        peer::RttProber prober(context, peer::RttProbeOptions{});
        registry::PeerRecord me;
        me.peer_id = registry->peer_id();
        me.blocks = blocks;
        while (true) {
          auto snapshot = registry->Snapshot(config.model_id);
          if (snapshot.ok()) rtts.Set(prober.Measure(peer::NextPeers(*snapshot, me)));
          if (stop.WaitFor(Millis(flags.rtt_interval_s))) return;
        }
      });
    }
    // Announce while serving; rebalance when placement is automatic.
    std::thread announcer;
    if (registry) {
      announcer = std::thread([&] {
        auto last_rebalance = std::chrono::steady_clock::now();
        while (true) {
          registry::PeerRecord record =
              MakeRecord(address, config, blocks, registry::PeerState::kOnline, throughput,
                         server->free_cache_tokens(), budget.tokens, server->active_sessions());
          record.rtt_ms = rtts.Get();
          (void)registry->Announce(record);  // Unavailable for a lone node: retried next time
          const auto now = std::chrono::steady_clock::now();
          if (flags.num_blocks > 0 && flags.blocks.empty() &&
              now - last_rebalance > Millis(flags.rebalance_interval_s)) {
            last_rebalance = now;
            auto snapshot = registry->Snapshot(config.model_id);
            registry::PeerRecord me = record;
            me.peer_id = registry->peer_id();
            if (snapshot.ok()) {
              if (auto move = peer::ShouldMove(*snapshot, me, config.n_layer)) {
                stop.Move(*move);
                server->Stop();
                return;
              }
            }
          }
          if (stop.WaitFor(Millis(flags.announce_interval_s))) return;
        }
      });
    }
    absl::Status served = server->Run();
    {
      std::lock_guard lock(server_mu);
      running_server = nullptr;
    }
    if (!stop.move_to()) {
      stop.Shutdown();  // the loop may have ended on its own: wake the other threads
      // Leaving: DHT operations in flight in those threads give up now.
      if (registry) registry->Interrupt();
    }
    if (announcer.joinable()) announcer.join();
    if (measurer.joinable()) measurer.join();
    const peer::PeerServerStats& s = server->stats();
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
    range = {move->first, move->last};
    rtts.Set({});
    stop.Reset();
  }
  if (registry) {
    // Offline, then leave the DHT, each within its bound: the time from SIGTERM to exit.
    const auto leaving = std::chrono::steady_clock::now();
    registry->Interrupt();
    const absl::Status withdrawn = registry->Withdraw(kWithdrawWait);
    const auto withdrawn_at = std::chrono::steady_clock::now();
    registry.reset();
    const auto left = std::chrono::steady_clock::now();
    std::fprintf(stderr, "serve: left the swarm in %.3f s (offline record %.3f s%s, DHT %.3f s)\n",
                 std::chrono::duration<double>(left - leaving).count(),
                 std::chrono::duration<double>(withdrawn_at - leaving).count(),
                 withdrawn.ok() ? "" : ", not acknowledged",
                 std::chrono::duration<double>(left - withdrawn_at).count());
  }
  return absl::OkStatus();
}

}  // namespace

void AddServeCommand(CLI::App& app, ExitCode& exit_code) {
  auto flags = std::make_shared<ServeFlags>();
  CLI::App* cmd = app.add_subcommand("serve", "Host a range of a model's blocks for the swarm");
  cmd->footer(
      "Examples:\n"
      "  swarm serve -m stories260K.gguf --num-blocks 2                # start a new swarm\n"
      "  swarm serve -m stories260K.gguf --num-blocks 2 --initial-peers 127.0.0.1:4000\n"
      "  swarm serve -m part.gguf --blocks 3:5 --listen tcp://0.0.0.0:31337 --no-dht\n"
      "  swarm serve -m model.gguf --blocks 0:32 --device cuda:0,cuda:1   # 16 blocks per GPU");
  cmd->add_option("-m,--model", flags->model_path, "Model GGUF file (whole model or a slice)")
      ->required();
  auto* blocks =
      cmd->add_option("--blocks", flags->blocks, "Blocks to serve, A:B (A inclusive, B exclusive)");
  cmd->add_option("--num-blocks", flags->num_blocks,
                  "Serve this many blocks where the swarm is weakest (and move when useful)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 16))
      ->excludes(blocks);
  cmd->add_option("--listen", flags->listen, "ZeroMQ endpoint to bind (port 0: any free port)")
      ->capture_default_str();
  cmd->add_option("--public-host", flags->public_host,
                  "Host others reach this peer at (default: the --listen host)");
  cmd->add_option("--cache-tokens", flags->cache_tokens,
                  "KV-cache budget, all sessions: the memory this many tokens take in an f32 "
                  "cache (an f16 cache holds twice the tokens in it, q8_0 about 3.8 times)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  AddCacheTypeFlags(*cmd, flags->cache_types);
  cmd->add_option("--max-length", flags->max_length, "Longest session in tokens")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  cmd->add_option("--idle-timeout", flags->idle_timeout_s, "Seconds before an idle session ends")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{86400}));
  cmd->add_option("--backend,--device", flags->backend.name,
                  "Backend, alias --device: auto (GPU 0 if usable, else cpu), cpu, cpu:generic, "
                  "cpu:avx2, cpu:avx512, reference, cuda (= cuda:0), cuda:N; or several, "
                  "comma-separated, to spread the blocks over them (cuda:0,cuda:1 or cuda:0,1)")
      ->capture_default_str();
  cmd->add_option("-t,--threads", flags->backend.threads,
                  "CPU threads, per CPU device (0 = physical cores)");
  cmd->add_option("--peer-id", flags->peer_id, "Name reported with --no-dht (else the key's id)");
  cmd->add_flag("--no-dht", flags->no_dht, "Static mode: no DHT node, no announcements");
  cmd->add_option("--initial-peers", flags->initial_peers,
                  "DHT nodes to join (host:port, comma-separated); none: start a new swarm")
      ->delimiter(',');
  cmd->add_option("--dht-bind", flags->dht_bind, "Address of this peer's DHT node")
      ->capture_default_str();
  cmd->add_option("--dht-port", flags->dht_port, "UDP port of the DHT node (0: any free port)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--identity", flags->identity,
                  "Private-key file (created if missing) so the peer keeps its id");
  cmd->add_option("--announce-interval", flags->announce_interval_s,
                  "Seconds between announcements of this peer's record")
      ->capture_default_str()
      ->check(CLI::Range(0.05, 3600.0));
  cmd->add_option("--record-ttl", flags->record_ttl_s, "Seconds a record lives unless refreshed")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 600.0));
  cmd->add_option("--rebalance-interval", flags->rebalance_interval_s,
                  "Seconds between checks whether moving would help the swarm (--num-blocks)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 86400.0));
  cmd->add_option("--rtt-interval", flags->rtt_interval_s,
                  "Seconds between measurements of round trips to the peers of the next blocks")
      ->capture_default_str()
      ->check(CLI::Range(0.05, 3600.0));
  cmd->add_option("--throughput-cache", flags->throughput_cache,
                  "Folder caching measured throughput (default: ~/.cache/swarm)");
  cmd->add_flag("--hold-joining", flags->hold_joining,
                "Announce state joining, then wait for SIGUSR2 before loading (for tests)")
      ->group("");
  cmd->callback([flags, &exit_code] {
    absl::Status status = Serve(*flags);
    if (!status.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
      exit_code.value = 1;
    }
  });
}

}  // namespace swarm::cli
