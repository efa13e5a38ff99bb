#include "gateway/local_engine.h"

#include <chrono>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "gateway/logprob_tap.h"
#include "model/generator.h"
#include "model/sampler.h"
#include "shard/local_pipeline.h"

namespace swarm::gateway {
namespace {

constexpr const char* kLocalPeer = "local";

}  // namespace

absl::StatusOr<std::unique_ptr<LocalEngine>> LocalEngine::Load(const std::string& gguf_path,
                                                               const LocalEngineOptions& options) {
  absl::StatusOr<std::unique_ptr<shard::LocalModel>> loaded =
      shard::LocalModel::Load(gguf_path, options.backend, /*load_blocks=*/true, options.kv_types);
  if (!loaded.ok()) return loaded.status();
  std::unique_ptr<shard::LocalModel> m = std::move(*loaded);

  ModelInfo info;
  info.name = m->config.name;
  info.id = options.model_id;
  if (info.id.empty()) {
    const std::string stem = std::filesystem::path(gguf_path).stem().string();
    info.id = stem.empty() ? m->config.name : stem;
  }
  if (info.name.empty()) info.name = info.id;
  info.n_blocks = static_cast<int32_t>(m->config.n_layer);
  const int64_t n_ctx = options.n_ctx > 0 ? options.n_ctx : m->config.n_ctx_train;
  if (n_ctx <= 1 || n_ctx > (int64_t{1} << 24)) {
    return absl::InvalidArgumentError(absl::StrCat("unusable context length ", n_ctx));
  }
  info.n_ctx = static_cast<int32_t>(n_ctx);
  if (absl::StatusOr<std::string_view> t = m->file->GetString("tokenizer.chat_template"); t.ok()) {
    info.chat_template = std::string(*t);
  }
  return std::unique_ptr<LocalEngine>(new LocalEngine(std::move(m), std::move(info)));
}

LocalEngine::LocalEngine(std::unique_ptr<shard::LocalModel> model, ModelInfo info)
    : model_(std::move(model)), info_(std::move(info)) {}

absl::Status LocalEngine::Generate(const GenerationRequest& request,
                                   const TokenCallback& on_token) {
  const int64_t n_prompt = static_cast<int64_t>(request.prompt.size());
  if (n_prompt == 0) return absl::InvalidArgumentError("the prompt has no tokens");
  if (request.max_tokens < 0 || n_prompt + request.max_tokens > info_.n_ctx) {
    return absl::InvalidArgumentError(absl::StrCat("prompt (", n_prompt, " tokens) + max_tokens (",
                                                   request.max_tokens, ") exceeds the context of ",
                                                   info_.n_ctx));
  }
  const int32_t n_vocab = tokenizer().n_vocab();
  for (int32_t id : request.prompt) {
    if (id < 0 || id >= n_vocab) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", id, " outside the vocabulary"));
    }
  }
  if (absl::Status s = request.sampling.Validate(); !s.ok()) return s;
  if (request.max_tokens == 0) return absl::OkStatus();

  absl::MutexLock run_lock(&run_mu_);
  // The client may have left while this request waited for its turn.
  if (request.is_cancelled && request.is_cancelled()) {
    return absl::CancelledError("cancelled before it started");
  }
  const int64_t capacity = n_prompt + request.max_tokens;
  absl::StatusOr<std::unique_ptr<shard::LocalPipeline>> pipeline =
      shard::LocalPipeline::Create(*model_->blocks, capacity);
  if (!pipeline.ok()) return pipeline.status();
  model::Sampler sampler(request.sampling);
  const size_t bytes_per_token = model_->blocks->CacheBytesPerToken();

  const RouteHop route[] = {{kLocalPeer, "in-process", 0, info_.n_blocks}};
  model::GenerateOptions options;
  options.max_new_tokens = request.max_tokens;
  options.stop_at_end_of_generation = true;
  LogprobTap logprobs(request, *model_->head);
  logprobs.Install(options);

  using Clock = std::chrono::steady_clock;
  Clock::time_point last = Clock::now();
  int64_t position = n_prompt;
  auto on_sampled = [&](int32_t token) {
    const Clock::time_point now = Clock::now();
    const double step = std::chrono::duration<double>(now - last).count();
    last = now;
    ++position;
    if (request.metrics != nullptr) {
      request.metrics->ObservePeerStep(kLocalPeer, step);
      request.metrics->SetKvCacheUse(kLocalPeer, position, capacity, bytes_per_token);
    }
    {
      absl::MutexLock lock(&stats_mu_);
      tokens_in_use_ = position;
      if (step > 0) {
        const double rate = 1.0 / step;
        steps_per_second_ = steps_per_second_ == 0 ? rate : 0.9 * steps_per_second_ + 0.1 * rate;
      }
    }
    GenerationEvent event;
    event.token = token;
    event.route = route;
    event.logprobs = logprobs.For(token);
    return on_token(event);
  };
  absl::StatusOr<model::GenerationStats> stats = model::Generate(
      request.prompt, options, *model_->head, **pipeline, sampler, tokenizer(), on_sampled);
  {
    absl::MutexLock lock(&stats_mu_);
    tokens_in_use_ = 0;
  }
  if (request.metrics != nullptr) {
    request.metrics->SetKvCacheUse(kLocalPeer, 0, capacity, bytes_per_token);
  }
  return stats.ok() ? absl::OkStatus() : stats.status();
}

absl::StatusOr<std::vector<model::TokenLogprob>> LocalEngine::Score(const ScoreRequest& request) {
  if (absl::Status s = ValidateScoreRequest(request, info_.n_ctx, tokenizer().n_vocab()); !s.ok()) {
    return s;
  }
  absl::MutexLock run_lock(&run_mu_);
  if (request.is_cancelled && request.is_cancelled()) {
    return absl::CancelledError("cancelled before it started");
  }
  const int64_t n = static_cast<int64_t>(request.tokens.size());
  absl::StatusOr<std::unique_ptr<shard::LocalPipeline>> pipeline =
      shard::LocalPipeline::Create(*model_->blocks, n);
  if (!pipeline.ok()) return pipeline.status();
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  absl::StatusOr<std::vector<model::TokenLogprob>> scored =
      model::ScoreSequence(*model_->head, **pipeline, request.tokens, request.options);
  if (request.metrics != nullptr) {
    request.metrics->ObservePeerStep(kLocalPeer,
                                     std::chrono::duration<double>(Clock::now() - start).count());
  }
  return scored;
}

SwarmView LocalEngine::Describe() const {
  SwarmView view;
  view.n_blocks = info_.n_blocks;
  PeerView peer;
  peer.id = kLocalPeer;
  peer.address = "in-process";
  peer.state = "local";
  peer.block_begin = 0;
  peer.block_end = info_.n_blocks;
  absl::MutexLock lock(&stats_mu_);
  peer.throughput = steps_per_second_;
  peer.cache_tokens_left = info_.n_ctx - tokens_in_use_;
  if (model_->blocks != nullptr) {
    const auto per_token = static_cast<int64_t>(model_->blocks->CacheBytesPerToken());
    peer.cache_bytes_left = peer.cache_tokens_left * per_token;
    peer.cache_bytes_total = info_.n_ctx * per_token;
  }
  view.peers.push_back(std::move(peer));
  return view;
}

}  // namespace swarm::gateway
