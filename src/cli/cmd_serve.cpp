// `swarm serve`: a volunteer peer hosting a contiguous range of a model's blocks.
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include "base/status_macros.h"
#include "cli/block_range_flag.h"
#include "cli/commands.h"
#include "kernels/backend_factory.h"
#include "model/gguf.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "shard/block_stack.h"
#include "transport/peer_server.h"

namespace swarm::cli {
namespace {

struct ServeFlags {
  std::string model_path;
  std::string blocks;
  std::string listen = "tcp://127.0.0.1:0";
  int64_t cache_tokens = 16384;
  int64_t max_length = 2048;
  int64_t idle_timeout_s = 300;
  kernels::BackendOptions backend;
  std::string peer_id;
};

sigset_t StopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);  // SignalStopper's own wake-up at destruction
  return signals;
}

// Stops the server from a dedicated thread that waits for SIGINT/SIGTERM, so no signal handler
// touches the server. The signals must be blocked (BlockStopSignals) before any thread starts,
// ZeroMQ's included, so that only this thread receives them.
void BlockStopSignals() {
  const sigset_t signals = StopSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

class SignalStopper {
 public:
  explicit SignalStopper(transport::PeerServer& server) : signals_(StopSignals()) {
    waiter_ = std::thread([this, &server] {
      int signal = 0;
      sigwait(&signals_, &signal);
      server.Stop();
    });
  }
  ~SignalStopper() {
    pthread_kill(waiter_.native_handle(), SIGUSR1);
    waiter_.join();
  }

 private:
  sigset_t signals_;
  std::thread waiter_;
};

absl::Status Serve(const ServeFlags& flags) {
  BlockStopSignals();
  SWARM_ASSIGN_OR_RETURN(auto file, model::GgufFile::Open(flags.model_path));
  SWARM_ASSIGN_OR_RETURN(auto config, model::ReadModelConfig(*file));
  std::pair<int64_t, int64_t> range = {0, config.n_layer};
  if (!flags.blocks.empty()) {
    SWARM_ASSIGN_OR_RETURN(range, ParseBlockRange(flags.blocks, config.n_layer));
  }
  SWARM_ASSIGN_OR_RETURN(auto backend, kernels::MakeBackend(flags.backend));
  SWARM_ASSIGN_OR_RETURN(auto weights,
                         model::LoadBlockWeights(*file, config, range.first, range.second));
  SWARM_ASSIGN_OR_RETURN(auto stack, shard::BlockStack::Create(*backend, config, weights));

  zmq::context_t context(1);
  transport::PeerServerOptions options;
  options.listen = flags.listen;
  options.model_id = config.model_id;
  options.peer_id = flags.peer_id;
  options.limits.cache_tokens = flags.cache_tokens;
  options.limits.max_session_length = flags.max_length;
  options.limits.idle_timeout = std::chrono::seconds(flags.idle_timeout_s);
  SWARM_ASSIGN_OR_RETURN(auto server, transport::PeerServer::Create(context, *stack, options));
  SignalStopper stopper(*server);
  // The first line of stdout says where the peer listens (scripts and tests read it).
  std::printf("listening on %s blocks %lld:%lld\n", server->endpoint().c_str(),
              static_cast<long long>(range.first), static_cast<long long>(range.second));
  std::fflush(stdout);
  std::fprintf(stderr, "serve: model %s, blocks [%lld, %lld) of %lld, backend %s, cache %lld tokens\n",
               config.model_id.c_str(), static_cast<long long>(range.first),
               static_cast<long long>(range.second), static_cast<long long>(config.n_layer),
               backend->name().c_str(), static_cast<long long>(flags.cache_tokens));
  SWARM_RETURN_IF_ERROR(server->Run());
  const transport::PeerServerStats& s = server->stats();
  std::fprintf(stderr,
               "serve: stopped after %lld steps (%lld tokens) in %lld batches, %.3f s computing, "
               "%lld errors sent\n",
               static_cast<long long>(s.steps), static_cast<long long>(s.tokens),
               static_cast<long long>(s.batches), s.compute_seconds,
               static_cast<long long>(s.errors_sent));
  return absl::OkStatus();
}

}  // namespace

void AddServeCommand(CLI::App& app, ExitCode& exit_code) {
  auto flags = std::make_shared<ServeFlags>();
  CLI::App* cmd = app.add_subcommand("serve", "Host a range of a model's blocks for the swarm");
  cmd->footer(
      "Examples:\n"
      "  swarm serve -m stories260K.gguf --blocks 0:3 --listen tcp://127.0.0.1:0\n"
      "  swarm serve -m part.gguf --blocks 3:5 --listen tcp://0.0.0.0:31337 --cache-tokens 65536");
  cmd->add_option("-m,--model", flags->model_path, "Model GGUF file (whole model or a slice)")
      ->required();
  cmd->add_option("--blocks", flags->blocks, "Blocks to serve, A:B (A inclusive, B exclusive)");
  cmd->add_option("--listen", flags->listen, "ZeroMQ endpoint to bind (port 0: any free port)")
      ->capture_default_str();
  cmd->add_option("--cache-tokens", flags->cache_tokens, "KV-cache budget in tokens, all sessions")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  cmd->add_option("--max-length", flags->max_length, "Longest session in tokens")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  cmd->add_option("--idle-timeout", flags->idle_timeout_s, "Seconds before an idle session ends")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{86400}));
  cmd->add_option("--backend", flags->backend.name, "auto, reference, cpu")->capture_default_str();
  cmd->add_option("-t,--threads", flags->backend.threads, "CPU threads (0 = physical cores)");
  cmd->add_option("--peer-id", flags->peer_id, "Name this peer reports (default: none)");
  cmd->callback([flags, &exit_code] {
    absl::Status status = Serve(*flags);
    if (!status.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
      exit_code.value = 1;
    }
  });
}

}  // namespace swarm::cli
