// swarm_lying_peer: a real peer (peer::PeerNode and PeerServer, announced in the DHT like any
// other) whose blocks lie. It takes `swarm serve`'s core flags, so peer::LocalSwarm launches it
// as it launches `swarm serve`, plus --lie MODE (noise, zeros, nan, perturb) for every position
// from --lie-after on. A test tool only: the production binary has no way to lie.
// Usage: swarm_lying_peer serve -m MODEL --blocks A:B [--initial-peers H:P] --lie noise
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "kernels/backend_factory.h"
#include "model/gguf.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "peer/peer_node.h"
#include "peer/ready_line.h"
#include "shard/block_stack.h"
#include "shard/throughput_probe.h"

namespace swarm::test_support {
namespace {

struct Flags {
  std::string model_path;
  std::string blocks;
  std::string listen = "tcp://127.0.0.1:0";
  std::string dht_bind = "127.0.0.1";
  std::vector<std::string> initial_peers;
  std::string backend = "reference";
  double announce_interval_s = 5;
  double record_ttl_s = 60;
  std::string lie = "noise";
  int64_t lie_after = 0;   // first position whose output is corrupted
  int64_t lie_every = 1;   // then every lie_every-th position
  double lie_scale = 1.0;  // noise / perturbation size relative to each token's rms
};

// A ServingStack that runs the real blocks, then corrupts the outputs of positions lie_after,
// lie_after + lie_every, ...
class LyingStack final : public shard::ServingStack {
 public:
  LyingStack(std::unique_ptr<shard::ServingStack> inner, const Flags& flags)
      : inner_(std::move(inner)), flags_(flags) {}

  int64_t first_block() const override { return inner_->first_block(); }
  int64_t last_block() const override { return inner_->last_block(); }
  const model::ModelConfig& config() const override { return inner_->config(); }
  std::string devices() const override { return inner_->devices(); }
  std::string Describe() const override { return inner_->Describe() + " (lying)"; }
  absl::StatusOr<std::unique_ptr<shard::SequenceCache>> NewCache(int64_t capacity) override {
    return inner_->NewCache(capacity);
  }
  void Park() override { inner_->Park(); }
  void Unpark() override { inner_->Unpark(); }

  absl::Status Forward(std::span<const shard::SequenceStep> steps, int64_t first, int64_t last,
                       const float* hidden_in, float* hidden_out) override {
    std::vector<int64_t> starts;
    for (const shard::SequenceStep& s : steps) starts.push_back(s.cache->length());
    SWARM_RETURN_IF_ERROR(inner_->Forward(steps, first, last, hidden_in, hidden_out));
    const int64_t n_embd = config().n_embd;
    float* token = hidden_out;
    for (size_t k = 0; k < steps.size(); ++k) {
      for (int64_t t = 0; t < steps[k].n_tokens; ++t, token += n_embd) {
        const int64_t position = starts[k] + t;
        if (position >= flags_.lie_after && (position - flags_.lie_after) % flags_.lie_every == 0) {
          Corrupt(std::span<float>(token, n_embd));
        }
      }
    }
    return absl::OkStatus();
  }

 private:
  void Corrupt(std::span<float> x) {
    double sum = 0;
    for (float v : x) sum += static_cast<double>(v) * v;
    const float rms = static_cast<float>(std::sqrt(sum / x.size()));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& v : x) {
      if (flags_.lie == "zeros") {
        v = 0;
      } else if (flags_.lie == "nan") {
        v = NAN;
      } else {  // noise, perturb: random values of the given size relative to the token's rms
        v += static_cast<float>(flags_.lie_scale) * rms * normal(rng_);
      }
    }
  }

  std::unique_ptr<shard::ServingStack> inner_;
  Flags flags_;
  std::mt19937 rng_{1234};
};

sigset_t StopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  return signals;
}

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1e3));
}

absl::Status Serve(const Flags& flags, std::unique_ptr<kernels::Backend>& backend) {
  SWARM_ASSIGN_OR_RETURN(auto file, model::GgufFile::Open(flags.model_path));
  SWARM_ASSIGN_OR_RETURN(auto config, model::ReadModelConfig(*file));
  kernels::BackendOptions backend_options;
  backend_options.name = flags.backend;
  SWARM_ASSIGN_OR_RETURN(backend, kernels::MakeBackend(backend_options));
  std::vector<std::string> range = absl::StrSplit(flags.blocks, ':');
  int32_t first = 0, last = 0;
  if (range.size() != 2 || !absl::SimpleAtoi(range[0], &first) ||
      !absl::SimpleAtoi(range[1], &last)) {
    return absl::InvalidArgumentError("--blocks A:B");
  }
  peer::PeerNodeOptions options;
  options.model_id = config.model_id;
  options.n_layer = config.n_layer;
  options.blocks = registry::BlockRange{first, last};
  options.listen = flags.listen;
  options.limits.cache_tokens = 16384;
  options.limits.max_session_length = 2048;
  options.initial_peers = flags.initial_peers;
  options.dht_bind = flags.dht_bind;
  options.announce_interval = Millis(flags.announce_interval_s);
  options.record_ttl = Millis(flags.record_ttl_s);
  options.load_blocks = [&](registry::BlockRange blocks) -> absl::StatusOr<peer::LoadedBlocks> {
    SWARM_ASSIGN_OR_RETURN(auto weights,
                           model::LoadBlockWeights(*file, config, blocks.first, blocks.last));
    SWARM_ASSIGN_OR_RETURN(auto stack, shard::BlockStack::Create(*backend, config, weights));
    peer::LoadedBlocks loaded;
    SWARM_ASSIGN_OR_RETURN(loaded.throughput, shard::MeasureThroughput(*stack));
    loaded.stack = std::make_unique<LyingStack>(std::move(stack), flags);
    loaded.placement = loaded.stack->Describe();
    return loaded;
  };
  options.on_ready = [](const peer::PeerReady& ready) {
    const peer::ReadyLine line{.address = ready.endpoint,
                               .first_block = static_cast<uint32_t>(ready.blocks.first),
                               .last_block = static_cast<uint32_t>(ready.blocks.last),
                               .peer_id = ready.peer_id,
                               .dht_port = static_cast<uint16_t>(ready.dht_port)};
    std::printf("%s\n", line.Format().c_str());
    std::fflush(stdout);
  };
  peer::PeerNode node(std::move(options));
  // SIGTERM/SIGINT make the node leave, taken by a thread of their own (blocked everywhere else
  // by main); SIGUSR1 ends that thread once the node has left.
  const sigset_t signals = StopSignals();
  std::thread waiter([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    if (signal != SIGUSR1) node.Stop();
  });
  absl::Status status = node.Run();
  pthread_kill(waiter.native_handle(), SIGUSR1);
  waiter.join();
  return status;
}

}  // namespace
}  // namespace swarm::test_support

int main(int argc, char** argv) {
  const sigset_t signals = swarm::test_support::StopSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  swarm::test_support::Flags flags;
  CLI::App app("A peer that lies, for tests");
  CLI::App* serve = app.add_subcommand("serve", "Serve blocks, lying");
  serve->allow_extras();
  serve->add_option("-m,--model", flags.model_path)->required();
  serve->add_option("--blocks", flags.blocks)->required();
  serve->add_option("--listen", flags.listen);
  serve->add_option("--dht-bind", flags.dht_bind);
  serve->add_option("--initial-peers", flags.initial_peers)->delimiter(',');
  serve->add_option("--backend,--device", flags.backend);
  serve->add_option("--announce-interval", flags.announce_interval_s);
  serve->add_option("--record-ttl", flags.record_ttl_s);
  serve->add_option("--lie", flags.lie)->check(CLI::IsMember({"noise", "zeros", "nan", "perturb"}));
  serve->add_option("--lie-after", flags.lie_after, "First position whose output is wrong");
  serve->add_option("--lie-scale", flags.lie_scale, "Noise size relative to a token's rms");
  serve->add_option("--lie-every", flags.lie_every, "Lie on every N-th position only")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  app.require_subcommand(1);
  CLI11_PARSE(app, argc, argv);
  std::unique_ptr<swarm::kernels::Backend> backend;
  const absl::Status status = swarm::test_support::Serve(flags, backend);
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
