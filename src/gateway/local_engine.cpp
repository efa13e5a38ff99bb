#include "gateway/local_engine.h"

#include <chrono>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "gateway/logprob_tap.h"
#include "gateway/speculative_choice.h"
#include "model/client_head.h"
#include "model/generator.h"
#include "model/sampler.h"
#include "shard/block_stack.h"
#include "shard/local_pipeline.h"

namespace swarm::gateway {
namespace {

constexpr const char* kLocalPeer = "local";
constexpr int32_t kMaxChoices = 64;

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
  return std::unique_ptr<LocalEngine>(
      new LocalEngine(std::move(m), std::move(info), options.speculation));
}

LocalEngine::LocalEngine(std::unique_ptr<shard::LocalModel> model, ModelInfo info,
                         shard::Speculation* speculation)
    : model_(std::move(model)), info_(std::move(info)), speculation_(speculation) {}

std::optional<absl::Status> LocalEngine::GenerateSpeculatively(const GenerationRequest& request,
                                                               const TokenCallback& on_token) {
  if (speculation_ == nullptr) return std::nullopt;
  if (request.n > 1) {  // the choices run as one batch, which has no speculative form
    NoteSpeculationOff(request, "several choices batched");
    return std::nullopt;
  }
  const int64_t capacity = static_cast<int64_t>(request.prompt.size()) + request.max_tokens;
  absl::StatusOr<std::unique_ptr<shard::LocalPipeline>> pipeline =
      shard::LocalPipeline::Create(*model_->blocks, capacity);
  if (!pipeline.ok()) return pipeline.status();
  if (const std::string blocker = SpeculationBlockerFor(request, **pipeline); !blocker.empty()) {
    NoteSpeculationOff(request, blocker);
    return std::nullopt;
  }
  model::Sampler sampler(request.sampling);
  model::GenerateOptions options;
  options.max_new_tokens = request.max_tokens;
  LogprobTap logprobs(request, *model_->head, /*with_prompt=*/true);
  logprobs.Install(options);
  const RouteHop route[] = {{kLocalPeer, "in-process", 0, info_.n_blocks}};
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  int64_t tokens = 0;
  absl::StatusOr<model::GenerationStats> stats =
      GenerateChoiceSpeculatively(*speculation_, request, options, *model_->head, **pipeline,
                                  sampler, tokenizer(), [&](int32_t token) {
                                    ++tokens;
                                    GenerationEvent event;
                                    event.token = token;
                                    event.route = route;
                                    event.logprobs = logprobs.For(token);
                                    return on_token(event);
                                  });
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (request.metrics != nullptr && tokens > 0) {
    request.metrics->ObservePeerStep(kLocalPeer, seconds / static_cast<double>(tokens));
  }
  if (tokens > 0 && seconds > 0) {
    absl::MutexLock lock(&stats_mu_);
    const double rate = static_cast<double>(tokens) / seconds;
    steps_per_second_ = steps_per_second_ == 0 ? rate : 0.9 * steps_per_second_ + 0.1 * rate;
  }
  return stats.ok() ? absl::OkStatus() : stats.status();
}

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
  if (request.n < 1 || request.n > kMaxChoices) {
    return absl::InvalidArgumentError(absl::StrCat("n must be in [1, ", kMaxChoices, "]"));
  }
  if (!request.constraints.empty() &&
      request.constraints.size() != static_cast<size_t>(request.n)) {
    return absl::InvalidArgumentError("one constraint per choice");
  }
  if (request.max_tokens == 0) return absl::OkStatus();

  absl::MutexLock run_lock(&run_mu_);
  // The client may have left while this request waited for its turn.
  if (request.is_cancelled && request.is_cancelled()) {
    return absl::CancelledError("cancelled before it started");
  }
  if (std::optional<absl::Status> done = GenerateSpeculatively(request, on_token)) return *done;
  const int64_t capacity = n_prompt + request.max_tokens;
  const int32_t n = request.n;
  shard::ServingStack& stack = *model_->blocks;
  model::ClientHead& head = *model_->head;
  const int64_t n_embd = head.config().n_embd;
  const size_t bytes_per_token = model_->blocks->CacheBytesPerToken();

  // One sequence per choice, stepped together: every step is one batch over the live choices.
  struct Choice {
    std::unique_ptr<shard::SequenceCache> cache;
    std::unique_ptr<model::Sampler> sampler;
    std::vector<int32_t> history;
    bool live = true;
    // Log-probabilities: the tap reads the logits each token was sampled from. Only choice 0's
    // reports the prompt's (the same for every choice).
    std::unique_ptr<LogprobTap> logprobs;
    model::GenerateOptions observers;
  };
  std::vector<Choice> choices(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    Choice& c = choices[i];
    absl::StatusOr<std::unique_ptr<shard::SequenceCache>> cache = stack.NewCache(capacity);
    if (!cache.ok()) return cache.status();
    c.cache = std::move(*cache);
    model::SamplingParams params = request.sampling;
    params.seed += static_cast<uint64_t>(i);
    c.sampler = std::make_unique<model::Sampler>(params);
    if (!request.constraints.empty()) c.sampler->set_constraint(request.constraints[i]);
    c.history = request.prompt;
    c.logprobs = std::make_unique<LogprobTap>(request, head, /*with_prompt=*/i == 0);
    c.logprobs->Install(c.observers);
  }

  const RouteHop route[] = {{kLocalPeer, "in-process", 0, info_.n_blocks}};
  using Clock = std::chrono::steady_clock;
  Clock::time_point last = Clock::now();
  int64_t position = n_prompt;

  // The prompt, once per choice: [n_embd, n * n_prompt].
  std::vector<float> prompt_hidden(static_cast<size_t>(n_embd * n_prompt));
  if (absl::Status s = head.Embed(request.prompt, prompt_hidden.data()); !s.ok()) return s;
  std::vector<float> hidden(static_cast<size_t>(n_embd * n_prompt * n));
  for (int32_t i = 0; i < n; ++i) {
    std::copy(prompt_hidden.begin(), prompt_hidden.end(), hidden.begin() + i * n_embd * n_prompt);
  }
  std::vector<shard::SequenceStep> steps;
  std::vector<int32_t> live;  // choice of each step
  for (int32_t i = 0; i < n; ++i) {
    steps.push_back({choices[i].cache.get(), n_prompt});
    live.push_back(i);
  }
  std::vector<float> logits(static_cast<size_t>(head.config().n_vocab));
  std::vector<int32_t> next_tokens;
  absl::Status status;
  for (int32_t t = 0; t < request.max_tokens && !steps.empty(); ++t) {
    status = stack.Forward(steps, hidden.data(), hidden.data());
    if (!status.ok()) break;
    // The prompt's log-probabilities, once, from choice 0's copy of the prompt step.
    if (t == 0 && choices[0].observers.on_prompt_hidden) {
      status = choices[0].observers.on_prompt_hidden(hidden.data(), n_prompt);
      if (!status.ok()) break;
    }
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
      tokens_in_use_ = position * n;
      if (step > 0) {
        const double rate = 1.0 / step;
        steps_per_second_ = steps_per_second_ == 0 ? rate : 0.9 * steps_per_second_ + 0.1 * rate;
      }
    }
    // Each step's last position gives its choice's next token.
    int64_t offset = 0;
    std::vector<int32_t> still_live;
    next_tokens.clear();
    for (size_t k = 0; k < steps.size(); ++k) {
      offset += steps[k].n_tokens;
      Choice& c = choices[live[k]];
      status = head.Logits(hidden.data() + (offset - 1) * n_embd, logits.data());
      if (!status.ok()) break;
      if (c.observers.on_logits) c.observers.on_logits(logits);
      const int32_t token = c.sampler->Sample(logits, c.history);
      c.history.push_back(token);
      bool go_on = !tokenizer().IsEndOfGeneration(token);
      if (go_on) {
        GenerationEvent event;
        event.index = live[k];
        event.token = token;
        event.route = route;
        event.logprobs = c.logprobs->For(token);
        go_on = on_token(event);
      }
      if (go_on && t + 1 < request.max_tokens) {
        still_live.push_back(live[k]);
        next_tokens.push_back(token);
      }
    }
    if (!status.ok()) break;
    live = std::move(still_live);
    steps.clear();
    for (int32_t i : live) steps.push_back({choices[i].cache.get(), 1});
    if (!steps.empty()) {
      status = head.Embed(next_tokens, hidden.data());
      if (!status.ok()) break;
    }
  }
  {
    absl::MutexLock lock(&stats_mu_);
    tokens_in_use_ = 0;
  }
  if (request.metrics != nullptr) {
    request.metrics->SetKvCacheUse(kLocalPeer, 0, capacity, bytes_per_token);
  }
  return status;
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
