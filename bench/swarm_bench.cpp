// The swarm under failure and under load, with real `swarm serve` processes on one DHT (loopback):
//
// recovery  Each span of the model is served by `--replicas` peers (default: 4 spans x 2, so a
//           replacement exists for every peer of a chain). A client routes a chain through the
//           DHT (one peer per span), runs a prompt so that the history reaches `--history`
//           positions after `--warmup` decode steps, then SIGKILLs (or SIGSTOPs) the peer of one
//           hop of its chain (hop = repetition mod 4, so every span is hit alike) and measures
//           the time from the signal to the next sampled token, split as ChainSession times it:
//           detection (the step's deadline, or an error), re-routing (provider), opening the
//           replacement's session, replaying the history to rebuild its KV cache, and the rest
//           (the step run again plus the client's head). The victim is restarted and its stale
//           record left to expire before the next repetition; each repetition has a fresh client.
// clients   N clients (threads, each with its own head, provider and chain session, as N separate
//           `swarm generate` processes would be) start `--stagger-ms` apart, so each sees the
//           sessions the earlier ones opened in the peers' records; tokens are counted over a
//           window in which all of them run. Measured with every span replicated `--replicas`
//           times, then with one replica (the extra peers stopped): 1 client and N clients each.
//
// Prints one JSON line per measurement and a summary on stderr.
//
// Usage: swarm_bench --swarm build/src/cli/swarm -m MODEL.gguf [--spans 0:6,6:11,11:17,17:22]
//                    [--replicas 2] [--history 100] [--reps 4] [--signals kill,stop]
//                    [--clients 8] [--window-s 20] [-t 1] [--backend cpu] [--parts
//                    recovery,clients]
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "base/subprocess.h"
#include "model/generator.h"
#include "model/sampler.h"
#include "peer/local_swarm.h"
#include "registry/dht_registry.h"
#include "router/chain_session.h"
#include "router/swarm_hop_provider.h"
#include "shard/local_model.h"

namespace {

using namespace swarm;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Flags {
  std::string swarm_binary;
  std::string model;
  std::vector<std::string> spans = {"0:6", "6:11", "11:17", "17:22"};
  int replicas = 2;
  int64_t history = 100;
  int64_t warmup = 8;
  int64_t after = 4;
  int reps = 4;
  std::vector<std::string> signals = {"kill", "stop"};
  int clients = 8;
  double window_s = 20;
  int64_t stagger_ms = 1500;
  int64_t client_prompt = 16;
  int threads = 1;
  std::string backend = "cpu";
  double announce_interval_s = 1;
  double record_ttl_s = 30;
  int64_t min_step_timeout_ms = 2000;
  double step_timeout_factor = 20;
  // Recovery is measured once per value (0: the step's deadline is the only failure detector).
  std::vector<int64_t> heartbeats_ms = {0, 250};
  std::vector<std::string> parts = {"recovery", "clients"};
  std::string log_dir = std::filesystem::temp_directory_path().string();
};

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// One `swarm serve` process and what its ready line said.
using Peer = peer::LocalPeer;

// The benchmark's swarm: peer::LocalSwarm with the benchmark's flags, every peer with a key file
// of its own so that a restarted peer keeps its id and its new record replaces the old.
class LocalSwarm {
 public:
  LocalSwarm(const Flags& flags, int64_t max_length)
      : flags_(flags),
        swarm_({.binary = flags.swarm_binary,
                .serve_args = {"-m", flags.model, "--listen", "tcp://127.0.0.1:0", "--dht-bind",
                               "127.0.0.1", "--backend", flags.backend, "--threads",
                               std::to_string(flags.threads), "--max-length",
                               std::to_string(max_length), "--announce-interval",
                               absl::StrCat(flags.announce_interval_s), "--record-ttl",
                               absl::StrCat(flags.record_ttl_s)},
                .log_dir = flags.log_dir,
                .log_name = "swarm-bench-peer",
                .ready_timeout = std::chrono::minutes(5)}) {}
  ~LocalSwarm() {
    swarm_.StopAll(std::chrono::seconds(20));
    for (const std::string& identity : identities_) {
      std::error_code ignored;
      std::filesystem::remove(identity, ignored);
    }
  }

  // Every span, `replicas` times; replica r of every span before replica r + 1. The first peer
  // starts alone; the others join through it.
  absl::Status Start() {
    std::vector<std::vector<std::string>> args;
    for (int r = 0; r < flags_.replicas; ++r) {
      for (const std::string& span : flags_.spans) {
        identities_.push_back(absl::StrCat(flags_.log_dir, "/swarm-bench-", ::getpid(), "-id",
                                           identities_.size() + 1, ".pem"));
        args.push_back({"--blocks", span, "--identity", identities_.back()});
      }
    }
    SWARM_RETURN_IF_ERROR(swarm_.Start(args[0]).status());
    const std::string bootstrap = Bootstrap();
    for (size_t i = 1; i < args.size(); ++i) {
      args[i].insert(args[i].end(), {"--initial-peers", bootstrap});
      SWARM_RETURN_IF_ERROR(swarm_.Launch(args[i]).status());
    }
    for (size_t i = 1; i < swarm_.size(); ++i)
      SWARM_RETURN_IF_ERROR(swarm_.WaitReady(swarm_.peer(i)));
    return absl::OkStatus();
  }

  // A live peer's DHT node (not `except`'s).
  std::string Bootstrap(const Peer* except = nullptr) const {
    for (const Peer& p : swarm_.peers()) {
      if (&p != except && p.process != nullptr && p.ready.dht_port != 0) return swarm_.DhtNode(p);
    }
    return "";
  }

  // Kills a peer (SIGKILL; a frozen one too) and starts it again on the same blocks, with the
  // same key.
  absl::Status Restart(Peer& p) {
    std::vector<std::string> args;
    for (const std::string& a : p.args) {
      if (a == "--initial-peers") break;
      args.push_back(a);
    }
    const std::string bootstrap = Bootstrap(&p);
    if (!bootstrap.empty()) args.insert(args.end(), {"--initial-peers", bootstrap});
    return swarm_.Restart(p, std::move(args));
  }

  // Graceful stop (the peer withdraws its record).
  void Stop(Peer& p) {
    (void)swarm_.Stop(p, std::chrono::seconds(30));
    p.process.reset();
  }

  Peer* ByAddress(const std::string& address) { return swarm_.ByAddress(address); }
  std::deque<Peer>& peers() { return swarm_.peers(); }

  // Waits until the registry holds exactly the live peers' records (at their current
  // addresses), all online.
  absl::Status WaitSettled(registry::DhtRegistry& registry, const std::string& model_id) {
    std::set<std::string> want;
    for (const Peer& p : swarm_.peers()) {
      if (p.alive()) want.insert(p.ready.peer_id + " " + p.ready.address);
    }
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    std::string seen;
    while (Clock::now() < deadline) {
      auto snapshot = registry.Snapshot(model_id);
      if (snapshot.ok()) {
        std::set<std::string> have;
        bool all_online = true;
        for (const auto& r : *snapshot) {
          have.insert(r.peer_id.ToHex() + " " + r.address);
          all_online &= r.state == registry::PeerState::kOnline;
        }
        if (have == want && all_online) return absl::OkStatus();
        seen = absl::StrCat(have.size(), " records for ", want.size(), " live peers");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return absl::DeadlineExceededError(absl::StrCat("the registry did not settle: ", seen));
  }

 private:
  const Flags& flags_;
  peer::LocalSwarm swarm_;
  std::vector<std::string> identities_;
};

// A client's own head and tokenizer (ClientHead keeps scratch: one per thread).
absl::StatusOr<std::unique_ptr<shard::LocalModel>> LoadClient(const Flags& flags) {
  return shard::LocalModel::Load(flags.model,
                                 kernels::BackendOptions{.name = flags.backend, .threads = 1},
                                 /*load_blocks=*/false);
}

// A fixed prompt of n tokens: BOS, then ids spread over the vocabulary.
std::vector<int32_t> Prompt(const shard::LocalModel& m, int64_t n) {
  std::vector<int32_t> prompt;
  if (m.tokenizer->bos_id() >= 0) prompt.push_back(m.tokenizer->bos_id());
  for (int64_t i = 0; static_cast<int64_t>(prompt.size()) < n; ++i) {
    prompt.push_back(static_cast<int32_t>(1000 + (i * 7919) % (m.config.n_vocab - 1000)));
  }
  return prompt;
}

router::SwarmHopProviderOptions ProviderOptions(const shard::LocalModel& m, int64_t max_length) {
  router::SwarmHopProviderOptions options;
  options.model_id = m.config.model_id;
  options.n_blocks = m.config.n_layer;
  options.cache_tokens_needed = max_length;
  options.route_wait = absl::Seconds(30);
  return options;
}

router::ChainOptions SessionOptions(const Flags& flags, int64_t max_length,
                                    int64_t heartbeat_ms = -1) {
  router::ChainOptions options;
  if (heartbeat_ms >= 0) options.heartbeat_interval = std::chrono::milliseconds(heartbeat_ms);
  options.max_length = max_length;
  options.min_step_timeout = std::chrono::milliseconds(flags.min_step_timeout_ms);
  options.step_timeout_factor = flags.step_timeout_factor;
  return options;
}

std::string RouteString(const std::vector<router::ChainHop>& hops) {
  std::string out;
  for (const auto& h : hops) {
    absl::StrAppend(&out, out.empty() ? "" : " ", h.first_block, ":", h.last_block, "@",
                    h.peer_id.substr(0, 8));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Recovery

struct Recovery {
  std::string signal;
  int64_t heartbeat_ms = 0;
  int rep = 0;
  int hop = 0;
  std::string victim_blocks;
  double recovery_ms = 0;  // signal to the next token
  double decode_ms = 0;    // median token time before the failure
  router::FailoverEvent event;
  int failovers = 0;
};

absl::StatusOr<Recovery> RunRecovery(const Flags& flags, LocalSwarm& swarm, shard::LocalModel& m,
                                     registry::DhtRegistry& registry, zmq::context_t& context,
                                     int signal, int64_t heartbeat_ms, int rep) {
  const int64_t max_length = flags.history + flags.after + 2;
  router::SwarmHopProvider provider(registry, ProviderOptions(m, max_length));
  SWARM_ASSIGN_OR_RETURN(auto hops, provider.InitialRoute());
  const router::ChainOptions options = SessionOptions(flags, max_length, heartbeat_ms);
  SWARM_ASSIGN_OR_RETURN(
      auto session, router::ChainSession::Open(context, hops, m.config.n_layer, m.config.n_embd,
                                               options, &provider));
  Recovery result;
  result.signal = signal == SIGKILL ? "kill" : "stop";
  result.heartbeat_ms = heartbeat_ms;
  result.rep = rep;
  result.hop = rep % static_cast<int>(hops.size());
  const std::vector<int32_t> prompt = Prompt(m, flags.history - flags.warmup);
  model::SamplingParams params;
  params.temperature = 0;
  model::Sampler sampler(params);
  model::GenerateOptions generate;
  generate.max_new_tokens = flags.warmup + 1 + flags.after;
  generate.stop_at_end_of_generation = false;
  std::vector<Clock::time_point> stamps;
  Clock::time_point signalled;
  absl::Status signal_status;
  Peer* victim = nullptr;
  const int64_t failure_token = flags.warmup + 1;  // the history is `history` positions then
  auto stats =
      model::Generate(prompt, generate, *m.head, *session, sampler, *m.tokenizer, [&](int32_t) {
        stamps.push_back(Clock::now());
        if (static_cast<int64_t>(stamps.size()) == failure_token) {
          const std::string address = session->hops()[result.hop].address;
          victim = swarm.ByAddress(address);
          if (victim == nullptr) {
            signal_status = absl::NotFoundError(absl::StrCat("no live peer at ", address));
            return false;
          }
          result.victim_blocks = victim->ready.Blocks();
          signal_status = victim->process->Signal(signal);
          signalled = Clock::now();
          std::fprintf(stderr,
                       "  %s (heartbeat %lld ms) rep %d: signal %d to hop %d (blocks %s) at "
                       "position %lld, route %s\n",
                       result.signal.c_str(), static_cast<long long>(heartbeat_ms), rep, signal,
                       result.hop, victim->ready.Blocks().c_str(),
                       static_cast<long long>(session->position()),
                       RouteString(session->hops()).c_str());
        }
        return true;
      });
  SWARM_RETURN_IF_ERROR(signal_status);
  if (victim == nullptr) return absl::InternalError("generation ended before the failure");
  if (!stats.ok()) {
    (void)swarm.Restart(*victim);
    return stats.status();
  }
  if (static_cast<int64_t>(stamps.size()) <= failure_token) {
    return absl::InternalError("generation ended before the failure was recovered");
  }
  result.recovery_ms = Ms(stamps[failure_token] - signalled);
  std::vector<double> decode;
  for (int64_t i = 1; i < failure_token; ++i) decode.push_back(Ms(stamps[i] - stamps[i - 1]));
  result.decode_ms = Median(decode);
  result.failovers = session->failovers();
  if (session->failover_events().empty()) return absl::InternalError("no failover happened");
  result.event = session->failover_events().front();
  // Restart the victim (killed or frozen) once the session is gone.
  session.reset();
  SWARM_RETURN_IF_ERROR(swarm.Restart(*victim));
  return result;
}

json RecoveryJson(const Recovery& r, const std::string& model_name, int64_t history) {
  const auto& e = r.event;
  const double rest_ms = r.recovery_ms - 1e3 * (e.detect_seconds + e.route_seconds +
                                                e.open_seconds + e.replay_seconds);
  return {{"bench", "swarm_recovery"},
          {"model", model_name},
          {"signal", r.signal},
          {"heartbeat_ms", r.heartbeat_ms},
          {"rep", r.rep},
          {"hop", r.hop},
          {"victim_blocks", r.victim_blocks},
          {"history", history},
          {"replayed_positions", e.replayed_positions},
          {"recovery_ms", r.recovery_ms},
          {"detect_ms", 1e3 * e.detect_seconds},
          {"route_ms", 1e3 * e.route_seconds},
          {"open_ms", 1e3 * e.open_seconds},
          {"replay_ms", 1e3 * e.replay_seconds},
          {"rest_ms", rest_ms},
          {"attempts", e.attempts},
          {"failovers", r.failovers},
          {"decode_ms_before", r.decode_ms},
          {"reason", e.reason}};
}

// ---------------------------------------------------------------------------------------------
// Concurrent clients

struct ClientRun {
  std::vector<Clock::time_point> stamps;
  std::vector<router::ChainHop> route;
  absl::Status status;
};

struct Throughput {
  int replicas = 0;
  int clients = 0;
  double window_s = 0;
  int64_t tokens = 0;
  double aggregate_tps = 0;
  std::vector<double> client_tps;
  std::map<std::string, int> sessions_per_peer;  // "blocks@id8" -> clients routed through it
};

absl::StatusOr<Throughput> RunClients(const Flags& flags,
                                      std::vector<std::unique_ptr<shard::LocalModel>>& models,
                                      registry::DhtRegistry& registry, zmq::context_t& context,
                                      int n_clients, int replicas) {
  const int64_t max_length = 2048;
  std::vector<ClientRun> runs(n_clients);
  std::atomic<bool> stop{false};
  std::atomic<int> started{0};
  std::vector<std::thread> threads;
  const auto t0 = Clock::now();
  for (int c = 0; c < n_clients; ++c) {
    threads.emplace_back([&, c] {
      std::this_thread::sleep_until(t0 + std::chrono::milliseconds(c * flags.stagger_ms));
      shard::LocalModel& m = *models[c];
      ClientRun& run = runs[c];
      router::SwarmHopProvider provider(registry, ProviderOptions(m, max_length));
      auto hops = provider.InitialRoute();
      if (!hops.ok()) {
        run.status = hops.status();
        started++;
        return;
      }
      run.route = *hops;
      auto session = router::ChainSession::Open(context, *hops, m.config.n_layer, m.config.n_embd,
                                                SessionOptions(flags, max_length), &provider);
      if (!session.ok()) {
        run.status = session.status();
        started++;
        return;
      }
      const std::vector<int32_t> prompt = Prompt(m, flags.client_prompt);
      model::SamplingParams params;
      params.temperature = 0;
      model::Sampler sampler(params);
      model::GenerateOptions generate;
      generate.max_new_tokens = max_length - flags.client_prompt - 1;
      generate.stop_at_end_of_generation = false;
      bool first = true;
      auto stats = model::Generate(prompt, generate, *m.head, **session, sampler, *m.tokenizer,
                                   [&](int32_t) {
                                     run.stamps.push_back(Clock::now());
                                     if (first) {
                                       first = false;
                                       started++;
                                     }
                                     return !stop.load();
                                   });
      if (first) started++;
      if (!stats.ok()) run.status = stats.status();
    });
  }
  // The window opens when every client has its first token and lasts window_s.
  while (started.load() < n_clients) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const auto window_start = Clock::now();
  std::this_thread::sleep_for(
      std::chrono::milliseconds(static_cast<int64_t>(flags.window_s * 1e3)));
  const auto window_end = Clock::now();
  stop = true;
  for (std::thread& t : threads) t.join();
  Throughput result;
  result.replicas = replicas;
  result.clients = n_clients;
  result.window_s = std::chrono::duration<double>(window_end - window_start).count();
  for (const ClientRun& run : runs) {
    if (!run.status.ok()) return run.status;
    const int64_t n = std::count_if(run.stamps.begin(), run.stamps.end(),
                                    [&](auto t) { return t > window_start && t <= window_end; });
    result.tokens += n;
    result.client_tps.push_back(n / result.window_s);
    for (const auto& h : run.route) {
      result.sessions_per_peer[absl::StrCat(h.first_block, ":", h.last_block, "@",
                                            h.peer_id.substr(0, 8))]++;
    }
  }
  result.aggregate_tps = result.tokens / result.window_s;
  return result;
}

json ThroughputJson(const Throughput& t, const std::string& model_name, double single_tps) {
  json per_peer = json::object();
  for (const auto& [k, v] : t.sessions_per_peer) per_peer[k] = v;
  return {{"bench", "swarm_clients"},
          {"model", model_name},
          {"replicas", t.replicas},
          {"clients", t.clients},
          {"window_s", t.window_s},
          {"tokens", t.tokens},
          {"aggregate_tokens_per_s", t.aggregate_tps},
          {"per_client_tokens_per_s_median", Median(t.client_tps)},
          {"per_client_tokens_per_s_min",
           t.client_tps.empty() ? 0 : *std::min_element(t.client_tps.begin(), t.client_tps.end())},
          {"per_client_tokens_per_s", t.client_tps},
          {"aggregate_vs_one_client", single_tps > 0 ? t.aggregate_tps / single_tps : 0},
          {"sessions_per_peer", per_peer}};
}

// ---------------------------------------------------------------------------------------------

int Run(const Flags& flags) {
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "swarm_bench: %s\n", std::string(s.message()).c_str());
    return 1;
  };
  const bool do_recovery =
      std::find(flags.parts.begin(), flags.parts.end(), "recovery") != flags.parts.end();
  const bool do_clients =
      std::find(flags.parts.begin(), flags.parts.end(), "clients") != flags.parts.end();
  if (flags.history <= flags.warmup + 1) return fail(absl::InvalidArgumentError("bad --history"));
  std::vector<std::unique_ptr<shard::LocalModel>> models;
  const int n_models = do_clients ? std::max(flags.clients, 1) : 1;
  for (int i = 0; i < n_models; ++i) {
    auto m = LoadClient(flags);
    if (!m.ok()) return fail(m.status());
    models.push_back(std::move(*m));
  }
  shard::LocalModel& m = *models[0];
  const std::string model_name = m.config.name.empty() ? flags.model : m.config.name;

  const auto started = Clock::now();
  LocalSwarm swarm(flags, 2048);
  if (auto s = swarm.Start(); !s.ok()) return fail(s);
  std::fprintf(stderr, "swarm_bench: %zu peers listening after %.1f s\n", swarm.peers().size(),
               std::chrono::duration<double>(Clock::now() - started).count());
  registry::DhtRegistryOptions registry_options;
  registry_options.bind_address = "127.0.0.1";
  registry_options.initial_peers = {swarm.Bootstrap()};
  registry_options.client_only = true;
  registry_options.op_timeout = absl::Seconds(2);
  auto registry = registry::DhtRegistry::Create(registry_options);
  if (!registry.ok()) return fail(registry.status());
  if (auto s = swarm.WaitSettled(**registry, m.config.model_id); !s.ok()) return fail(s);
  zmq::context_t context(1);

  std::vector<Recovery> recoveries;
  if (do_recovery) {
    for (int64_t heartbeat_ms : flags.heartbeats_ms) {
      for (const std::string& name : flags.signals) {
        const int signal = name == "kill" ? SIGKILL : name == "stop" ? SIGSTOP : 0;
        if (signal == 0) return fail(absl::InvalidArgumentError("--signals: kill or stop"));
        for (int rep = 0; rep < flags.reps; ++rep) {
          auto r = RunRecovery(flags, swarm, m, **registry, context, signal, heartbeat_ms, rep);
          if (!r.ok()) return fail(r.status());
          recoveries.push_back(*r);
          std::printf("%s\n", RecoveryJson(*r, model_name, flags.history).dump().c_str());
          std::fflush(stdout);
          if (auto s = swarm.WaitSettled(**registry, m.config.model_id); !s.ok()) return fail(s);
        }
      }
    }
  }

  std::vector<Throughput> throughputs;
  if (do_clients) {
    for (int replicas : {flags.replicas, 1}) {
      if (replicas < flags.replicas) {
        // Stop the extra replicas (peers beyond the first of each span).
        for (size_t i = flags.spans.size(); i < swarm.peers().size(); ++i) {
          if (swarm.peers()[i].process) swarm.Stop(swarm.peers()[i]);
        }
        if (auto s = swarm.WaitSettled(**registry, m.config.model_id); !s.ok()) return fail(s);
      }
      double single = 0;
      for (int n : {1, flags.clients}) {
        auto t = RunClients(flags, models, **registry, context, n, replicas);
        if (!t.ok()) return fail(t.status());
        if (n == 1) single = t->aggregate_tps;
        throughputs.push_back(*t);
        std::printf("%s\n", ThroughputJson(*t, model_name, single).dump().c_str());
        std::fflush(stdout);
        // Sessions close at once; let the records show no active sessions again.
        std::this_thread::sleep_for(
            std::chrono::milliseconds(static_cast<int64_t>(3e3 * flags.announce_interval_s)));
      }
      if (flags.replicas == 1) break;
    }
  }

  // Summary.
  if (!recoveries.empty()) {
    std::fprintf(stderr,
                 "\nrecovery, %lld-position history (ms, median of %d; failure to next token)\n"
                 "%-10s %-6s %10s %10s %8s %8s %8s %8s %10s\n",
                 static_cast<long long>(flags.history), flags.reps, "heartbeat", "signal",
                 "recovery", "detect", "route", "open", "replay", "rest", "decode");
    for (int64_t heartbeat_ms : flags.heartbeats_ms) {
      for (const std::string& name : flags.signals) {
        std::vector<double> total, detect, route, open, replay, rest, decode;
        for (const Recovery& r : recoveries) {
          if (r.signal != name || r.heartbeat_ms != heartbeat_ms) continue;
          const auto& e = r.event;
          total.push_back(r.recovery_ms);
          detect.push_back(1e3 * e.detect_seconds);
          route.push_back(1e3 * e.route_seconds);
          open.push_back(1e3 * e.open_seconds);
          replay.push_back(1e3 * e.replay_seconds);
          rest.push_back(r.recovery_ms - 1e3 * (e.detect_seconds + e.route_seconds +
                                                e.open_seconds + e.replay_seconds));
          decode.push_back(r.decode_ms);
        }
        json line = {{"bench", "swarm_recovery_summary"},
                     {"model", model_name},
                     {"signal", name},
                     {"reps", total.size()},
                     {"heartbeat_ms", heartbeat_ms},
                     {"history", flags.history},
                     {"recovery_ms_median", Median(total)},
                     {"detect_ms_median", Median(detect)},
                     {"route_ms_median", Median(route)},
                     {"open_ms_median", Median(open)},
                     {"replay_ms_median", Median(replay)},
                     {"rest_ms_median", Median(rest)},
                     {"decode_ms_median", Median(decode)},
                     {"recovery_ms", total}};
        std::printf("%s\n", line.dump().c_str());
        std::fprintf(stderr, "%-10s %-6s %10.0f %10.0f %8.1f %8.1f %8.0f %8.0f %10.0f\n",
                     heartbeat_ms > 0 ? absl::StrCat(heartbeat_ms, " ms").c_str() : "off",
                     name.c_str(), Median(total), Median(detect), Median(route), Median(open),
                     Median(replay), Median(rest), Median(decode));
      }
    }
  }
  if (!throughputs.empty()) {
    std::fprintf(stderr, "\nconcurrent clients (tokens/s over a %.0f s window)\n", flags.window_s);
    std::fprintf(stderr, "%-9s %-8s %12s %18s %14s\n", "replicas", "clients", "aggregate",
                 "per client median", "per client min");
    for (const Throughput& t : throughputs) {
      std::fprintf(stderr, "%-9d %-8d %12.2f %18.2f %14.2f\n", t.replicas, t.clients,
                   t.aggregate_tps, Median(t.client_tps),
                   *std::min_element(t.client_tps.begin(), t.client_tps.end()));
    }
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Swarm recovery after a killed or frozen peer, and concurrent clients"};
  Flags flags;
  app.add_option("--swarm", flags.swarm_binary, "The swarm binary (runs `swarm serve`)")
      ->required();
  app.add_option("-m,--model", flags.model, "Model GGUF")->required();
  app.add_option("--spans", flags.spans, "Block spans of the chain, A:B")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--replicas", flags.replicas, "Peers per span")
      ->capture_default_str()
      ->check(CLI::Range(1, 4));
  app.add_option("--history", flags.history, "Positions in the history at the failure")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{2}, int64_t{1500}));
  app.add_option("--warmup", flags.warmup, "Decode steps before the failure")
      ->capture_default_str();
  app.add_option("--after", flags.after, "Tokens after the recovered one")->capture_default_str();
  app.add_option("--reps", flags.reps, "Failures per signal")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  app.add_option("--signals", flags.signals, "kill (SIGKILL), stop (SIGSTOP)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--clients", flags.clients, "Concurrent clients")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--window-s", flags.window_s, "Measured window with every client running")
      ->capture_default_str();
  app.add_option("--stagger-ms", flags.stagger_ms, "Delay between client starts")
      ->capture_default_str();
  app.add_option("--client-prompt", flags.client_prompt, "Prompt tokens of each client")
      ->capture_default_str();
  app.add_option("-t,--threads", flags.threads, "CPU threads per peer")->capture_default_str();
  app.add_option("--backend", flags.backend, "Backend of the peers and clients")
      ->capture_default_str();
  app.add_option("--announce-interval", flags.announce_interval_s, "Peers' announce interval (s)")
      ->capture_default_str();
  app.add_option("--record-ttl", flags.record_ttl_s, "Peers' record lifetime (s)")
      ->capture_default_str();
  app.add_option("--min-step-timeout-ms", flags.min_step_timeout_ms,
                 "ChainOptions::min_step_timeout")
      ->capture_default_str();
  app.add_option("--step-timeout-factor", flags.step_timeout_factor,
                 "ChainOptions::step_timeout_factor")
      ->capture_default_str();
  app.add_option("--heartbeat-ms", flags.heartbeats_ms,
                 "Recovery with each ChainOptions::heartbeat_interval (0: deadline only)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--parts", flags.parts, "recovery, clients")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--log-dir", flags.log_dir, "Where the peers' stderr logs go")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return Run(flags);
}
