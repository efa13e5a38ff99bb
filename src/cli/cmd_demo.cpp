// `swarm demo`: a complete swarm on this machine. Reads a layout (configs/demo-stories260k.json),
// finds or downloads the model, starts one `swarm serve` process per block range on loopback,
// generates through them (text streamed to stdout), reports per peer where the time went
// (compute on the peer vs. network and queueing, from the client's per-hop timing and the peers'
// own statistics), then stops the peers with SIGTERM and reaps them. With --serve-only it only
// starts the peers (on one DHT, replicated) and keeps them until it is stopped. The peers are a
// peer::LocalSwarm.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "base/subprocess.h"
#include "cli/block_range_flag.h"
#include "cli/chain_client.h"
#include "cli/commands.h"
#include "cli/draft_flags.h"
#include "cli/swarm_secret_flag.h"
#include "model/generator.h"
#include "model/speculative_generator.h"
#include "nlohmann/json.hpp"
#include "peer/local_swarm.h"
#include "router/chain_session.h"
#include "shard/local_model.h"
#include "shard/speculation.h"
#include "transport/codec.h"
#include "transport/swarm_secret.h"

namespace swarm::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr char kDefaultConfig[] = "configs/demo-stories260k.json";
constexpr char kFetchScript[] = "scripts/fetch-model.sh";
// The model scripts/fetch-model.sh knows (it checks this file's sha256 and can download it).
constexpr char kFetchableModel[] = "stories260K.gguf";

// What a demo layout file holds (see configs/demo-stories260k.json).
struct DemoConfig {
  std::string model = kFetchableModel;  // file name, looked up in the model folders
  std::vector<std::string> blocks;      // one "A:B" per peer, in chain order
  std::string backend = "auto";
  int threads_per_peer = 0;  // 0: the backend's default
  std::string codec = "f32";
  std::string prompt;
  int64_t n_predict = 200;
  model::SamplingParams sampling;
};

struct DemoFlags {
  std::string config_path;
  std::string model_path;
  int peers = 0;  // 0: the config's split
  std::string prompt;
  int64_t n_predict = 0;
  std::string codec;
  float temperature = 0;
  uint64_t seed = 0;
  // Which optional flags were given (they override the config).
  CLI::Option* prompt_opt = nullptr;
  CLI::Option* temp_opt = nullptr;
  CLI::Option* seed_opt = nullptr;
  // --serve-only: start the swarm on one DHT and keep it running.
  bool serve_only = false;
  int replicas = 1;
  int64_t blocks_per_peer = 0;
  std::string log_dir;
  std::string ready_file;
  std::vector<std::string> serve_args;
  // A private swarm: --swarm-secret FILE, or --private (a new secret in the scratch folder).
  bool private_swarm = false;
  std::string swarm_secret;
  shard::SpeculationFlags draft;  // speculative decoding on the client
};

// The demo's private swarm: the secret file every peer gets and the client's CURVE keys.
struct DemoSecret {
  std::string path;
  std::string fingerprint;
  std::optional<transport::CurveClientOptions> client;
};

// --swarm-secret FILE, or with --private a new secret written into `scratch` (removed with it);
// none for an open swarm. Says on stderr what the swarm is.
absl::StatusOr<DemoSecret> PrepareSecret(const DemoFlags& flags, const fs::path& scratch) {
  DemoSecret out;
  if (!flags.private_swarm && flags.swarm_secret.empty()) return out;
  std::optional<transport::SwarmSecret> secret;
  if (!flags.swarm_secret.empty()) {
    SWARM_ASSIGN_OR_RETURN(secret, LoadSwarmSecretFlag(flags.swarm_secret));
    out.path = flags.swarm_secret;
  } else {
    SWARM_ASSIGN_OR_RETURN(secret, transport::SwarmSecret::Generate());
    out.path = (scratch / "swarm.secret").string();
    // The scratch folder is the demo's own: an earlier demo's secret there is replaced.
    SWARM_RETURN_IF_ERROR(secret->Save(out.path, /*overwrite=*/true));
  }
  SWARM_ASSIGN_OR_RETURN(auto keys, transport::DeriveCurveKeys(*secret));
  out.client = transport::SwarmCurveClient(keys);
  out.fingerprint = secret->Fingerprint();
  std::fprintf(stderr,
               "demo: private swarm, secret %s (fingerprint %s%s): every peer admits only holders "
               "of the secret, over CurveZMQ (encrypted, authenticated); their DHT is the swarm's "
               "own and its records sealed\n",
               out.path.c_str(), out.fingerprint.c_str(),
               flags.swarm_secret.empty() ? ", made for this demo" : "");
  return out;
}

absl::Status ConfigError(const std::string& origin, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(origin, ": ", what));
}

// Strict reading of the layout: unknown keys and wrong types are errors, so a typo never
// silently falls back to a default.
absl::StatusOr<DemoConfig> ParseDemoConfig(const std::string& text, const std::string& origin) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    return ConfigError(origin, absl::StrCat("not valid JSON: ", e.what()));
  }
  if (!doc.is_object()) return ConfigError(origin, "the top level must be an object");
  static const std::set<std::string> kKeys = {"description",      "model", "peers",  "backend",
                                              "threads_per_peer", "codec", "prompt", "n_predict",
                                              "sampling"};
  for (const auto& [key, value] : doc.items()) {
    if (!kKeys.contains(key)) return ConfigError(origin, absl::StrCat("unknown key \"", key, "\""));
  }
  DemoConfig config;
  auto get_string = [&](const char* key, std::string& out) -> absl::Status {
    if (!doc.contains(key)) return absl::OkStatus();
    if (!doc[key].is_string()) return ConfigError(origin, absl::StrCat(key, " must be a string"));
    out = doc[key].get<std::string>();
    return absl::OkStatus();
  };
  SWARM_RETURN_IF_ERROR(get_string("model", config.model));
  SWARM_RETURN_IF_ERROR(get_string("backend", config.backend));
  SWARM_RETURN_IF_ERROR(get_string("codec", config.codec));
  SWARM_RETURN_IF_ERROR(get_string("prompt", config.prompt));
  if (config.model.empty() || config.model.find('/') != std::string::npos) {
    return ConfigError(origin, "model must be a file name (looked up in the model folders)");
  }
  if (doc.contains("threads_per_peer")) {
    const json& v = doc["threads_per_peer"];
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 1024) {
      return ConfigError(origin, "threads_per_peer must be an integer in [0, 1024]");
    }
    config.threads_per_peer = v.get<int>();
  }
  if (doc.contains("n_predict")) {
    const json& v = doc["n_predict"];
    if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > (1 << 20)) {
      return ConfigError(origin, "n_predict must be an integer in [1, 1048576]");
    }
    config.n_predict = v.get<int64_t>();
  }
  if (!doc.contains("peers") || !doc["peers"].is_array() || doc["peers"].empty()) {
    return ConfigError(origin, "peers must be a non-empty array of {\"blocks\": \"A:B\"}");
  }
  if (doc["peers"].size() > 64) return ConfigError(origin, "at most 64 peers");
  for (const json& peer : doc["peers"]) {
    if (!peer.is_object() || peer.size() != 1 || !peer.contains("blocks") ||
        !peer["blocks"].is_string()) {
      return ConfigError(origin, "each peer must be {\"blocks\": \"A:B\"}");
    }
    config.blocks.push_back(peer["blocks"].get<std::string>());
  }
  if (doc.contains("sampling")) {
    const json& s = doc["sampling"];
    if (!s.is_object()) return ConfigError(origin, "sampling must be an object");
    for (const auto& [key, value] : s.items()) {
      model::SamplingParams& p = config.sampling;
      const bool number = value.is_number();
      const bool integer = value.is_number_integer();
      if (key == "temperature" && number) {
        p.temperature = value.get<float>();
      } else if (key == "top_k" && integer) {
        p.top_k = value.get<int32_t>();
      } else if (key == "top_p" && number) {
        p.top_p = value.get<float>();
      } else if (key == "min_p" && number) {
        p.min_p = value.get<float>();
      } else if (key == "repeat_penalty" && number) {
        p.repeat_penalty = value.get<float>();
      } else if (key == "repeat_last_n" && integer) {
        p.repeat_last_n = value.get<int32_t>();
      } else if (key == "seed" && value.is_number_unsigned()) {
        p.seed = value.get<uint64_t>();
      } else {
        return ConfigError(origin, absl::StrCat("sampling.", key,
                                                " is unknown or has the wrong type (temperature, "
                                                "top_k, top_p, min_p, repeat_penalty, "
                                                "repeat_last_n, seed)"));
      }
    }
  }
  if (auto status = config.sampling.Validate(); !status.ok()) {
    return ConfigError(origin, std::string(status.message()));
  }
  if (auto codec = transport::ParseCodec(config.codec); !codec.ok()) {
    return ConfigError(origin, std::string(codec.status().message()));
  }
  return config;
}

absl::StatusOr<std::string> ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The repository this binary was built from: the first of the working directory and the
// executable's ancestors that holds the default layout. Empty when there is none (an installed
// binary); then --config and -m are needed.
fs::path FindRepositoryRoot(const fs::path& exe) {
  std::error_code error;
  const fs::path cwd = fs::current_path(error);
  if (!error && fs::exists(cwd / kDefaultConfig, error)) return cwd;
  for (fs::path dir = exe.parent_path(); !dir.empty(); dir = dir.parent_path()) {
    if (fs::exists(dir / kDefaultConfig, error)) return dir;
    if (dir == dir.root_path()) break;
  }
  return {};
}

// The model: -m, else the lookup of scripts/fetch-model.sh (which checks the sha256 and downloads
// what it cannot find), else the same folders without a checksum for models the script does not
// know.
absl::StatusOr<std::string> ResolveModel(const DemoFlags& flags, const DemoConfig& config,
                                         const fs::path& root) {
  if (!flags.model_path.empty()) return flags.model_path;
  std::error_code error;
  const fs::path script = root / kFetchScript;
  if (config.model == kFetchableModel && !root.empty() && fs::exists(script, error)) {
    Subprocess::Options options;
    options.argv = {"/bin/bash", script.string(), (root / "models").string()};
    SWARM_ASSIGN_OR_RETURN(auto process, Subprocess::Start(options));  // its stderr is the user's
    SWARM_ASSIGN_OR_RETURN(std::string out, process->ReadAll(std::chrono::minutes(5)));
    SWARM_ASSIGN_OR_RETURN(int code, process->Wait(std::chrono::seconds(10)));
    std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipWhitespace());
    if (code != 0 || lines.empty()) {
      return absl::NotFoundError(absl::StrCat(script.string(), " could not provide ", config.model,
                                              " (see above); pass -m FILE"));
    }
    return lines.back();
  }
  std::vector<fs::path> folders;
  if (const char* dir = std::getenv("SWARM_MODEL_DIR"); dir != nullptr) folders.push_back(dir);
  if (!root.empty()) {
    folders.push_back(root / ".." / "shared" / "models");
    folders.push_back(root / "models");
  }
  folders.push_back("models");
  for (const fs::path& folder : folders) {
    if (fs::is_regular_file(folder / config.model, error)) return (folder / config.model).string();
  }
  return absl::NotFoundError(absl::StrCat("cannot find ", config.model, "; pass -m FILE"));
}

// One `swarm serve` process of the demo, as the report needs it (the process itself belongs to
// the demo's peer::LocalSwarm, in the same order).
struct DemoPeer {
  int64_t first = 0;
  int64_t last = 0;
  std::string address;
  // From its "serve: stopped after ..." line.
  bool have_stats = false;
  long long steps = 0, tokens = 0, batches = 0, errors = 0;
  double compute_seconds = 0;
};

std::string Tail(const fs::path& log, size_t max_bytes = 2000) {
  auto text = ReadText(log);
  if (!text.ok()) return "";
  return text->size() > max_bytes ? text->substr(text->size() - max_bytes) : *text;
}

// Starts every peer at once, then waits for each one's ready line.
absl::Status StartPeers(const std::string& model_path, const DemoConfig& config, int64_t max_length,
                        const DemoSecret& secret, peer::LocalSwarm& swarm,
                        std::vector<DemoPeer>& peers) {
  std::vector<std::vector<std::string>> args;
  for (size_t i = 0; i < peers.size(); ++i) {
    const DemoPeer& peer = peers[i];
    args.push_back({"-m", model_path, "--blocks", absl::StrCat(peer.first, ":", peer.last),
                    "--listen", "tcp://127.0.0.1:0", "--backend", config.backend, "--max-length",
                    std::to_string(max_length), "--cache-tokens",
                    std::to_string(std::max<int64_t>(max_length, 4096)), "--peer-id",
                    absl::StrCat("demo-peer-", i)});
    if (config.threads_per_peer > 0) {
      args.back().insert(args.back().end(), {"--threads", std::to_string(config.threads_per_peer)});
    }
    if (!secret.path.empty())
      args.back().insert(args.back().end(), {"--swarm-secret", secret.path});
  }
  SWARM_RETURN_IF_ERROR(swarm.StartAll(args));
  for (size_t i = 0; i < peers.size(); ++i) peers[i].address = swarm.peer(i).ready.address;
  return absl::OkStatus();
}

// SIGTERM, reap, and read the statistics line each peer prints when it stops.
void StopPeers(peer::LocalSwarm& swarm, std::vector<DemoPeer>& peers) {
  for (peer::LocalPeer& peer : swarm.peers()) {
    if (peer.alive()) (void)peer.process->Signal(SIGTERM);
  }
  for (size_t i = 0; i < swarm.size() && i < peers.size(); ++i) {
    peer::LocalPeer& process = swarm.peer(i);
    DemoPeer& peer = peers[i];
    if (process.process == nullptr) continue;
    auto code = process.process->Wait(std::chrono::seconds(10));
    if (!code.ok()) {
      std::fprintf(stderr, "demo: peer %zu did not stop within 10 s; killing it\n", i);
      process.process.reset();  // SIGKILL and reap
      continue;
    }
    if (*code != 0) {
      std::fprintf(stderr, "demo: peer %zu exited with status %d:\n%s\n", i, *code,
                   Tail(process.log_path).c_str());
    }
    auto log = ReadText(process.log_path);
    if (!log.ok()) continue;
    for (absl::string_view line : absl::StrSplit(*log, '\n')) {
      const std::string text(line);
      if (std::sscanf(text.c_str(),
                      "serve: stopped after %lld steps (%lld tokens) in %lld batches, %lf s "
                      "computing, %lld errors sent",
                      &peer.steps, &peer.tokens, &peer.batches, &peer.compute_seconds,
                      &peer.errors) == 5) {
        peer.have_stats = true;
      }
    }
  }
}

// Cancels generation on SIGINT/SIGTERM (checked between tokens), so the peers are still stopped
// and reaped. The signals must be blocked before any thread starts (so only this one takes them).
class CancelOnSignal {
 public:
  CancelOnSignal() {
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    sigaddset(&signals_, SIGUSR1);  // our own wake-up at destruction
    pthread_sigmask(SIG_BLOCK, &signals_, &previous_);
    waiter_ = std::thread([this] {
      int signal = 0;
      sigwait(&signals_, &signal);
      if (signal != SIGUSR1) cancelled_.store(true);
    });
  }
  ~CancelOnSignal() {
    pthread_kill(waiter_.native_handle(), SIGUSR1);
    waiter_.join();
    pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }
  bool cancelled() const { return cancelled_.load(); }

 private:
  sigset_t signals_;
  sigset_t previous_;
  std::atomic<bool> cancelled_{false};
  std::thread waiter_;
};

// Removes the peers' logs on every way out.
struct TempDir {
  fs::path path;
  ~TempDir() {
    std::error_code error;
    if (!path.empty()) fs::remove_all(path, error);
  }
};

void PrintReport(const std::vector<DemoPeer>& peers, const std::vector<router::HopTiming>& timings,
                 const model::GenerationStats& stats, const std::string& codec,
                 bool private_swarm) {
  const double total = stats.prompt_seconds + stats.generation_seconds;
  double hops_total = 0;
  for (const router::HopTiming& t : timings) hops_total += t.seconds;
  std::fprintf(
      stderr,
      "\ndemo: prompt %lld tokens in %.1f ms; %lld tokens generated in %.3f s "
      "(%.1f tokens/s) through %zu peers, codec %s%s\n",
      static_cast<long long>(stats.prompt_tokens), 1e3 * stats.prompt_seconds,
      static_cast<long long>(stats.generated_tokens), stats.generation_seconds,
      stats.generation_seconds > 0 ? (stats.generated_tokens - 1) / stats.generation_seconds : 0.0,
      peers.size(), codec.c_str(), private_swarm ? ", private swarm (CurveZMQ on every link)" : "");
  std::fprintf(stderr,
               "where the time went, per step (one step = the prompt, then one per token):\n"
               "  %-4s %-7s %-22s %6s %12s %12s %14s\n",
               "peer", "blocks", "address", "steps", "hop ms", "compute ms", "net+queue ms");
  for (size_t i = 0; i < peers.size(); ++i) {
    const DemoPeer& peer = peers[i];
    const router::HopTiming& t = timings[i];
    const double hop_ms = t.steps > 0 ? 1e3 * t.seconds / t.steps : 0;
    const std::string blocks = absl::StrCat(peer.first, ":", peer.last);
    if (peer.have_stats && peer.steps > 0) {
      const double compute_ms = 1e3 * peer.compute_seconds / peer.steps;
      std::fprintf(stderr, "  %-4zu %-7s %-22s %6lld %12.3f %12.3f %14.3f\n", i, blocks.c_str(),
                   peer.address.c_str(), static_cast<long long>(t.steps), hop_ms, compute_ms,
                   std::max(0.0, hop_ms - compute_ms));
    } else {
      std::fprintf(stderr, "  %-4zu %-7s %-22s %6lld %12.3f %12s %14s\n", i, blocks.c_str(),
                   peer.address.c_str(), static_cast<long long>(t.steps), hop_ms, "?", "?");
    }
  }
  const int64_t steps = timings.empty() ? 0 : timings[0].steps;
  if (steps == 0) return;
  // Per hop, what the client sees is blurred by when it wakes up; the sums over the chain are not.
  double compute_total = 0;
  bool all_stats = true;
  for (const DemoPeer& peer : peers) {
    all_stats = all_stats && peer.have_stats && peer.steps > 0;
    if (peer.have_stats && peer.steps > 0) compute_total += peer.compute_seconds / peer.steps;
  }
  const double chain_ms = 1e3 * hops_total / steps;
  if (all_stats) {
    std::fprintf(stderr, "  %-4s %-7s %-22s %6lld %12.3f %12.3f %14.3f\n", "all", "", "",
                 static_cast<long long>(steps), chain_ms, 1e3 * compute_total,
                 std::max(0.0, chain_ms - 1e3 * compute_total));
  }
  std::fprintf(stderr,
               "  client (embedding, LM head, sampling, decoding): %.3f ms per step\n"
               "hop ms: how much later this hop's output reached the client than the earlier "
               "hops' (or the client's send);\ncompute ms: the peer's own forward time; net+queue: "
               "the rest (wire, codecs, waiting).\n",
               1e3 * std::max(0.0, total - hops_total) / steps);
}

// The spans of --serve-only: --blocks-per-peer K blocks each (the last one takes what is left),
// else --peers N / --replicas R even spans, else the layout's.
absl::StatusOr<std::vector<std::pair<int64_t, int64_t>>> ServeOnlySpans(
    const DemoFlags& flags, const DemoConfig& config, const std::string& config_path,
    int64_t n_layer) {
  std::vector<std::pair<int64_t, int64_t>> spans;
  if (flags.peers == 0 && flags.blocks_per_peer == 0) {
    for (const std::string& blocks : config.blocks) {
      auto range = ParseBlockRange(blocks, n_layer);
      if (!range.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(config_path, ": peer blocks: ", range.status().message()));
      }
      spans.push_back({range->first, range->second});
    }
    return spans;
  }
  const int peers = flags.peers > 0 ? flags.peers : static_cast<int>(config.blocks.size());
  if (peers % flags.replicas != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--peers ", peers, " must be a multiple of --replicas ", flags.replicas));
  }
  const int64_t n_spans = peers / flags.replicas;
  for (int64_t s = 0; s < n_spans; ++s) {
    int64_t a = s * n_layer / n_spans, b = (s + 1) * n_layer / n_spans;
    if (flags.blocks_per_peer > 0) {
      a = s * flags.blocks_per_peer;
      b = s == n_spans - 1 ? n_layer : a + flags.blocks_per_peer;
    }
    b = std::min(b, n_layer);
    if (a >= b) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot split ", n_layer, " blocks into ", n_spans, " spans"));
    }
    spans.push_back({a, b});
  }
  if (flags.blocks_per_peer > 0 && n_spans * flags.blocks_per_peer < n_layer) {
    std::fprintf(stderr, "note: the last span takes blocks %lld:%lld (%lld blocks in all)\n",
                 static_cast<long long>(spans.back().first),
                 static_cast<long long>(spans.back().second), static_cast<long long>(n_layer));
  }
  return spans;
}

// --serve-only: every span served by --replicas peers on one DHT (on loopback), started one after
// the other, each joining through the first. Prints each peer's ready line and the bootstrap
// node, writes the same text to --ready-file, then keeps the peers until SIGINT/SIGTERM.
int RunServeOnly(const DemoFlags& flags, const std::string& exe, const std::string& model_path,
                 const std::vector<std::pair<int64_t, int64_t>>& spans,
                 const CancelOnSignal& cancel) {
  TempDir temporary_logs;
  std::string log_dir = flags.log_dir;
  if (log_dir.empty()) {
    char pattern[] = "/tmp/swarm-demo-XXXXXX";
    const char* dir = ::mkdtemp(pattern);
    if (dir == nullptr) {
      std::fprintf(stderr, "error: cannot create a temporary folder for the peers' logs\n");
      return 1;
    }
    temporary_logs.path = log_dir = dir;
  }
  auto secret = PrepareSecret(flags, log_dir);
  if (!secret.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(secret.status().message()).c_str());
    return 1;
  }
  std::vector<std::string> serve_args = {"-m",         model_path, "--listen", "tcp://127.0.0.1:0",
                                         "--dht-bind", "127.0.0.1"};
  if (!secret->path.empty()) serve_args.insert(serve_args.end(), {"--swarm-secret", secret->path});
  peer::LocalSwarm swarm({.binary = exe,
                          .serve_args = serve_args,
                          .log_dir = log_dir,
                          .log_name = "peer",
                          .ready_timeout = std::chrono::seconds(60)});
  std::string text;
  std::string bootstrap;
  for (const auto& [first, last] : spans) {
    for (int r = 0; r < flags.replicas; ++r) {
      std::vector<std::string> args = {"--blocks", absl::StrCat(first, ":", last)};
      if (!bootstrap.empty()) args.insert(args.end(), {"--initial-peers", bootstrap});
      args.insert(args.end(), flags.serve_args.begin(), flags.serve_args.end());
      auto started = swarm.Start(std::move(args));
      if (!started.ok()) {
        std::fprintf(stderr, "error: peer %zu: %s\n", swarm.size() - 1,
                     std::string(started.status().message()).c_str());
        swarm.StopAll(std::chrono::seconds(10));
        return 1;
      }
      if (bootstrap.empty()) bootstrap = swarm.DhtNode(**started);
      const std::string line =
          absl::StrCat("peer ", swarm.size() - 1, ": ", (*started)->ready.Format(), "\n");
      std::fwrite(line.data(), 1, line.size(), stdout);
      std::fflush(stdout);
      text += line;
    }
  }
  std::string last = absl::StrCat("bootstrap ", bootstrap, "\n");
  if (!secret->path.empty()) absl::StrAppend(&last, "secret ", secret->path, "\n");
  std::fwrite(last.data(), 1, last.size(), stdout);
  std::fflush(stdout);
  text += last;
  if (!flags.ready_file.empty()) {
    // Written whole and renamed into place: whoever sees the file sees all of it.
    const std::string partial = flags.ready_file + ".partial";
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    std::error_code error;
    if (!out || (fs::rename(partial, flags.ready_file, error), error)) {
      std::fprintf(stderr, "error: cannot write %s\n", flags.ready_file.c_str());
      swarm.StopAll(std::chrono::seconds(10));
      return 1;
    }
  }
  std::fprintf(stderr, "demo: %zu peers serving; logs in %s; stop with SIGINT or SIGTERM\n",
               swarm.size(), log_dir.c_str());
  while (!cancel.cancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  swarm.StopAll(std::chrono::seconds(10));
  std::fprintf(stderr, "demo: stopped %zu peers\n", swarm.size());
  return 0;
}

int RunDemo(const DemoFlags& flags) {
  auto fail = [](const absl::Status& status) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    return 1;
  };
  std::error_code error;
  const fs::path exe = fs::read_symlink("/proc/self/exe", error);
  if (error) return fail(absl::InternalError("cannot find this executable's path"));
  const fs::path root = FindRepositoryRoot(exe);
  fs::path config_path = flags.config_path;
  if (config_path.empty()) {
    if (root.empty()) {
      return fail(absl::NotFoundError(
          absl::StrCat("cannot find ", kDefaultConfig,
                       " in the working directory or above the binary; pass --config FILE")));
    }
    config_path = root / kDefaultConfig;
  }
  auto text = ReadText(config_path);
  if (!text.ok()) return fail(text.status());
  auto parsed = ParseDemoConfig(*text, config_path.string());
  if (!parsed.ok()) return fail(parsed.status());
  DemoConfig config = std::move(*parsed);
  if (flags.prompt_opt->count() > 0) config.prompt = flags.prompt;
  if (flags.n_predict > 0) config.n_predict = flags.n_predict;
  if (!flags.codec.empty()) config.codec = flags.codec;
  if (flags.temp_opt->count() > 0) config.sampling.temperature = flags.temperature;
  if (flags.seed_opt->count() > 0) config.sampling.seed = flags.seed;
  if (auto status = config.sampling.Validate(); !status.ok()) return fail(status);
  auto codec = transport::ParseCodec(config.codec);
  if (!codec.ok()) return fail(codec.status());

  auto model_path = ResolveModel(flags, config, root);
  if (!model_path.ok()) return fail(model_path.status());
  CancelOnSignal cancel;  // before any thread or peer starts (the fetch script must stay killable)
  // The client holds only the embeddings, output norm, LM head and tokenizer.
  kernels::BackendOptions backend;
  backend.name = config.backend;
  auto local = shard::LocalModel::Load(*model_path, backend, /*load_blocks=*/false);
  if (!local.ok()) return fail(local.status());
  shard::LocalModel& m = **local;
  const int64_t n_layer = m.config.n_layer;
  if (flags.serve_only) {
    auto spans = ServeOnlySpans(flags, config, config_path.string(), n_layer);
    if (!spans.ok()) return fail(spans.status());
    return RunServeOnly(flags, exe.string(), *model_path, *spans, cancel);
  }

  // The split: the config's, or --peers N even ranges.
  std::vector<DemoPeer> peers;
  if (flags.peers > 0) {
    if (flags.peers > n_layer) {
      return fail(absl::InvalidArgumentError(
          absl::StrCat("--peers ", flags.peers, ": the model has only ", n_layer, " blocks")));
    }
    for (int64_t i = 0; i < flags.peers; ++i) {
      DemoPeer peer;
      peer.first = i * n_layer / flags.peers;
      peer.last = (i + 1) * n_layer / flags.peers;
      peers.push_back(std::move(peer));
    }
  } else {
    int64_t expected = 0;
    for (const std::string& blocks : config.blocks) {
      auto range = ParseBlockRange(blocks, n_layer);
      if (!range.ok())
        return fail(absl::InvalidArgumentError(
            absl::StrCat(config_path.string(), ": peer blocks: ", range.status().message())));
      if (range->first != expected) {
        return fail(absl::InvalidArgumentError(
            absl::StrCat(config_path.string(), ": peer blocks ", blocks, " do not start at block ",
                         expected, " (the peers must cover the blocks in order)")));
      }
      expected = range->second;
      DemoPeer peer;
      peer.first = range->first;
      peer.last = range->second;
      peers.push_back(std::move(peer));
    }
    if (expected != n_layer) {
      return fail(absl::InvalidArgumentError(absl::StrCat(
          config_path.string(), ": the peers end at block ", expected, " of ", n_layer)));
    }
  }

  std::vector<int32_t> prompt;
  if (m.tokenizer->add_bos() && m.tokenizer->bos_id() >= 0) prompt.push_back(m.tokenizer->bos_id());
  for (int32_t id : m.tokenizer->Encode(config.prompt, false, false)) prompt.push_back(id);
  if (prompt.empty()) return fail(absl::InvalidArgumentError("the prompt has no tokens"));
  const int64_t max_length = static_cast<int64_t>(prompt.size()) + config.n_predict;
  if (m.config.n_ctx_train > 0 && max_length > m.config.n_ctx_train) {
    return fail(absl::InvalidArgumentError(absl::StrCat("prompt + -n = ", max_length,
                                                        " tokens exceed the model's context of ",
                                                        m.config.n_ctx_train)));
  }

  TempDir logs;
  char pattern[] = "/tmp/swarm-demo-XXXXXX";
  if (const char* dir = ::mkdtemp(pattern); dir != nullptr) {
    logs.path = dir;
  } else {
    return fail(absl::InternalError("cannot create a temporary folder for the peers' logs"));
  }
  auto secret = PrepareSecret(flags, logs.path);
  if (!secret.ok()) return fail(secret.status());
  std::fprintf(stderr, "demo: %s, %lld blocks, split over %zu peers on loopback:\n",
               model_path->c_str(), static_cast<long long>(n_layer), peers.size());
  const auto start_peers = Clock::now();
  peer::LocalSwarm swarm({.binary = exe.string(),
                          .log_dir = logs.path.string(),
                          .log_name = "peer",
                          .ready_timeout = std::chrono::seconds(60)});
  absl::Status started = StartPeers(*model_path, config, max_length, *secret, swarm, peers);
  if (!started.ok()) return fail(started);
  for (size_t i = 0; i < peers.size(); ++i) {
    std::fprintf(stderr, "  peer %zu: blocks %lld:%lld at %s (pid %d)\n", i,
                 static_cast<long long>(peers[i].first), static_cast<long long>(peers[i].last),
                 peers[i].address.c_str(), static_cast<int>(swarm.peer(i).process->pid()));
  }
  std::fprintf(stderr, "  started in %.2f s\n",
               std::chrono::duration<double>(Clock::now() - start_peers).count());

  zmq::context_t context(1);
  router::ChainOptions options;
  options.codec = *codec;
  options.max_length = max_length;
  options.min_step_timeout = std::chrono::seconds(20);
  options.socket.curve = secret->client;
  std::vector<router::ChainHop> hops;
  for (const DemoPeer& peer : peers) {
    hops.push_back(
        {peer.address, static_cast<uint32_t>(peer.first), static_cast<uint32_t>(peer.last), ""});
  }
  auto chain =
      router::ChainSession::Open(context, std::move(hops), n_layer, m.config.n_embd, options);
  if (!chain.ok()) {
    StopPeers(swarm, peers);
    return fail(chain.status());
  }
  std::unique_ptr<model::Drafter> drafter;
  absl::StatusOr<std::unique_ptr<shard::Speculation>> speculation =
      shard::Speculation::Create(flags.draft, *m.tokenizer, backend);
  if (speculation.ok() && *speculation != nullptr) {
    if ((*chain)->Rollback(0).ok()) {
      auto made = (*speculation)->NewDrafter(config.sampling, max_length);
      if (made.ok())
        drafter = std::move(*made);
      else
        speculation = made.status();
    } else {
      std::fprintf(stderr, "demo: the chain cannot roll back: decoding plainly\n");
    }
  }
  if (!speculation.ok()) {
    chain->reset();
    StopPeers(swarm, peers);
    return fail(speculation.status());
  }

  std::fprintf(stderr, "demo: %lld tokens, codec %s, temperature %g, seed %llu\n\n",
               static_cast<long long>(config.n_predict), transport::CodecName(*codec).c_str(),
               config.sampling.temperature, static_cast<unsigned long long>(config.sampling.seed));
  std::fwrite(config.prompt.data(), 1, config.prompt.size(), stdout);
  std::fflush(stdout);
  model::Sampler sampler(config.sampling);
  model::StreamingDecoder decoder(*m.tokenizer, /*at_start=*/config.prompt.empty());
  model::GenerateOptions generate;
  generate.max_new_tokens = config.n_predict;
  auto print = [&](int32_t token) {
    const std::string piece = decoder.Push(token);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return !cancel.cancelled();
  };
  model::SpeculativeStats speculative;
  auto stats =
      drafter != nullptr
          ? model::GenerateSpeculative(prompt, generate, (*speculation)->options(), *m.head,
                                       **chain, sampler, *m.tokenizer, *drafter, print,
                                       &speculative)
          : model::Generate(prompt, generate, *m.head, **chain, sampler, *m.tokenizer, print);
  const std::string tail = decoder.Finish() + "\n";
  std::fwrite(tail.data(), 1, tail.size(), stdout);
  std::fflush(stdout);

  // Close the sessions before the peers stop.
  const std::vector<router::HopTiming> timings = (*chain)->timings();
  const std::string chain_speculation = ChainSpeculationSummary(**chain);
  chain->reset();
  StopPeers(swarm, peers);
  if (!stats.ok()) return fail(stats.status());
  PrintReport(peers, timings, *stats, transport::CodecName(*codec), secret->client.has_value());
  if (drafter != nullptr) {
    std::fprintf(stderr, "%s%s\n", model::SpeculativeSummary(speculative).c_str(),
                 chain_speculation.c_str());
  }
  if (stats->finish_reason == "cancelled") {
    std::fprintf(stderr, "demo: cancelled\n");
    return 130;
  }
  return 0;
}

}  // namespace

void AddDemoCommand(CLI::App& app, ExitCode& exit_code) {
  auto flags = std::make_shared<DemoFlags>();
  CLI::App* cmd = app.add_subcommand(
      "demo", "Start a complete swarm on this machine, generate through it, and show the timing");
  cmd->footer(
      "Reads configs/demo-stories260k.json (peers and their blocks, prompt, sampling), finds the\n"
      "model (../shared/models, ./models, or a checked download via scripts/fetch-model.sh),\n"
      "starts one `swarm serve` per peer on 127.0.0.1, streams the text to stdout and reports on\n"
      "stderr, per peer, compute time against network and queueing time; then stops the peers.\n"
      "Examples:\n"
      "  swarm demo\n"
      "  swarm demo --peers 5 --codec int8 -n 100 --prompt \"The little dog\"\n"
      "  swarm demo --config configs/demo-stories260k-sampled.json\n"
      "  swarm demo --private     # the same behind a new swarm secret\n"
      "  swarm demo --serve-only -m MODEL.gguf --peers 6 --replicas 2 -- --backend cpu");
  cmd->add_option("--config", flags->config_path,
                  "Layout file (default: configs/demo-stories260k.json of this repository)");
  cmd->add_option("-m,--model", flags->model_path, "Model GGUF file (default: the layout's model)");
  cmd->add_option("--peers", flags->peers, "Split the blocks evenly over N peers instead")
      ->check(CLI::Range(1, 64));
  flags->prompt_opt = cmd->add_option("-p,--prompt", flags->prompt, "Prompt (\"\" = BOS alone)");
  cmd->add_option("-n,--n-predict", flags->n_predict, "Tokens to generate")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--codec", flags->codec,
                  "Activation codec on every link: f32, f16, bf16, int8; +zstd to compress");
  flags->temp_opt = cmd->add_option("--temp", flags->temperature, "Temperature; 0 = greedy");
  flags->seed_opt = cmd->add_option("--seed", flags->seed, "Random seed");
  cmd->add_flag("--serve-only", flags->serve_only,
                "Only start the peers, on one DHT, print their ready lines and the bootstrap "
                "node, and keep them until SIGINT/SIGTERM (scripts/local-swarm.sh)");
  cmd->add_option("--replicas", flags->replicas, "With --serve-only: peers per span")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--blocks-per-peer", flags->blocks_per_peer,
                  "With --serve-only: K blocks per span (the last span takes the rest)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--log-dir", flags->log_dir,
                  "With --serve-only: keep the peers' logs in DIR (default: a temporary folder)");
  cmd->add_option("--ready-file", flags->ready_file,
                  "With --serve-only: write what it prints to FILE once every peer serves");
  cmd->add_flag("--private", flags->private_swarm,
                "A private swarm: make a secret in the scratch folder and run the peers and the "
                "generation behind it (CurveZMQ, the swarm's own DHT)");
  AddSwarmSecretFlag(*cmd, flags->swarm_secret);
  cmd->add_option("serve_args", flags->serve_args,
                  "With --serve-only, after --: more `swarm serve` flags for every peer");
  AddDraftFlags(*cmd, flags->draft);
  cmd->callback([flags, &exit_code] {
    const bool serve_only_flags = flags->replicas != 1 || flags->blocks_per_peer != 0 ||
                                  !flags->log_dir.empty() || !flags->ready_file.empty() ||
                                  !flags->serve_args.empty();
    if (!flags->serve_only && serve_only_flags) {
      std::fprintf(stderr,
                   "error: --replicas, --blocks-per-peer, --log-dir, --ready-file and serve "
                   "flags need --serve-only\n");
      exit_code.value = 2;
      return;
    }
    exit_code.value = RunDemo(*flags);
  });
}

}  // namespace swarm::cli
