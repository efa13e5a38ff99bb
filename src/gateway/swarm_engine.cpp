#include "gateway/swarm_engine.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "gateway/logprob_tap.h"
#include "gateway/speculative_choice.h"
#include "model/client_head.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "router/chain_session.h"
#include "router/swarm_hop_provider.h"
#include "transport/codec.h"

namespace swarm::gateway {

absl::StatusOr<std::unique_ptr<SwarmEngine>> SwarmEngine::Create(
    const std::string& gguf_path, const SwarmEngineOptions& options) {
  std::unique_ptr<SwarmEngine> engine(new SwarmEngine());
  engine->options_ = options;
  SWARM_ASSIGN_OR_RETURN(engine->file_, model::GgufFile::Open(gguf_path));
  SWARM_ASSIGN_OR_RETURN(engine->config_, model::ReadModelConfig(*engine->file_));
  SWARM_ASSIGN_OR_RETURN(engine->tokenizer_, model::Tokenizer::FromGguf(*engine->file_));
  SWARM_ASSIGN_OR_RETURN(engine->client_weights_,
                         model::LoadClientWeights(*engine->file_, engine->config_));
  SWARM_RETURN_IF_ERROR(transport::ParseCodec(options.codec).status());
  ModelInfo& info = engine->info_;
  // The same id as the in-process engine: the file's stem ("stories260K"), as clients know the
  // model by its file; the GGUF's general.name is often just the architecture ("llama").
  info.name = engine->config_.name.empty() ? engine->config_.model_id : engine->config_.name;
  info.id = options.model_id;
  if (info.id.empty()) info.id = std::filesystem::path(gguf_path).stem().string();
  if (info.id.empty()) info.id = info.name;
  info.n_blocks = static_cast<int32_t>(engine->config_.n_layer);
  info.n_ctx =
      options.n_ctx > 0 ? options.n_ctx : static_cast<int32_t>(engine->config_.n_ctx_train);
  auto chat_template = engine->file_->GetString("tokenizer.chat_template");
  if (chat_template.ok()) info.chat_template = std::string(*chat_template);

  registry::DhtRegistryOptions dht;
  dht.bind_address = options.dht_bind;
  dht.initial_peers = options.initial_peers;
  dht.client_only = true;
  dht.swarm_secret = options.swarm_secret;
  if (options.swarm_secret) {
    SWARM_ASSIGN_OR_RETURN(auto keys, transport::DeriveCurveKeys(*options.swarm_secret));
    engine->socket_options_.curve = transport::SwarmCurveClient(keys);
  }
  SWARM_ASSIGN_OR_RETURN(engine->registry_, registry::DhtRegistry::Create(dht));
  engine->view_.n_blocks = info.n_blocks;
  engine->refresher_ = std::thread([e = engine.get()] { e->RefreshLoop(); });
  return engine;
}

SwarmEngine::~SwarmEngine() {
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (refresher_.joinable()) refresher_.join();
}

void SwarmEngine::RefreshLoop() {
  while (true) {
    auto snapshot = registry_->Snapshot(config_.model_id);
    if (snapshot.ok()) {
      SwarmView view;
      view.n_blocks = static_cast<int32_t>(config_.n_layer);
      for (const registry::PeerRecord& p : *snapshot) {
        PeerView peer;
        peer.id = p.peer_id.ToHex();
        peer.address = p.address;
        peer.state = std::string(registry::PeerStateName(p.state));
        peer.block_begin = p.blocks.first;
        peer.block_end = p.blocks.last;
        peer.throughput = p.blocks.size() > 0 ? p.decode_tps_per_block / p.blocks.size() : 0.0;
        if (auto measured = performance_.MeasuredTpsPerBlock(p.peer_id);
            measured && p.blocks.size() > 0) {
          peer.measured_throughput = *measured / p.blocks.size();
        }
        peer.cache_tokens_left = p.free_cache_tokens;
        if (p.total_cache_bytes > 0) {  // a version 1 record has no bytes
          peer.cache_bytes_left = p.free_cache_bytes;
          peer.cache_bytes_total = p.total_cache_bytes;
        }
        for (const auto& [id, ms] : p.rtt_ms) peer.rtts.push_back({id.ToHex(), ms});
        view.peers.push_back(std::move(peer));
      }
      std::lock_guard lock(view_mu_);
      view_ = std::move(view);
    }
    std::unique_lock lock(stop_mu_);
    if (stop_cv_.wait_for(
            lock,
            std::chrono::milliseconds(static_cast<int64_t>(options_.refresh_interval_s * 1e3)),
            [&] { return stopping_; })) {
      return;
    }
  }
}

SwarmView SwarmEngine::Describe() const {
  std::lock_guard lock(view_mu_);
  return view_;
}

absl::StatusOr<SwarmEngine::Chain> SwarmEngine::OpenChain(int64_t max_length) {
  // Per request: nothing is shared between requests but the DHT node, the bans and what was
  // measured of the peers.
  Chain chain;
  SWARM_ASSIGN_OR_RETURN(chain.backend, kernels::MakeBackend(options_.backend));
  SWARM_ASSIGN_OR_RETURN(chain.head,
                         model::ClientHead::Create(*chain.backend, config_, client_weights_));
  router::SwarmHopProviderOptions provider_options;
  provider_options.model_id = config_.model_id;
  provider_options.n_blocks = config_.n_layer;
  provider_options.cache_tokens_needed = max_length;
  provider_options.route_wait =
      absl::Milliseconds(static_cast<int64_t>(options_.route_wait_s * 1e3));
  provider_options.performance = &performance_;
  provider_options.context = &context_;
  provider_options.socket = socket_options_;
  provider_options.shared_bans = &bans_;
  chain.provider = std::make_unique<router::SwarmHopProvider>(*registry_, provider_options);
  SWARM_ASSIGN_OR_RETURN(auto hops, chain.provider->InitialRoute());
  router::ChainOptions chain_options;
  SWARM_ASSIGN_OR_RETURN(chain_options.codec, transport::ParseCodec(options_.codec));
  chain_options.max_length = max_length;
  chain_options.min_step_timeout = std::chrono::milliseconds(options_.min_step_timeout_ms);
  chain_options.max_step_timeout = std::chrono::milliseconds(options_.max_step_timeout_ms);
  chain_options.socket = socket_options_;
  chain_options.verify.share = options_.verify_share;
  chain_options.verify.cross_backend_tolerance = options_.verify_tolerance;
  SWARM_ASSIGN_OR_RETURN(chain.session, router::ChainSession::Open(
                                            context_, std::move(hops), config_.n_layer,
                                            config_.n_embd, chain_options, chain.provider.get()));
  return chain;
}

void SwarmEngine::ReportChainMetrics(const router::ChainSession& session, MetricsSink* metrics) {
  if (metrics == nullptr) return;
  const auto& timings = session.timings();
  for (size_t i = 0; i < timings.size() && i < session.hops().size(); ++i) {
    if (timings[i].steps > 0) {
      metrics->ObservePeerStep(session.hops()[i].peer_id, timings[i].seconds / timings[i].steps);
    }
  }
  const router::VerificationStats& verification = session.verification();
  for (const auto& [span, c] : verification.spans) {
    metrics->AddVerification(absl::StrCat(span.first, "..", span.second - 1), c.verified_steps,
                             c.unverified_steps, c.mismatches);
  }
  metrics->AddLiesCaught(verification.output_refused, verification.peers_banned);
}

absl::Status SwarmEngine::Generate(const GenerationRequest& request,
                                   const TokenCallback& on_token) {
  if (request.prompt.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  const int64_t max_length = static_cast<int64_t>(request.prompt.size()) + request.max_tokens;
  if (max_length > info_.n_ctx) {
    return absl::InvalidArgumentError("prompt and max_tokens exceed the context length");
  }
  if (request.n < 1 || request.n > 64) return absl::InvalidArgumentError("n must be in [1, 64]");
  if (!request.constraints.empty() &&
      request.constraints.size() != static_cast<size_t>(request.n)) {
    return absl::InvalidArgumentError("one constraint per choice");
  }
  if (request.n == 1) return GenerateChoice(request, 0, on_token);
  // One chain session per choice, all at once: their steps reach each peer together and its batch
  // scheduler runs them as one batch. Callbacks take turns.
  std::mutex callback_mu;
  auto serialized = [&](const GenerationEvent& event) {
    std::lock_guard lock(callback_mu);
    return on_token(event);
  };
  std::vector<absl::Status> results(static_cast<size_t>(request.n));
  std::vector<std::thread> threads;
  for (int32_t i = 0; i < request.n; ++i) {
    threads.emplace_back([&, i] { results[i] = GenerateChoice(request, i, serialized); });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& r : results) {
    if (!r.ok()) return r;
  }
  return absl::OkStatus();
}

absl::Status SwarmEngine::GenerateChoice(const GenerationRequest& request, int32_t index,
                                         const TokenCallback& on_token) {
  const int64_t max_length = static_cast<int64_t>(request.prompt.size()) + request.max_tokens;
  SWARM_ASSIGN_OR_RETURN(Chain chain, OpenChain(max_length));
  router::ChainSession* session = chain.session.get();

  model::SamplingParams sampling = request.sampling;
  sampling.seed += static_cast<uint64_t>(index);
  model::Sampler sampler(sampling);
  if (!request.constraints.empty()) sampler.set_constraint(request.constraints[index]);
  model::GenerateOptions generate_options;
  generate_options.max_new_tokens = request.max_tokens;
  // Every choice reports its own tokens' log-probabilities; the prompt's are the same for all
  // and come from choice 0 only.
  LogprobTap logprobs(request, *chain.head, /*with_prompt=*/index == 0);
  logprobs.Install(generate_options);
  std::vector<RouteHop> route;
  int reported_failovers = 0;
  auto report = [&](int32_t token) {
    if (route.empty() || session->failovers() != reported_failovers) {
      route.clear();
      for (const router::ChainHop& hop : session->hops()) {
        route.push_back({hop.peer_id, hop.address, static_cast<int32_t>(hop.first_block),
                         static_cast<int32_t>(hop.last_block)});
      }
      if (request.metrics != nullptr) {
        for (int i = reported_failovers; i < session->failovers(); ++i) {
          request.metrics->AddFailover();
        }
      }
      reported_failovers = session->failovers();
    }
    GenerationEvent event;
    event.index = index;
    event.token = token;
    event.route = route;
    event.failovers = session->failovers();
    event.logprobs = logprobs.For(token);
    return on_token(event);
  };
  absl::StatusOr<model::GenerationStats> stats;
  const std::string blocker =
      options_.speculation != nullptr ? SpeculationBlockerFor(request, *session) : "";
  if (!blocker.empty()) NoteSpeculationOff(request, blocker);
  if (options_.speculation != nullptr && blocker.empty()) {
    stats = GenerateChoiceSpeculatively(*options_.speculation, request, generate_options,
                                        *chain.head, *session, sampler, *tokenizer_, report);
  } else {
    stats = model::Generate(request.prompt, generate_options, *chain.head, *session, sampler,
                            *tokenizer_, report);
  }
  ReportChainMetrics(*session, request.metrics);
  return stats.ok() ? absl::OkStatus() : stats.status();
}

absl::StatusOr<std::vector<model::TokenLogprob>> SwarmEngine::Score(const ScoreRequest& request) {
  SWARM_RETURN_IF_ERROR(ValidateScoreRequest(request, info_.n_ctx, tokenizer_->n_vocab()));
  SWARM_ASSIGN_OR_RETURN(Chain chain, OpenChain(static_cast<int64_t>(request.tokens.size())));
  auto scored = model::ScoreSequence(*chain.head, *chain.session, request.tokens, request.options);
  if (request.metrics != nullptr) {
    for (int i = 0; i < chain.session->failovers(); ++i) request.metrics->AddFailover();
  }
  ReportChainMetrics(*chain.session, request.metrics);
  return scored;
}

}  // namespace swarm::gateway
