// `swarm generate`: text generation, streamed to stdout. Without peers every block runs in-process
// (the reference the swarm must match).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "cli/cache_type_flags.h"
#include "cli/commands.h"
#include "cli/sampling_flags.h"
#include "cli/swarm_secret_flag.h"
#include "model/generator.h"
#include "registry/dht_registry.h"
#include "router/chain_session.h"
#include "router/peer_performance.h"
#include "router/swarm_hop_provider.h"
#include "shard/local_model.h"
#include "shard/local_pipeline.h"
#include "transport/codec.h"

namespace swarm::cli {
namespace {

struct GenerateFlags {
  std::string model_path;
  std::string prompt;
  int64_t n_predict = 128;
  model::SamplingParams sampling;
  kernels::BackendOptions backend;
  int64_t context = 0;
  bool ignore_eos = false;
  std::vector<std::string> peers;          // a fixed chain, in order
  std::vector<std::string> initial_peers;  // DHT bootstrap: route through the swarm
  std::string dht_bind = "0.0.0.0";
  double route_wait_s = 20;
  int64_t min_step_timeout_ms = 2000;
  int64_t max_step_timeout_ms = 300000;
  std::string codec = "f32";
  double verify_share = 0.1;     // share of steps spot-checked on a replica (0: off)
  double verify_tolerance = -1;  // between backends; < 0: the built-in table
  CacheTypeFlags cache_types;    // in-process blocks' KV caches
  std::string swarm_secret;
};

// The parts of a swarm client that outlive the session opening: the DHT node, what this process
// measures of the peers, and the router.
struct SwarmClient {
  std::unique_ptr<registry::DhtRegistry> registry;
  router::PeerPerformance performance;
  std::unique_ptr<router::SwarmHopProvider> provider;
};

absl::StatusOr<router::ChainOptions> MakeChainOptions(
    const GenerateFlags& flags, int64_t max_length,
    const std::optional<transport::SwarmSecret>& swarm_secret) {
  router::ChainOptions options;
  SWARM_ASSIGN_OR_RETURN(options.codec, transport::ParseCodec(flags.codec));
  options.max_length = max_length;
  options.min_step_timeout = std::chrono::milliseconds(flags.min_step_timeout_ms);
  options.max_step_timeout = std::chrono::milliseconds(flags.max_step_timeout_ms);
  if (swarm_secret) {
    // A member of a private swarm: every connection to a peer is CurveZMQ with the swarm's keys.
    SWARM_ASSIGN_OR_RETURN(auto keys, transport::DeriveCurveKeys(*swarm_secret));
    options.socket.curve = transport::SwarmCurveClient(keys);
  }
  options.verify.share = flags.verify_share;
  options.verify.cross_backend_tolerance = flags.verify_tolerance;
  return options;
}

// The blocks run through a chain the router builds from the swarm's DHT records, with failover.
absl::StatusOr<std::unique_ptr<router::ChainSession>> OpenSwarmChain(
    zmq::context_t& context, const GenerateFlags& flags, const model::ModelConfig& config,
    int64_t max_length, const std::optional<transport::SwarmSecret>& swarm_secret,
    SwarmClient& client) {
  SWARM_ASSIGN_OR_RETURN(auto options, MakeChainOptions(flags, max_length, swarm_secret));
  registry::DhtRegistryOptions dht;
  dht.bind_address = flags.dht_bind;
  dht.initial_peers = flags.initial_peers;
  dht.client_only = true;
  dht.swarm_secret = swarm_secret;
  // Reaching the DHT is part of finding peers: a bootstrap node that is restarting (or briefly
  // unreachable) is waited for as long as missing blocks are, not failed after a fixed 10 s.
  dht.connect_timeout = std::max(absl::Seconds(1), absl::Seconds(flags.route_wait_s));
  SWARM_ASSIGN_OR_RETURN(client.registry, registry::DhtRegistry::Create(dht));
  router::SwarmHopProviderOptions provider_options;
  provider_options.model_id = config.model_id;
  provider_options.n_blocks = config.n_layer;
  provider_options.cache_tokens_needed = max_length;
  provider_options.route_wait = absl::Milliseconds(static_cast<int64_t>(flags.route_wait_s * 1e3));
  provider_options.performance = &client.performance;
  provider_options.context = &context;
  provider_options.socket = options.socket;
  client.provider = std::make_unique<router::SwarmHopProvider>(*client.registry, provider_options);
  SWARM_ASSIGN_OR_RETURN(auto hops, client.provider->InitialRoute());
  return router::ChainSession::Open(context, std::move(hops), config.n_layer, config.n_embd,
                                    options, client.provider.get());
}

// The blocks run through a fixed chain of peers: each peer's whole span, in the given order.
absl::StatusOr<std::unique_ptr<router::ChainSession>> OpenChain(
    zmq::context_t& context, const GenerateFlags& flags, const model::ModelConfig& config,
    int64_t max_length, const std::optional<transport::SwarmSecret>& swarm_secret) {
  SWARM_ASSIGN_OR_RETURN(auto options, MakeChainOptions(flags, max_length, swarm_secret));
  std::vector<router::ChainHop> hops;
  for (const std::string& address : flags.peers) {
    SWARM_ASSIGN_OR_RETURN(
        auto info, router::QueryInfo(context, address, options.open_timeout, options.socket));
    if (info.model_id != config.model_id) {
      return absl::FailedPreconditionError(absl::StrCat("peer ", address, " serves model ",
                                                        info.model_id, ", not ", config.model_id));
    }
    hops.push_back({address, info.first_block, info.last_block, info.peer_id});
  }
  return router::ChainSession::Open(context, std::move(hops), config.n_layer, config.n_embd,
                                    options);
}

int RunGenerate(const GenerateFlags& flags) {
  if (auto status = flags.sampling.Validate(); !status.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    return 2;
  }
  const auto load_start = std::chrono::steady_clock::now();
  // With peers the client holds only the embeddings, output norm, head and tokenizer.
  const bool in_process = flags.peers.empty() && flags.initial_peers.empty();
  if (in_process && !flags.swarm_secret.empty()) {
    std::fprintf(stderr, "error: --swarm-secret is for a swarm: give --initial-peers or --peers\n");
    return 2;
  }
  auto swarm_secret = LoadSwarmSecretFlag(flags.swarm_secret);
  if (!swarm_secret.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(swarm_secret.status().message()).c_str());
    return 1;
  }
  auto local = shard::LocalModel::Load(flags.model_path, flags.backend, in_process,
                                       flags.cache_types.Types());
  if (!local.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(local.status().message()).c_str());
    return 1;
  }
  shard::LocalModel& m = **local;
  const double load_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();

  std::vector<int32_t> prompt;
  if (m.tokenizer->add_bos() && m.tokenizer->bos_id() >= 0) prompt.push_back(m.tokenizer->bos_id());
  for (int32_t id : m.tokenizer->Encode(flags.prompt, false, false)) prompt.push_back(id);
  if (prompt.empty()) {
    std::fprintf(stderr, "error: the prompt is empty and the model has no BOS token\n");
    return 2;
  }
  const int64_t context =
      flags.context > 0 ? flags.context : static_cast<int64_t>(prompt.size()) + flags.n_predict;
  if (static_cast<int64_t>(prompt.size()) + flags.n_predict > context) {
    std::fprintf(stderr, "error: prompt (%zu tokens) + -n %lld exceeds the context of %lld\n",
                 prompt.size(), static_cast<long long>(flags.n_predict),
                 static_cast<long long>(context));
    return 2;
  }
  zmq::context_t zmq_context(1);
  std::unique_ptr<model::BlockPipeline> pipeline;
  router::ChainSession* chain = nullptr;
  SwarmClient swarm_client;
  if (in_process) {
    auto local_pipeline = shard::LocalPipeline::Create(*m.blocks, context);
    if (!local_pipeline.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(local_pipeline.status().message()).c_str());
      return 1;
    }
    pipeline = std::move(*local_pipeline);
  } else {
    auto opened =
        flags.peers.empty()
            ? OpenSwarmChain(zmq_context, flags, m.config, context, *swarm_secret, swarm_client)
            : OpenChain(zmq_context, flags, m.config, context, *swarm_secret);
    if (!opened.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(opened.status().message()).c_str());
      return 1;
    }
    chain = opened->get();
    pipeline = std::move(*opened);
  }
  model::Sampler sampler(flags.sampling);
  // SPM drops the space before the first word only when the text starts right after BOS.
  const bool at_start = prompt.size() == 1 && prompt[0] == m.tokenizer->bos_id();
  model::StreamingDecoder decoder(*m.tokenizer, at_start);
  model::GenerateOptions options;
  options.max_new_tokens = flags.n_predict;
  options.stop_at_end_of_generation = !flags.ignore_eos;
  auto stats = model::Generate(prompt, options, *m.head, *pipeline, sampler, *m.tokenizer,
                               [&](int32_t token) {
                                 const std::string text = decoder.Push(token);
                                 std::fwrite(text.data(), 1, text.size(), stdout);
                                 std::fflush(stdout);
                                 return true;
                               });
  // The text ends with a newline, as llama2.c's and llama.cpp's command-line tools end theirs.
  const std::string tail = decoder.Finish() + "\n";
  std::fwrite(tail.data(), 1, tail.size(), stdout);
  std::fflush(stdout);
  if (!stats.ok()) {
    std::fprintf(stderr, "\nerror: %s\n", std::string(stats.status().message()).c_str());
    return 1;
  }
  std::fprintf(stderr,
               "load: %.3f s | prompt: %lld tokens, %.2f tokens/s | generation: %lld tokens, "
               "%.2f tokens/s | backend %s\n",
               load_seconds, static_cast<long long>(stats->prompt_tokens),
               stats->prompt_seconds > 0 ? stats->prompt_tokens / stats->prompt_seconds : 0.0,
               static_cast<long long>(stats->generated_tokens),
               stats->generation_seconds > 0
                   ? (stats->generated_tokens - 1) / stats->generation_seconds
                   : 0.0,
               m.backend->name().c_str());
  if (chain != nullptr) {
    if (chain->failovers() > 0) {
      std::fprintf(stderr, "failovers: %d, %.3f s replacing peers and replaying history\n",
                   chain->failovers(), chain->failover_seconds());
    }
    std::fprintf(stderr, "%s\n", chain->verification().Summary().c_str());
    for (size_t i = 0; i < chain->hops().size(); ++i) {
      const router::ChainHop& hop = chain->hops()[i];
      const router::HopTiming& t = chain->timings()[i];
      std::fprintf(stderr, "hop %zu: %s blocks %u..%u: %lld steps, %.2f ms/step\n", i,
                   hop.address.c_str(), hop.first_block, hop.last_block,
                   static_cast<long long>(t.steps), t.steps ? 1e3 * t.seconds / t.steps : 0.0);
    }
  }
  return 0;
}

}  // namespace

void AddGenerateCommand(CLI::App& app, ExitCode& exit_code) {
  auto flags = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text from a prompt, streamed to stdout");
  cmd->footer(
      "Examples:\n"
      "  swarm generate -m stories260K.gguf -p \"Once upon a time\" -n 64\n"
      "  swarm generate -m stories260K.gguf -p \"\" -n 200 --temp 0   # BOS only, greedy\n"
      "  swarm generate -m stories260K.gguf --peers tcp://127.0.0.1:5001,tcp://127.0.0.1:5002 "
      "-p \"Once\"");
  cmd->add_option("-m,--model", flags->model_path, "Model GGUF file")->required();
  cmd->add_option("-p,--prompt", flags->prompt, "Prompt text (\"\" = BOS alone)");
  cmd->add_option("-n,--n-predict", flags->n_predict, "Tokens to generate")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("-c,--ctx-size", flags->context, "Context length (0 = prompt + n)");
  cmd->add_flag("--ignore-eos", flags->ignore_eos, "Keep generating past end-of-text tokens");
  cmd->add_option("--backend,--device", flags->backend.name,
                  "Backend, alias --device: auto (GPU 0 if usable, else cpu), cpu, cpu:generic, "
                  "cpu:avx2, cpu:avx512, reference, cuda (= cuda:0), cuda:N")
      ->capture_default_str();
  cmd->add_option("-t,--threads", flags->backend.threads, "CPU threads (0 = physical cores)");
  cmd->add_option("--peers", flags->peers,
                  "A fixed chain of peers (ZeroMQ endpoints, comma-separated, in block order)")
      ->delimiter(',');
  cmd->add_option("--initial-peers", flags->initial_peers,
                  "DHT nodes of the swarm (host:port, comma-separated): route automatically")
      ->delimiter(',');
  cmd->add_option("--dht-bind", flags->dht_bind, "Address of this client's DHT node")
      ->capture_default_str();
  cmd->add_option("--route-wait", flags->route_wait_s,
                  "Seconds to wait for the swarm's DHT to answer, and for peers covering every "
                  "block, before giving up")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  cmd->add_option("--min-step-timeout-ms", flags->min_step_timeout_ms,
                  "A peer silent this long (or 20x its usual step time) is replaced")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{10}, int64_t{3600000}));
  cmd->add_option("--max-step-timeout-ms", flags->max_step_timeout_ms,
                  "However long the prompt, a step not answered within this long fails its peer")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{10}, int64_t{86400000}));
  cmd->add_option("--codec", flags->codec,
                  "Activation codec on the wire: f32, f16, bf16, int8; +zstd to compress")
      ->capture_default_str();
  cmd->add_option("--verify-share", flags->verify_share,
                  "Share of steps also run on another peer serving the same blocks and compared "
                  "(a new peer's first steps and, after a mismatch, every step are checked too; "
                  "0: off). Outputs are always checked for NaN, zeros and absurd norms")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--verify-tolerance", flags->verify_tolerance,
                  "Relative error allowed between peers of different backends (-1: the measured "
                  "table of docs/VERIFICATION.md); the same CPU backend must match bit for bit")
      ->capture_default_str()
      ->check(CLI::Range(-1.0, 1e3));
  AddSamplingFlags(*cmd, flags->sampling);
  AddCacheTypeFlags(*cmd, flags->cache_types);
  AddSwarmSecretFlag(*cmd, flags->swarm_secret);
  cmd->callback([flags, &exit_code] { exit_code.value = RunGenerate(*flags); });
}

}  // namespace swarm::cli
