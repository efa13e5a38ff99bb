// `swarm api`: the OpenAI-compatible HTTP gateway with the swarm dashboard and Prometheus
// metrics, in front of the swarm (--initial-peers) or, without peers, the in-process engine;
// optionally behind API keys, with CORS for chosen origins and per-client limits.
#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>

#include "absl/strings/numbers.h"
#include "base/status_macros.h"
#include "cli/cache_type_flags.h"
#include "cli/commands.h"
#include "cli/draft_flags.h"
#include "cli/model_source.h"
#include "cli/swarm_secret_flag.h"
#include "gateway/api_ready_line.h"
#include "gateway/api_server.h"
#include "gateway/local_engine.h"
#include "gateway/swarm_engine.h"
#include "model/gguf.h"
#include "model/tokenizer.h"
#include "shard/speculation.h"

namespace swarm::cli {
namespace {

struct ApiFlags {
  std::string model_path;
  ModelSourceFlags source;  // -m URL / --model-url: the client part is fetched
  std::vector<std::string> initial_peers;
  std::string listen = "127.0.0.1:8080";
  std::string dht_bind = "0.0.0.0";
  std::string codec = "f32";
  std::string chat_template;
  std::string model_id;
  int concurrency = 4;
  int32_t max_tokens_limit = 4096;
  int32_t n_ctx = 0;
  kernels::BackendOptions backend;
  double route_wait_s = 20;
  double verify_share = 0.1;
  double request_timeout_s = 10;
  double header_timeout_s = 5;
  double idle_timeout_s = 15;
  std::vector<std::string> api_keys;
  std::string api_key_file;
  std::vector<std::string> cors_origins;
  int max_connections_per_client = 16;
  int max_queued_per_client = 4;
  CacheTypeFlags cache_types;  // in-process blocks' KV caches
  shard::SpeculationFlags draft;
  std::string swarm_secret;
};

absl::Status ParseListen(const std::string& listen, std::string& host, uint16_t& port) {
  const size_t colon = listen.rfind(':');
  uint32_t value = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &value) ||
      value > 65535) {
    return absl::InvalidArgumentError("--listen must be HOST:PORT, e.g. 127.0.0.1:8080");
  }
  host = listen.substr(0, colon);
  if (host.empty()) host = "0.0.0.0";
  port = static_cast<uint16_t>(value);
  return absl::OkStatus();
}

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1e3));
}

absl::Status RunApi(const ApiFlags& flags) {
  // Signals wait for sigwait() below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Settle access before loading anything: a bad key file is a startup error, not a late one.
  gateway::ApiServerOptions options;
  SWARM_RETURN_IF_ERROR(ParseListen(flags.listen, options.http.host, options.http.port));
  options.access.api_keys = flags.api_keys;
  if (!flags.api_key_file.empty()) {
    SWARM_ASSIGN_OR_RETURN(std::vector<std::string> keys,
                           gateway::ReadApiKeyFile(flags.api_key_file));
    options.access.api_keys.insert(options.access.api_keys.end(), keys.begin(), keys.end());
  }
  options.access.cors_origins = flags.cors_origins;
  SWARM_RETURN_IF_ERROR(gateway::AccessControl::Create(options.access).status());
  if (options.access.api_keys.empty() && !gateway::IsLoopbackAddress(options.http.host)) {
    std::fprintf(stderr,
                 "warning: serving on %s without --api-key: anyone who can reach this address "
                 "can use the gateway and the swarm behind it\n",
                 options.http.host.c_str());
  }

  if (flags.initial_peers.empty() && !flags.swarm_secret.empty()) {
    return absl::InvalidArgumentError("--swarm-secret is for a swarm: give --initial-peers");
  }
  SWARM_ASSIGN_OR_RETURN(auto swarm_secret, LoadSwarmSecretFlag(flags.swarm_secret));
  SWARM_ASSIGN_OR_RETURN(
      const std::string model_path,
      ResolveClientModel(flags.source, flags.model_path, flags.initial_peers.empty()));
  // The drafter is checked against the target's vocabulary before either engine loads.
  std::unique_ptr<model::GgufFile> target_file;
  std::unique_ptr<model::Tokenizer> target_vocab;
  std::unique_ptr<shard::Speculation> speculation;
  if (flags.draft.enabled()) {
    SWARM_ASSIGN_OR_RETURN(target_file, model::GgufFile::Open(model_path));
    SWARM_ASSIGN_OR_RETURN(target_vocab, model::Tokenizer::FromGguf(*target_file));
    SWARM_ASSIGN_OR_RETURN(speculation,
                           shard::Speculation::Create(flags.draft, *target_vocab, flags.backend));
    std::fprintf(stderr, "speculative decoding: %s\n", speculation->description().c_str());
  }
  std::unique_ptr<gateway::CompletionEngine> engine;  // borrows speculation
  if (flags.initial_peers.empty()) {
    gateway::LocalEngineOptions options;
    options.backend = flags.backend;
    options.n_ctx = flags.n_ctx;
    options.kv_types = flags.cache_types.Types();
    options.model_id = flags.model_id;
    options.speculation = speculation.get();
    SWARM_ASSIGN_OR_RETURN(engine, gateway::LocalEngine::Load(model_path, options));
  } else {
    gateway::SwarmEngineOptions options;
    options.initial_peers = flags.initial_peers;
    options.dht_bind = flags.dht_bind;
    options.backend = flags.backend;
    options.codec = flags.codec;
    options.n_ctx = flags.n_ctx;
    options.model_id = flags.model_id;
    options.route_wait_s = flags.route_wait_s;
    options.swarm_secret = std::move(swarm_secret);
    options.verify_share = flags.verify_share;
    options.speculation = speculation.get();
    SWARM_ASSIGN_OR_RETURN(engine, gateway::SwarmEngine::Create(model_path, options));
  }
  options.max_concurrent_generations = flags.concurrency;
  options.max_queued_per_client = flags.max_queued_per_client;
  options.max_tokens_limit = flags.max_tokens_limit;
  options.chat_template = flags.chat_template;
  options.http.request_timeout = Millis(flags.request_timeout_s);
  options.http.header_timeout = Millis(flags.header_timeout_s);
  options.http.idle_timeout = Millis(flags.idle_timeout_s);
  options.http.max_connections_per_client = flags.max_connections_per_client;
  SWARM_ASSIGN_OR_RETURN(auto server, gateway::ApiServer::Start(options, *engine));
  const gateway::ApiReadyLine ready{.host = options.http.host,
                                    .port = server->port(),
                                    .model_id = engine->info().id,
                                    .chat_template = server->chat_template_name()};
  std::printf("%s\n", ready.Format().c_str());
  std::fflush(stdout);
  int signal = 0;
  sigwait(&signals, &signal);
  server->Stop();
  return absl::OkStatus();
}

}  // namespace

void AddApiCommand(CLI::App& app, ExitCode& exit_code) {
  auto flags = std::make_shared<ApiFlags>();
  CLI::App* cmd = app.add_subcommand(
      "api", "OpenAI-compatible HTTP API, swarm dashboard (/) and metrics (/metrics)");
  cmd->footer(
      "Examples:\n"
      "  swarm api -m stories260K.gguf --initial-peers 127.0.0.1:4000 --listen 127.0.0.1:8080\n"
      "  swarm api -m stories260K.gguf --listen 127.0.0.1:0     # in-process, any free port\n"
      "  swarm api -m stories260K.gguf --listen 0.0.0.0:8080 --api-key-file keys.txt\n"
      "  curl http://127.0.0.1:8080/v1/completions -d '{\"prompt\":\"Once\",\"max_tokens\":20}'\n"
      "  curl http://127.0.0.1:8080/v1/models -H \"Authorization: Bearer $KEY\"   # with keys\n"
      "With keys, every route but GET /health and the dashboard page (GET /) needs one; keys\n"
      "travel in clear over plain HTTP: put the gateway behind TLS to use it across a network.");
  cmd->add_option("-m,--model", flags->model_path,
                  "Model GGUF (its client part is used), or an http:// URL (as --model-url)");
  AddModelSourceFlags(*cmd, flags->source);
  cmd->add_option("--initial-peers", flags->initial_peers,
                  "DHT nodes of the swarm (host:port, comma-separated); none: in-process")
      ->delimiter(',');
  cmd->add_option("--listen", flags->listen, "HOST:PORT to serve HTTP on (port 0: any free port)")
      ->capture_default_str();
  cmd->add_option("--dht-bind", flags->dht_bind, "Address of this client's DHT node")
      ->capture_default_str();
  cmd->add_option("--codec", flags->codec, "Activation codec: f32, f16, bf16, int8 (+zstd)")
      ->capture_default_str();
  cmd->add_option("--chat-template", flags->chat_template,
                  "llama2, llama3, chatml, mistral, zephyr or plain (default: detect from GGUF)");
  cmd->add_option("--model-id", flags->model_id,
                  "Model id clients use (default: the GGUF file's stem)");
  cmd->add_option("--concurrency", flags->concurrency, "Generations at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  cmd->add_option("--max-tokens-limit", flags->max_tokens_limit, "Largest max_tokens accepted")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("-c,--ctx-size", flags->n_ctx, "Context length (0: the model's)");
  cmd->add_option("--route-wait", flags->route_wait_s, "Seconds to wait for a route")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  cmd->add_option("--verify-share", flags->verify_share,
                  "Share of steps also run on another peer of the same blocks and compared (a "
                  "new peer's first steps and, after a mismatch, every step too; 0: off)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--request-timeout", flags->request_timeout_s,
                  "Seconds a client may take to send one request (slower ones are closed)")
      ->capture_default_str()
      ->check(CLI::Range(0.05, 3600.0));
  cmd->add_option("--header-timeout", flags->header_timeout_s,
                  "Seconds a client may take to send a request's headers (a new connection: from "
                  "connecting)")
      ->capture_default_str()
      ->check(CLI::Range(0.05, 3600.0));
  cmd->add_option("--idle-timeout", flags->idle_timeout_s,
                  "Seconds a keep-alive connection may wait for its next request")
      ->capture_default_str()
      ->check(CLI::Range(0.05, 3600.0));
  cmd->add_option("--api-key", flags->api_keys,
                  "A key clients must send (Authorization: Bearer KEY); repeatable. Visible to "
                  "other local users in the process list: prefer --api-key-file");
  cmd->add_option("--api-key-file", flags->api_key_file,
                  "File of keys, one a line (blank lines and # comments ignored)");
  cmd->add_option("--cors-origin", flags->cors_origins,
                  "Web origin (scheme://host[:port], or *) whose pages may call the API; "
                  "repeatable. Default: none");
  cmd->add_option("--max-connections-per-client", flags->max_connections_per_client,
                  "Open connections per client address (IPv6: per /64); more are answered 429")
      ->capture_default_str()
      ->check(CLI::Range(1, 512));
  cmd->add_option("--max-queued-per-client", flags->max_queued_per_client,
                  "Generations running or waiting per client address; more are answered 429")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  AddCacheTypeFlags(*cmd, flags->cache_types);
  AddDraftFlags(*cmd, flags->draft);
  AddSwarmSecretFlag(*cmd, flags->swarm_secret);
  cmd->add_option("--backend,--device", flags->backend.name,
                  "Backend of the client head (and in-process), alias --device: auto (GPU 0 if "
                  "usable, else cpu), cpu, cpu:generic, cpu:avx2, cpu:avx512, reference, cuda "
                  "(= cuda:0), cuda:N")
      ->capture_default_str();
  cmd->add_option("-t,--threads", flags->backend.threads, "CPU threads (0 = physical cores)");
  cmd->callback([flags, &exit_code] {
    absl::Status status = RunApi(*flags);
    if (!status.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
      exit_code.value = 1;
    }
  });
}

}  // namespace swarm::cli
