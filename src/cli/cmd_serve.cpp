// `swarm serve`: a volunteer peer hosting a contiguous range of a model's blocks. This file reads
// the flags, opens the model, makes the backends and configures a peer::PeerNode, which runs the
// peer's life (DHT, announcements, block choice and moves, serving, leaving); it gives the node
// the loading of blocks onto the devices (with several, --device cuda:0,cuda:1, the range is
// spread over them: MultiGpuStack) and their measured throughput, cached between runs.
// SIGTERM/SIGINT make the node leave; they are taken by a thread of their own, not a handler.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/mapped_file.h"
#include "base/status_macros.h"
#include "cli/block_range_flag.h"
#include "cli/cache_type_flags.h"
#include "cli/commands.h"
#include "cli/device_list_flag.h"
#include "cli/model_source.h"
#include "cli/swarm_secret_flag.h"
#include "kernels/backend_factory.h"
#include "model/gguf.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "model/slice.h"
#include "peer/download_progress.h"
#include "peer/peer_node.h"
#include "peer/ready_line.h"
#include "peer/tensor_manifest.h"
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
  ModelSourceFlags source;  // --model-url: fetch only the blocks served
  std::string blocks;
  int64_t num_blocks = 0;
  std::string listen = "tcp://127.0.0.1:0";
  std::string public_host;
  int64_t cache_tokens = 16384;
  int64_t max_length = 2048;
  int64_t idle_timeout_s = 300;
  double unstarted_timeout_s = 30;
  peer::QuotaLimits quotas;
  double queued_mib_per_connection = 4;
  double queued_mib_per_identity = 16;
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
  std::string swarm_secret;
  double relay_mbit = 100;
  std::string reachability = "auto";
};

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

// Waits for SIGINT/SIGTERM on its own thread and stops the node; no signal handler runs.
// SIGUSR2 releases --hold-joining.
class SignalWatcher {
 public:
  explicit SignalWatcher(peer::PeerNode& node) : signals_(StopSignals()) {
    waiter_ = std::thread([this, &node] {
      while (true) {
        int signal = 0;
        sigwait(&signals_, &signal);
        if (signal == SIGUSR1) return;
        if (signal == SIGUSR2) {
          node.ReleaseJoining();
          continue;
        }
        node.Stop();
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
  std::thread waiter_;
};

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

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1e3));
}

// A manifest given with a local file must be that file's (its header's hash): else it would be
// published for others to check their downloads against.
absl::Status CheckManifestHeader(const peer::TensorManifest& manifest, const std::string& path,
                                 const model::GgufFile& file) {
  auto mapped = MappedFile::Open(path);
  if (!mapped.ok()) return mapped.status();
  const auto header = (*mapped)->bytes().subspan(0, file.data_offset());
  if (manifest.file_size != file.file_size() || manifest.header_size != header.size() ||
      manifest.header_hash != peer::HashHex(header)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--manifest is not the manifest of ", path, " (its header differs)"));
  }
  return absl::OkStatus();
}

// With a URL and neither --blocks nor --num-blocks: as many blocks as half this machine's memory
// holds (at least one), placed where the swarm is weakest, rather than the whole model.
int64_t BlocksThatFit(const model::GgufFile& header, int64_t n_layer) {
  uint64_t block_bytes = 0;
  for (const model::GgufTensorInfo& t : header.tensors()) {
    if (model::TensorBlock(t.name) >= 0) block_bytes += t.size;
  }
  const uint64_t per_block = std::max<uint64_t>(1, block_bytes / std::max<int64_t>(1, n_layer));
  const uint64_t memory =
      static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const int64_t fit = static_cast<int64_t>(memory / 2 / per_block);
  return std::clamp<int64_t>(fit, 1, n_layer);
}

absl::Status Serve(const ServeFlags& flags) {
  BlockStopSignals();
  SWARM_ASSIGN_OR_RETURN(auto swarm_secret, LoadSwarmSecretFlag(flags.swarm_secret));
  // A URL: the header now, each block range's tensors when the node has chosen it (load_blocks).
  const std::string url = ModelUrl(flags.source, flags.model_path);
  std::unique_ptr<peer::RemoteModel> remote;
  std::unique_ptr<model::GgufFile> file;
  std::vector<std::unique_ptr<model::GgufFile>> fetched;  // one per load; the stacks read them
  int64_t num_blocks = flags.num_blocks;
  if (url.empty()) {
    if (flags.model_path.empty())
      return absl::InvalidArgumentError("give -m FILE or --model-url URL");
    SWARM_ASSIGN_OR_RETURN(file, model::GgufFile::Open(flags.model_path));
  } else {
    SWARM_ASSIGN_OR_RETURN(remote, OpenRemoteModel(url, flags.source, /*quiet=*/!flags.no_dht));
  }
  // The cache file, not the bare header: the model id reads a few bytes of the embeddings.
  if (remote) {
    SWARM_ASSIGN_OR_RETURN(file, model::GgufFile::Open(remote->local_path()));
  }
  const model::GgufFile& source = *file;
  SWARM_ASSIGN_OR_RETURN(auto config, model::ReadModelConfig(source));
  // The manifest: --manifest; else, downloading, the one the model's peers publish in the DHT;
  // else, serving a whole local file, computed from it. A peer that has one publishes it, so that
  // later volunteers need only the URL and a bootstrap address.
  std::optional<peer::TensorManifest> manifest;
  if (remote) {
    manifest = remote->manifest();
    if (!manifest && !flags.no_dht && !flags.initial_peers.empty()) {
      registry::DhtRegistryOptions dht;
      dht.bind_address = flags.dht_bind;
      dht.initial_peers = flags.initial_peers;
      dht.swarm_secret = swarm_secret;
      SWARM_ASSIGN_OR_RETURN(manifest, ReadManifestFromDht(std::move(dht), config.model_id));
      if (manifest) {
        std::fprintf(stderr, "serve: manifest from the DHT (digest %s)\n",
                     manifest->Digest().c_str());
        SWARM_RETURN_IF_ERROR(remote->SetManifest(*manifest));
      }
    }
    if (!remote->has_manifest() && !flags.no_dht) {
      std::fprintf(stderr,
                   "warning: no manifest for %s (none given, none in the DHT): downloaded tensors "
                   "are not checked (pass --manifest FILE|URL)\n",
                   url.c_str());
    }
  } else if (!flags.source.manifest.empty()) {
    SWARM_ASSIGN_OR_RETURN(manifest, LoadManifest(flags.source.manifest));
    SWARM_RETURN_IF_ERROR(CheckManifestHeader(*manifest, flags.model_path, *file));
  } else if (!flags.no_dht) {
    const auto start = std::chrono::steady_clock::now();
    SWARM_ASSIGN_OR_RETURN(manifest, peer::TensorManifest::Compute(flags.model_path));
    std::fprintf(stderr, "serve: manifest of %s computed in %.1f s (digest %s)\n",
                 flags.model_path.c_str(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                 manifest->Digest().c_str());
  }

  if (remote && num_blocks == 0 && flags.blocks.empty()) {
    num_blocks = BlocksThatFit(source, config.n_layer);
    std::fprintf(stderr,
                 "serve: %lld of %lld blocks fit in half of this machine's memory "
                 "(--num-blocks to choose)\n",
                 static_cast<long long>(num_blocks), static_cast<long long>(config.n_layer));
  }
  SWARM_ASSIGN_OR_RETURN(auto backends, MakeBackends(flags));
  std::vector<std::string> names;
  for (const auto& backend : backends) names.push_back(backend->name());
  const std::string devices = absl::StrJoin(names, ",");  // as ServingStack::devices()

  peer::PeerNodeOptions options;
  options.model_id = config.model_id;
  options.n_layer = config.n_layer;
  if (!flags.blocks.empty()) {
    SWARM_ASSIGN_OR_RETURN(auto range, ParseBlockRange(flags.blocks, config.n_layer));
    options.blocks =
        registry::BlockRange{static_cast<int32_t>(range.first), static_cast<int32_t>(range.second)};
  }
  options.num_blocks = num_blocks;
  options.n_devices = static_cast<int64_t>(backends.size());
  options.listen = flags.listen;
  options.public_host = flags.public_host;
  // --cache-tokens is memory (an f32 cache's worth of positions): the node counts the positions
  // it holds in this peer's cache types over the blocks it serves (peer::CacheBudgetFor).
  options.limits.cache_tokens = flags.cache_tokens;
  options.kv_dim = config.kv_dim();
  options.cache_types = flags.cache_types.Types();
  options.limits.max_session_length = flags.max_length;
  options.limits.idle_timeout = std::chrono::seconds(flags.idle_timeout_s);
  options.limits.unstarted_timeout = Millis(flags.unstarted_timeout_s);
  options.limits.quotas = flags.quotas;
  options.limits.quotas.queued_bytes_per_connection =
      static_cast<int64_t>(flags.queued_mib_per_connection * (1 << 20));
  options.limits.quotas.queued_bytes_per_identity =
      static_cast<int64_t>(flags.queued_mib_per_identity * (1 << 20));
  options.n_embd = config.n_embd;
  options.peer_id = flags.peer_id;
  options.dht = !flags.no_dht;
  options.initial_peers = flags.initial_peers;
  options.dht_bind = flags.dht_bind;
  options.dht_port = static_cast<uint16_t>(flags.dht_port);
  options.identity_path = flags.identity;
  options.relay_mbit = flags.relay_mbit;
  options.reachability = flags.reachability == "public"    ? peer::ReachabilityMode::kPublic
                         : flags.reachability == "relayed" ? peer::ReachabilityMode::kRelayed
                                                           : peer::ReachabilityMode::kAuto;
  options.announce_interval = Millis(flags.announce_interval_s);
  options.record_ttl = Millis(flags.record_ttl_s);
  options.rebalance_interval = Millis(flags.rebalance_interval_s);
  options.rtt_interval = Millis(flags.rtt_interval_s);
  options.hold_joining = flags.hold_joining;
  if (manifest && !flags.no_dht) {
    std::string json = manifest->ToJson(/*compact=*/true);
    if (json.size() <= registry::DhtRegistry::kMaxBlobBytes) {
      options.dht_values.emplace_back(peer::ManifestDhtName(config.model_id), std::move(json));
    } else {
      std::fprintf(stderr,
                   "serve: the manifest (%zu bytes) is too large for the DHT; not published\n",
                   json.size());
    }
  }
  if (swarm_secret) {
    std::fprintf(stderr,
                 "serve: private swarm (secret %s): CurveZMQ on every connection, the swarm's own "
                 "DHT, sealed records\n",
                 swarm_secret->Fingerprint().c_str());
  }
  options.swarm_secret = std::move(swarm_secret);
  options.load_blocks = [&](registry::BlockRange blocks) -> absl::StatusOr<peer::LoadedBlocks> {
    const model::GgufFile* weights_file = file.get();
    if (remote) {  // fetched now: a fresh mapping of the cache file
      SWARM_RETURN_IF_ERROR(remote->FetchBlocks(blocks.first, blocks.last));
      std::fprintf(
          stderr, "serve: blocks [%d, %d) in the cache; %s fetched from %s so far\n", blocks.first,
          blocks.last,
          peer::DownloadProgress::Bytes(static_cast<double>(remote->bytes_downloaded())).c_str(),
          url.c_str());
      SWARM_ASSIGN_OR_RETURN(auto opened, model::GgufFile::Open(remote->local_path()));
      fetched.push_back(std::move(opened));
      weights_file = fetched.back().get();
    }
    SWARM_ASSIGN_OR_RETURN(
        auto weights, model::LoadBlockWeights(*weights_file, config, blocks.first, blocks.last));
    peer::LoadedBlocks loaded;
    SWARM_ASSIGN_OR_RETURN(loaded.stack,
                           MakeStack(backends, config, weights, flags.cache_types.Types()));
    SWARM_ASSIGN_OR_RETURN(loaded.throughput, Throughput(*loaded.stack, flags, config, devices));
    loaded.placement = loaded.stack->Describe();
    return loaded;
  };
  options.cached_throughput = [&](int64_t n_blocks) {
    return CachedThroughput(flags, config, devices, n_blocks);
  };
  options.on_ready = [](const peer::PeerReady& ready) {
    // The first line of stdout says where the peer listens (scripts and tests read it).
    const peer::ReadyLine line{.address = ready.endpoint,
                               .first_block = static_cast<uint32_t>(ready.blocks.first),
                               .last_block = static_cast<uint32_t>(ready.blocks.last),
                               .peer_id = ready.peer_id,
                               .dht_port = static_cast<uint16_t>(ready.dht_port),
                               .reach = ready.reach,
                               .relay_service = ready.relay_service,
                               .via = ready.relay_peer};
    std::printf("%s\n", line.Format().c_str());
    std::fflush(stdout);
  };
  peer::PeerNode node(std::move(options));
  SignalWatcher watcher(node);
  return node.Run();
}

// What one client may take. A connection is one ZeroMQ connection; an identity is the remote IP
// address (or the CURVE key of an authenticated client), which several connections may share.
void AddQuotaFlags(CLI::App& cmd, ServeFlags& flags) {
  const std::string group = "Quotas (per client)";
  cmd.add_option("--unstarted-timeout", flags.unstarted_timeout_s,
                 "Seconds before a session that never got a step ends")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 86400.0))
      ->group(group);
  cmd.add_option("--sessions-per-connection", flags.quotas.sessions_per_connection,
                 "Sessions one connection may hold open")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->group(group);
  cmd.add_option("--sessions-per-identity", flags.quotas.sessions_per_identity,
                 "Sessions one identity (IP address or CURVE key) may hold open")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->group(group);
  cmd.add_option("--cache-share-per-connection", flags.quotas.cache_share_per_connection,
                 "Share of the KV-cache budget one connection may reserve (at least one session "
                 "of --max-length)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0))
      ->group(group);
  cmd.add_option("--cache-share-per-identity", flags.quotas.cache_share_per_identity,
                 "Share of the KV-cache budget one identity may reserve (at least one session of "
                 "--max-length)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0))
      ->group(group);
  cmd.add_option("--queued-mib-per-connection", flags.queued_mib_per_connection,
                 "MiB of steps (decoded) waiting to be computed, per connection; one step is "
                 "always taken")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 65536.0))
      ->group(group);
  cmd.add_option("--queued-mib-per-identity", flags.queued_mib_per_identity,
                 "MiB of steps (decoded) waiting to be computed, per identity")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 65536.0))
      ->group(group);
  cmd.add_option("--queued-steps-per-connection", flags.quotas.queued_steps_per_connection,
                 "Steps waiting to be computed, per connection")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->group(group);
  cmd.add_option("--queued-steps-per-identity", flags.quotas.queued_steps_per_identity,
                 "Steps waiting to be computed, per identity")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->group(group);
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
      "  swarm serve -m model.gguf --blocks 0:32 --device cuda:0,cuda:1   # 16 blocks per GPU\n"
      "  swarm serve -m stories260K.gguf --num-blocks 2 --swarm-secret swarm.secret  # private\n"
      "  swarm serve --model-url http://host/model.gguf --initial-peers HOST:PORT  # fetch only "
      "the blocks served");
  cmd->add_option("-m,--model", flags->model_path,
                  "Model GGUF file (whole model or a slice), or an http:// URL (as --model-url)");
  AddModelSourceFlags(*cmd, flags->source);
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
  AddQuotaFlags(*cmd, *flags);
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
  AddSwarmSecretFlag(*cmd, flags->swarm_secret);
  cmd->add_option("--throughput-cache", flags->throughput_cache,
                  "Folder caching measured throughput (default: ~/.cache/swarm)");
  cmd->add_option("--relay-mbit", flags->relay_mbit,
                  "Bandwidth this peer relays for peers that cannot be reached, when it can be "
                  "(Mbit/s; 0: it does not relay)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  cmd->add_option("--reachability", flags->reachability,
                  "auto: ask other peers to dial back; public / relayed: assume it (for tests)")
      ->check(CLI::IsMember({"auto", "public", "relayed"}))
      ->group("");
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
