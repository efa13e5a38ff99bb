// Steps in flight through a chain of real peer processes behind emulated WAN links: the time per
// step with D steps in flight (router::ChainSession Submit/Collect) against sequential Forward, in
// one run on the same peers and links. A LinkEmulator stands in front of every peer, so every
// transit (client to the first peer, peer to peer, last peer back to the client) pays the one-way
// latency: a sequential step costs (N + 1) transits; with D in flight the chain works on D steps
// at once and a step costs about max((N + 1) x latency / D, the slowest hop's time per step).
// Measured in rounds; in each round every depth runs its steps in turn (each from the same
// position, rolled back after), so that the machine's drift falls on all of them alike. Prints
// one JSON line per depth and a table.
//
// Usage: pipeline_bench --swarm build/src/cli/swarm -m MODEL.gguf [--peers 4] [--latency-ms 50]
//                       [--bandwidth-mbit 100] [--steps 32] [--step-tokens 1] [--depths 1,2,4,8]
//                       [--rounds 3] [-t THREADS]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "peer/local_swarm.h"
#include "router/chain_session.h"
#include "shard/local_model.h"
#include "transport/link_emulator.h"

namespace {

using namespace swarm;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Flags {
  std::string swarm_binary;
  std::string model;
  int peers = 4;
  double latency_ms = 50;
  double bandwidth_mbit = 100;
  int64_t steps = 32;
  int64_t step_tokens = 1;
  std::vector<int> depths = {1, 2, 4, 8};
  int rounds = 3;
  int threads = 1;
};

// Runs `steps` steps from the chain's position with `depth` steps in flight (0: Forward one at a
// time), then rolls back to where it started. Returns the milliseconds per step.
absl::StatusOr<double> Measure(router::ChainSession& chain, const std::vector<float>& input,
                               int64_t step_tokens, int64_t steps, int depth) {
  const int64_t start = chain.position();
  std::vector<float> out(input.size());
  const auto begin = Clock::now();
  if (depth == 0) {
    for (int64_t i = 0; i < steps; ++i) {
      SWARM_RETURN_IF_ERROR(chain.Forward(step_tokens, input.data(), out.data()));
    }
  } else {
    int64_t submitted = 0, collected = 0;
    while (collected < steps) {
      while (submitted < steps && chain.in_flight() < depth) {
        SWARM_RETURN_IF_ERROR(chain.Submit(step_tokens, input));
        ++submitted;
      }
      SWARM_RETURN_IF_ERROR(chain.Collect(out.data()));
      ++collected;
    }
  }
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - begin).count();
  SWARM_RETURN_IF_ERROR(chain.Rollback(start));
  return ms / static_cast<double>(steps);
}

int Run(const Flags& flags) {
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 1;
  };
  kernels::BackendOptions backend;
  backend.threads = flags.threads;
  auto local = shard::LocalModel::Load(flags.model, backend, /*load_blocks=*/false);
  if (!local.ok()) return fail(local.status());
  const model::ModelConfig& config = (*local)->config;
  if (flags.peers < 1 || flags.peers > config.n_layer) {
    return fail(absl::InvalidArgumentError("bad --peers"));
  }
  const int64_t max_length = 1 + flags.steps * flags.step_tokens + 1;
  std::vector<std::string> common = {"-m",           flags.model,
                                     "--listen",     "tcp://127.0.0.1:0",
                                     "--max-length", std::to_string(max_length),
                                     "--threads",    std::to_string(flags.threads),
                                     "--no-dht"};
  peer::LocalSwarm swarm({.binary = flags.swarm_binary,
                          .serve_args = std::move(common),
                          .ready_timeout = std::chrono::minutes(5)});
  std::vector<std::vector<std::string>> args;
  const int64_t n_layer = config.n_layer;
  for (int i = 0; i < flags.peers; ++i) {
    args.push_back({"--blocks",
                    absl::StrCat(i * n_layer / flags.peers, ":", (i + 1) * n_layer / flags.peers)});
  }
  if (absl::Status started = swarm.StartAll(args); !started.ok()) return fail(started);

  std::vector<std::unique_ptr<transport::LinkEmulator>> links;
  std::vector<router::ChainHop> hops;
  for (const peer::LocalPeer& p : swarm.peers()) {
    std::string address = p.ready.address;
    if (flags.latency_ms > 0) {
      transport::LinkEmulatorOptions link;
      link.target = p.ready.address;
      link.forward.latency =
          std::chrono::microseconds(static_cast<int64_t>(flags.latency_ms * 1e3));
      link.forward.bandwidth_bytes_per_sec = flags.bandwidth_mbit * 1e6 / 8;
      link.backward = link.forward;
      auto emulator = transport::LinkEmulator::Start(link);
      if (!emulator.ok()) return fail(emulator.status());
      address = (*emulator)->endpoint();
      links.push_back(std::move(*emulator));
    }
    hops.push_back({address, p.ready.first_block, p.ready.last_block, ""});
  }
  zmq::context_t context(1);
  router::ChainOptions options;
  options.max_length = max_length;
  auto chain = router::ChainSession::Open(context, hops, config.n_layer, config.n_embd, options);
  if (!chain.ok()) return fail(chain.status());

  // Inputs: the embedding of BOS (the blocks' time does not depend on the values).
  const int32_t bos = std::max<int32_t>((*local)->tokenizer->bos_id(), 0);
  std::vector<float> one(static_cast<size_t>(config.n_embd));
  if (auto s = (*local)->head->Embed(std::span<const int32_t>(&bos, 1), one.data()); !s.ok()) {
    return fail(s);
  }
  std::vector<float> input;
  for (int64_t t = 0; t < flags.step_tokens; ++t) input.insert(input.end(), one.begin(), one.end());
  std::vector<float> out(one.size());
  // The prompt: one position, so that every measured step has a cache to attend to.
  if (auto s = (*chain)->Forward(1, one.data(), out.data()); !s.ok()) return fail(s);

  std::vector<int> depths = {0};  // 0: sequential Forward
  depths.insert(depths.end(), flags.depths.begin(), flags.depths.end());
  std::map<int, std::vector<double>> ms;                 // per depth, one figure per round
  for (int round = -1; round < flags.rounds; ++round) {  // round -1: warm-up, not counted
    for (size_t k = 0; k < depths.size(); ++k) {
      const int depth = depths[(k + static_cast<size_t>(std::max(round, 0))) % depths.size()];
      auto per_step = Measure(**chain, input, flags.step_tokens, flags.steps, depth);
      if (!per_step.ok()) return fail(per_step.status());
      if (round >= 0) ms[depth].push_back(*per_step);
    }
  }
  const double sequential =
      *std::min_element(ms[0].begin(), ms[0].end());  // best of the rounds, every depth alike
  std::printf("%-12s %14s %14s %10s\n", "in flight", "ms per step", "steps/s", "speedup");
  for (int depth : depths) {
    const double best = *std::min_element(ms[depth].begin(), ms[depth].end());
    json line = {{"bench", "pipeline"},
                 {"model", config.name},
                 {"peers", flags.peers},
                 {"latency_ms", flags.latency_ms},
                 {"bandwidth_mbit", flags.bandwidth_mbit},
                 {"step_tokens", flags.step_tokens},
                 {"steps", flags.steps},
                 {"in_flight", depth == 0 ? "sequential Forward" : std::to_string(depth)},
                 {"ms_per_step_best", best},
                 {"ms_per_step_rounds", ms[depth]},
                 {"speedup", sequential / best},
                 {"floor_sequential_ms", (flags.peers + 1) * flags.latency_ms}};
    std::fprintf(stderr, "%s\n", line.dump().c_str());
    std::printf("%-12s %14.1f %14.1f %9.2fx\n",
                depth == 0 ? "sequential" : std::to_string(depth).c_str(), best, 1e3 / best,
                sequential / best);
  }
  std::printf("max steps in flight %lld, rollbacks %lld, positions rolled back %lld\n",
              static_cast<long long>((*chain)->max_in_flight()),
              static_cast<long long>((*chain)->rollbacks()),
              static_cast<long long>((*chain)->rolled_back_positions()));
  chain->reset();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  CLI::App app{"Steps in flight through a chain of peers behind emulated links"};
  app.add_option("--swarm", flags.swarm_binary, "The swarm binary")->required();
  app.add_option("-m,--model", flags.model, "GGUF model")->required();
  app.add_option("--peers", flags.peers, "Peers (equal block splits)");
  app.add_option("--latency-ms", flags.latency_ms, "One-way latency of every link (0: none)");
  app.add_option("--bandwidth-mbit", flags.bandwidth_mbit, "Bandwidth of every link");
  app.add_option("--steps", flags.steps, "Steps per measurement");
  app.add_option("--step-tokens", flags.step_tokens, "Positions per step");
  app.add_option("--depths", flags.depths, "Steps in flight to measure")->delimiter(',');
  app.add_option("--rounds", flags.rounds, "Rounds (best of them is reported)");
  app.add_option("-t,--threads", flags.threads, "Threads of every peer and of the client");
  CLI11_PARSE(app, argc, argv);
  return Run(flags);
}
