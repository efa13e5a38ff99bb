// Generation through a chain of real peer processes against the in-process engine, in one run:
// tokens/s and per-token latency in-process, through N peers on loopback, and through N peers
// behind emulated WAN links (a LinkEmulator in front of every peer, so every transit -- client to
// the first peer, peer to peer, last peer back to the client -- pays the one-way latency and the
// bandwidth). With peer-to-peer push a decode step makes N + 1 transits, so the floor of a step is
// the in-process per-token time plus (N + 1) one-way latencies. Prints one JSON line per setup.
// Every setup is open at once and they take turns token by token (a round: a prompt and
// warmup + n tokens each), so the machine's drift falls on all of them alike. With --private
// every chain setup is measured twice: open (plaintext), and as a private swarm (peers started
// with --swarm-secret, every link CurveZMQ), which prices the encryption.
//
// Usage: chain_bench --swarm build/src/cli/swarm -m MODEL.gguf [--peers 2,4]
//                    [--latency-ms 0,10,50] [--bandwidth-mbit 100] [-n 32] [--warmup 4]
//                    [--codec f32] [-t THREADS] [--prompt "..."] [--rounds 3] [--private]
#include <sched.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "base/subprocess.h"
#include "model/generator.h"
#include "peer/local_swarm.h"
#include "router/chain_session.h"
#include "shard/local_model.h"
#include "shard/local_pipeline.h"
#include "transport/codec.h"
#include "transport/link_emulator.h"
#include "transport/swarm_secret.h"

namespace {

using namespace swarm;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Flags {
  std::string swarm_binary;
  std::string model;
  std::vector<int> peers = {2, 4};
  std::vector<double> latencies_ms = {0, 10, 50};
  double bandwidth_mbit = 100;
  int64_t n_tokens = 32;
  int64_t warmup = 4;
  std::string codec = "f32";
  int threads = 0;
  std::string backend = "auto";
  std::string prompt = "Once upon a time";
  int rounds = 3;
  bool pin_threads = true;
  bool private_swarm = false;  // also measure each chain as a private swarm
};

struct Latency {
  double median_ms = 0, mean_ms = 0, p90_ms = 0, min_ms = 0;
  double prompt_ms = 0;
  std::vector<double> samples_ms;
};

Latency Summarize(std::vector<double> samples, double prompt_ms) {
  Latency l;
  l.samples_ms = samples;
  l.prompt_ms = prompt_ms;
  if (samples.empty()) return l;
  std::sort(samples.begin(), samples.end());
  l.median_ms = samples[samples.size() / 2];
  l.p90_ms = samples[std::min(samples.size() - 1, samples.size() * 9 / 10)];
  l.min_ms = samples.front();
  l.mean_ms = std::accumulate(samples.begin(), samples.end(), 0.0) / samples.size();
  return l;
}

// Greedy decoding one token at a time (no stop at end-of-text: the weights are random), so that
// the setups can take turns token by token. A token's latency is what model::Generate spends
// between two sampled tokens: embed the last token, run the blocks, the head and the sampler.
class Decoder {
 public:
  Decoder(shard::LocalModel& m, model::BlockPipeline& blocks)
      : m_(m), blocks_(blocks), sampler_(Greedy()) {}

  // Runs the prompt through the blocks and samples the first token; returns the milliseconds.
  absl::StatusOr<double> Prompt(const std::vector<int32_t>& prompt) {
    const auto start = Clock::now();
    history_ = prompt;
    hidden_.resize(static_cast<size_t>(m_.config.n_embd) * prompt.size());
    logits_.resize(static_cast<size_t>(m_.config.n_vocab));
    SWARM_RETURN_IF_ERROR(m_.head->Embed(prompt, hidden_.data()));
    SWARM_RETURN_IF_ERROR(Sample(static_cast<int64_t>(prompt.size())));
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  }

  // Decodes one more token; returns its latency in milliseconds.
  absl::StatusOr<double> Step() {
    const auto start = Clock::now();
    const int32_t last = history_.back();
    SWARM_RETURN_IF_ERROR(m_.head->Embed(std::span<const int32_t>(&last, 1), hidden_.data()));
    SWARM_RETURN_IF_ERROR(Sample(1));
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  }
  // Of the last Step: the milliseconds in the blocks (in-process, or the chain's round trip).
  double last_forward_ms() const { return last_forward_ms_; }

 private:
  static model::SamplingParams Greedy() {
    model::SamplingParams params;
    params.temperature = 0;
    return params;
  }
  absl::Status Sample(int64_t n_tokens) {
    // As model::Generate: the head's threads sleep while peers compute.
    if (blocks_.waits_on_peers()) m_.head->ParkThreads();
    const auto start = Clock::now();
    SWARM_RETURN_IF_ERROR(blocks_.Forward(n_tokens, hidden_.data(), hidden_.data()));
    last_forward_ms_ = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    const int64_t n_embd = m_.config.n_embd;
    SWARM_RETURN_IF_ERROR(
        m_.head->Logits(hidden_.data() + (n_tokens - 1) * n_embd, logits_.data()));
    history_.push_back(sampler_.Sample(logits_, history_));
    return absl::OkStatus();
  }

  shard::LocalModel& m_;
  model::BlockPipeline& blocks_;
  model::Sampler sampler_;
  std::vector<int32_t> history_;
  std::vector<float> hidden_, logits_;
  double last_forward_ms_ = 0;
};

json LatencyJson(const Latency& l) {
  return {{"per_token_ms_median", l.median_ms},
          {"per_token_ms_mean", l.mean_ms},
          {"per_token_ms_p90", l.p90_ms},
          {"per_token_ms_min", l.min_ms},
          {"tokens_per_s", l.mean_ms > 0 ? 1e3 / l.mean_ms : 0},
          {"prompt_ms", l.prompt_ms}};
}

// Pins the compute threads of process `pid` one per CPU: its main thread (which drives the backend)
// to cpus[0] and its other threads, the backend's workers, to cpus[1], cpus[2], ... (wrapping);
// ZeroMQ's threads are left alone. Peers on one machine compute one at a time, but the scheduler
// counts an idle peer's recent load against the core it last ran on, and may then stack a busy
// peer's main thread and worker on one core, where the spinning worker and the main thread take
// turns: the chain would measure that placement, not the chain. One peer per machine never meets
// it. The in-process engine is pinned the same way. Returns the number of threads pinned.
int PinComputeThreads(pid_t pid, const std::vector<int>& cpus) {
  if (cpus.size() < 2) return 0;
  int pinned = 0;
  size_t next = 1;
  std::error_code error;
  const std::filesystem::path tasks = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& entry : std::filesystem::directory_iterator(tasks, error)) {
    std::string comm;
    std::getline(std::ifstream(entry.path() / "comm"), comm);
    if (absl::StartsWith(comm, "ZMQbg")) continue;
    const pid_t tid = static_cast<pid_t>(std::stol(entry.path().filename().string()));
    cpu_set_t set;
    CPU_ZERO(&set);
    int cpu = cpus[0];
    if (tid != pid) {
      cpu = cpus[next];
      next = next + 1 < cpus.size() ? next + 1 : 1;
    }
    CPU_SET(cpu, &set);
    if (sched_setaffinity(tid, sizeof set, &set) == 0) ++pinned;
  }
  return pinned;
}

std::vector<int> AllowedCpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

// n peers splitting the blocks evenly, a fixed chain: no discovery, no announcer or RTT threads.
// With `secret_path`, a private swarm's peers.
absl::StatusOr<std::unique_ptr<peer::LocalSwarm>> StartPeers(const Flags& flags, int n,
                                                             int64_t n_layer, int64_t max_length,
                                                             const std::string& secret_path) {
  std::vector<std::string> common = {
      "-m",        flags.model,   "--listen",     "tcp://127.0.0.1:0",
      "--backend", flags.backend, "--max-length", std::to_string(max_length),
      "--no-dht"};
  if (!secret_path.empty()) common.insert(common.end(), {"--swarm-secret", secret_path});
  if (flags.threads > 0) common.insert(common.end(), {"--threads", std::to_string(flags.threads)});
  auto swarm = std::make_unique<peer::LocalSwarm>(
      peer::LocalSwarmOptions{.binary = flags.swarm_binary,
                              .serve_args = std::move(common),
                              .ready_timeout = std::chrono::minutes(5)});
  std::vector<std::vector<std::string>> args;
  for (int i = 0; i < n; ++i) {
    args.push_back({"--blocks", absl::StrCat(i * n_layer / n, ":", (i + 1) * n_layer / n)});
  }
  SWARM_RETURN_IF_ERROR(swarm->StartAll(args));
  return swarm;
}

// One measured setup: the in-process engine, or n peers behind links of a one-way latency.
struct Setup {
  int n_peers = 0;  // 0: in-process
  double latency_ms = 0;
  bool private_swarm = false;  // CurveZMQ on every link
  std::vector<double> samples_ms;
  std::vector<double> blocks_ms;  // of each sample: the part spent in the blocks (or the chain)
  std::vector<double> prompt_ms;
  std::vector<double> hop_ms;  // summed over rounds, per hop
  int64_t hop_steps = 0;
};

int Run(const Flags& flags) {
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 1;
  };
  auto codec = transport::ParseCodec(flags.codec);
  if (!codec.ok()) return fail(codec.status());
  kernels::BackendOptions backend;
  backend.name = flags.backend;
  backend.threads = flags.threads;
  // The in-process engine (every block) and the client of the chains (its head) in one model.
  const std::vector<int> cpus = AllowedCpus();
  auto local = shard::LocalModel::Load(flags.model, backend, /*load_blocks=*/true);
  if (!local.ok()) return fail(local.status());
  shard::LocalModel& m = **local;
  std::vector<int32_t> prompt;
  if (m.tokenizer->add_bos() && m.tokenizer->bos_id() >= 0) prompt.push_back(m.tokenizer->bos_id());
  for (int32_t id : m.tokenizer->Encode(flags.prompt, false, false)) prompt.push_back(id);
  const int64_t max_length =
      static_cast<int64_t>(prompt.size()) + flags.warmup + flags.n_tokens + 2;
  const std::string model_name = m.config.name.empty() ? flags.model : m.config.name;
  const double activation_bytes =
      static_cast<double>(transport::RawEncodedSize(*codec, m.config.n_embd).value_or(0));

  // Every peer set runs for the whole benchmark, so the rounds can interleave the setups: each
  // round measures the in-process engine and then every chain, and drift on a shared machine
  // spreads over all of them alike.
  // --private: a secret in a scratch file (removed at the end) and the clients' CURVE keys.
  std::string secret_path;
  std::optional<transport::CurveClientOptions> curve;
  if (flags.private_swarm) {
    auto secret = transport::SwarmSecret::Generate();
    if (!secret.ok()) return fail(secret.status());
    secret_path = absl::StrCat(std::filesystem::temp_directory_path().string(), "/chain-bench-",
                               getpid(), ".secret");
    if (auto saved = secret->Save(secret_path, /*overwrite=*/true); !saved.ok()) return fail(saved);
    auto keys = transport::DeriveCurveKeys(*secret);
    if (!keys.ok()) return fail(keys.status());
    curve = transport::SwarmCurveClient(*keys);
  }
  struct RemoveFile {
    const std::string& path;
    ~RemoveFile() {
      if (!path.empty()) std::remove(path.c_str());
    }
  } remove_secret{secret_path};
  std::vector<bool> kinds = {false};
  if (flags.private_swarm) kinds.push_back(true);
  std::map<std::pair<int, bool>, std::unique_ptr<peer::LocalSwarm>> peer_sets;
  for (int n : flags.peers) {
    if (n < 1 || n > m.config.n_layer) return fail(absl::InvalidArgumentError("bad --peers"));
    for (bool private_swarm : kinds) {
      if (peer_sets.contains({n, private_swarm})) continue;
      auto peers = StartPeers(flags, n, m.config.n_layer, max_length,
                              private_swarm ? secret_path : std::string());
      if (!peers.ok()) return fail(peers.status());
      // A peer prints where it listens once its backend (and its workers) exist.
      if (flags.pin_threads) {
        for (peer::LocalPeer& p : (*peers)->peers()) PinComputeThreads(p.process->pid(), cpus);
      }
      peer_sets[{n, private_swarm}] = std::move(*peers);
    }
  }
  // This process last: the in-process engine and the chains' client. Threads it starts later
  // (ZeroMQ's, the link emulators') inherit its main thread's CPU; they mostly wait.
  if (flags.pin_threads) PinComputeThreads(getpid(), cpus);
  std::vector<Setup> setups = {Setup{}};
  for (int n : flags.peers) {
    for (double l : flags.latencies_ms) {
      for (bool private_swarm : kinds) {
        Setup setup;
        setup.n_peers = n;
        setup.latency_ms = l;
        setup.private_swarm = private_swarm;
        setups.push_back(std::move(setup));
      }
    }
  }

  zmq::context_t context(1);
  // What one setup holds during a round: its pipeline (and the emulated links in front of its
  // peers) and its decoder.
  struct Running {
    std::unique_ptr<shard::LocalPipeline> local;
    std::vector<std::unique_ptr<transport::LinkEmulator>> links;
    std::unique_ptr<router::ChainSession> chain;
    std::unique_ptr<Decoder> decoder;
  };
  for (int round = 0; round < flags.rounds; ++round) {
    std::vector<Running> running(setups.size());
    for (size_t s = 0; s < setups.size(); ++s) {
      Setup& setup = setups[s];
      Running& r = running[s];
      model::BlockPipeline* blocks = nullptr;
      if (setup.n_peers == 0) {
        auto pipeline = shard::LocalPipeline::Create(*m.blocks, max_length);
        if (!pipeline.ok()) return fail(pipeline.status());
        r.local = std::move(*pipeline);
        blocks = r.local.get();
      } else {
        std::vector<router::ChainHop> hops;
        for (const peer::LocalPeer& p : peer_sets[{setup.n_peers, setup.private_swarm}]->peers()) {
          std::string address = p.ready.address;
          if (setup.latency_ms > 0) {
            transport::LinkEmulatorOptions link;
            link.target = p.ready.address;
            link.forward.latency =
                std::chrono::microseconds(static_cast<int64_t>(setup.latency_ms * 1e3));
            link.forward.bandwidth_bytes_per_sec = flags.bandwidth_mbit * 1e6 / 8;
            link.backward = link.forward;
            auto emulator = transport::LinkEmulator::Start(link);
            if (!emulator.ok()) return fail(emulator.status());
            address = (*emulator)->endpoint();
            r.links.push_back(std::move(*emulator));
          }
          hops.push_back({address, p.ready.first_block, p.ready.last_block, ""});
        }
        router::ChainOptions options;
        options.codec = *codec;
        options.max_length = max_length;
        if (setup.private_swarm) options.socket.curve = curve;
        auto chain =
            router::ChainSession::Open(context, hops, m.config.n_layer, m.config.n_embd, options);
        if (!chain.ok()) return fail(chain.status());
        r.chain = std::move(*chain);
        blocks = r.chain.get();
      }
      r.decoder = std::make_unique<Decoder>(m, *blocks);
      auto prompt_ms = r.decoder->Prompt(prompt);
      if (!prompt_ms.ok()) return fail(prompt_ms.status());
      setup.prompt_ms.push_back(*prompt_ms);
    }
    // The setups take turns token by token, starting with a different one each time, so drift
    // on a shared machine (which moves a setup's median by 10-15% from one second to the next
    // here) falls on all of them alike.
    std::vector<std::vector<double>> round_ms(setups.size()), fwd_ms(setups.size());
    for (int64_t t = 0; t < flags.warmup + flags.n_tokens; ++t) {
      for (size_t k = 0; k < setups.size(); ++k) {
        const size_t s = (static_cast<size_t>(t) + k) % setups.size();
        auto ms = running[s].decoder->Step();
        if (!ms.ok()) return fail(ms.status());
        if (t >= flags.warmup) round_ms[s].push_back(*ms);
        if (t >= flags.warmup) fwd_ms[s].push_back(running[s].decoder->last_forward_ms());
      }
    }
    for (size_t s = 0; s < setups.size(); ++s) {
      Setup& setup = setups[s];
      setup.samples_ms.insert(setup.samples_ms.end(), round_ms[s].begin(), round_ms[s].end());
      setup.blocks_ms.insert(setup.blocks_ms.end(), fwd_ms[s].begin(), fwd_ms[s].end());
      if (const router::ChainSession* chain = running[s].chain.get()) {
        setup.hop_ms.resize(chain->timings().size());
        for (size_t h = 0; h < setup.hop_ms.size(); ++h) {
          setup.hop_ms[h] += 1e3 * chain->timings()[h].seconds;
        }
        setup.hop_steps += chain->timings().front().steps;
      }
      const Latency latency = Summarize(round_ms[s], 0);
      std::fprintf(
          stderr,
          "round %d: %s %d peers, %g ms links%s: median %.2f ms/token (%.2f in the blocks)\n",
          round, setup.n_peers ? "chain" : "in-process", setup.n_peers, setup.latency_ms,
          setup.private_swarm ? ", private" : "", latency.median_ms,
          Summarize(fwd_ms[s], 0).median_ms);
    }
  }
  for (auto& [n, peers] : peer_sets) peers->StopAll(std::chrono::seconds(30));

  // Each setup's median per-token latency against the in-process median (target 1.05x), and with
  // links against the floor: compute plus one one-way latency per transit (target 1.1x).
  const Latency baseline = Summarize(setups[0].samples_ms, setups[0].prompt_ms.front());
  std::printf("%s\n", json({{"bench", "chain"},
                            {"setup", "in-process"},
                            {"model", model_name},
                            {"n_layer", m.config.n_layer},
                            {"backend", m.backend->name()},
                            {"rounds", flags.rounds},
                            {"threads_flag", flags.threads},
                            {"pinned_threads", flags.pin_threads && cpus.size() >= 2},
                            {"latency", LatencyJson(baseline)},
                            {"blocks_ms_median", Summarize(setups[0].blocks_ms, 0).median_ms}})
                          .dump()
                          .c_str());
  std::fprintf(stderr, "\n%-6s %-10s %-8s %12s %12s %10s %8s\n", "peers", "one-way ms", "swarm",
               "token ms", "floor ms", "tokens/s", "ratio");
  std::fprintf(stderr, "%-6s %-10s %-8s %12.2f %12s %10.2f\n", "-", "-", "-", baseline.median_ms,
               "-", baseline.mean_ms > 0 ? 1e3 / baseline.mean_ms : 0.0);
  for (size_t i = 1; i < setups.size(); ++i) {
    const Setup& setup = setups[i];
    const Latency latency = Summarize(setup.samples_ms, setup.prompt_ms.front());
    const int transits = setup.n_peers + 1;
    const double l = setup.latency_ms;
    const double floor_ms = baseline.median_ms + transits * l;
    const double serialization_ms =
        l > 0 ? transits * activation_bytes * 8 / (flags.bandwidth_mbit * 1e6) * 1e3 : 0;
    json hop_ms = json::array();
    for (double h : setup.hop_ms) hop_ms.push_back(setup.hop_steps ? h / setup.hop_steps : 0);
    json line = {{"bench", "chain"},
                 {"setup", l > 0 ? "peers+links" : "peers"},
                 {"model", model_name},
                 {"n_peers", setup.n_peers},
                 {"private", setup.private_swarm},
                 {"transits_per_step", transits},
                 {"codec", transport::CodecName(*codec)},
                 {"one_way_latency_ms", l},
                 {"bandwidth_mbit", l > 0 ? flags.bandwidth_mbit : 0},
                 {"activation_bytes_per_transit", activation_bytes},
                 {"hop_ms_per_step", hop_ms},
                 {"latency", LatencyJson(latency)},
                 {"blocks_ms_median", Summarize(setup.blocks_ms, 0).median_ms},
                 {"in_process_per_token_ms_median", baseline.median_ms},
                 {"floor_ms", floor_ms},
                 {"serialization_ms_per_step", serialization_ms},
                 {"ratio_to_floor", latency.median_ms / floor_ms},
                 {"target", l > 0 ? 1.1 : 1.05}};
    std::printf("%s\n", line.dump().c_str());
    std::fprintf(stderr, "%-6d %-10g %-8s %12.2f %12.2f %10.2f %7.3fx (target %.2fx)\n",
                 setup.n_peers, l, setup.private_swarm ? "private" : "open", latency.median_ms,
                 floor_ms, latency.mean_ms > 0 ? 1e3 / latency.mean_ms : 0.0,
                 latency.median_ms / floor_ms, l > 0 ? 1.1 : 1.05);
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Generation through chains of peer processes vs. the in-process engine"};
  Flags flags;
  app.add_option("--swarm", flags.swarm_binary, "The swarm binary (runs `swarm serve`)")
      ->required();
  app.add_option("-m,--model", flags.model, "Model GGUF")->required();
  app.add_option("--peers", flags.peers, "Peer counts")->delimiter(',')->capture_default_str();
  app.add_option("--latency-ms", flags.latencies_ms, "One-way latencies (0: no emulator)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--bandwidth-mbit", flags.bandwidth_mbit, "Emulated link bandwidth")
      ->capture_default_str();
  app.add_option("-n", flags.n_tokens, "Measured tokens per setup")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{2}, int64_t{4096}));
  app.add_option("--warmup", flags.warmup, "Tokens before measuring")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1024}));
  app.add_option("--codec", flags.codec, "Activation codec")->capture_default_str();
  app.add_option("-t,--threads", flags.threads, "CPU threads per process (0: physical cores)");
  app.add_option("--backend", flags.backend, "Backend of the client and peers")
      ->capture_default_str();
  app.add_option("--prompt", flags.prompt, "Prompt")->capture_default_str();
  app.add_option("--pin-threads", flags.pin_threads,
                 "Pin every process's main thread and backend workers one per CPU")
      ->capture_default_str();
  app.add_flag("--private", flags.private_swarm,
               "Also measure every chain as a private swarm (--swarm-secret, CurveZMQ)");
  app.add_option("--rounds", flags.rounds, "Rounds over all setups (interleaved)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  CLI11_PARSE(app, argc, argv);
  return Run(flags);
}
