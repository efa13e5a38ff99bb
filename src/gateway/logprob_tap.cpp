#include "gateway/logprob_tap.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace swarm::gateway {

void LogprobTap::Install(model::GenerateOptions& options) {
  if (with_prompt_ && request_.prompt_logprobs && request_.on_prompt_logprobs) {
    options.on_prompt_hidden = [this](const float* hidden, int64_t n_tokens) {
      return OnPromptHidden(hidden, n_tokens);
    };
  }
  if (request_.logprobs >= 0) {
    options.on_logits = [this](std::span<const float> logits) {
      logits_.assign(logits.begin(), logits.end());
    };
  }
}

absl::Status LogprobTap::OnPromptHidden(const float* hidden, int64_t n_tokens) {
  std::vector<model::TokenLogprob> scored;
  // Position p's logits score prompt[p + 1]; the last position's belong to the first new token.
  const int64_t n = n_tokens - 1;
  if (n > 0) {
    const int64_t n_vocab = head_.config().n_vocab;
    std::vector<float> logits(static_cast<size_t>(n_vocab * n));  // [n_vocab, n]
    SWARM_RETURN_IF_ERROR(head_.LogitsBatch(hidden, n, logits.data()));
    scored.reserve(static_cast<size_t>(n));
    for (int64_t p = 0; p < n; ++p) {
      scored.push_back(model::ScoreToken(
          std::span<const float>(logits.data() + p * n_vocab, static_cast<size_t>(n_vocab)),
          request_.prompt[static_cast<size_t>(p + 1)], std::max(0, request_.logprobs)));
    }
  }
  request_.on_prompt_logprobs(std::move(scored));
  return absl::OkStatus();
}

const model::TokenLogprob* LogprobTap::For(int32_t token) {
  if (request_.logprobs < 0 || logits_.empty()) return nullptr;
  current_ = model::ScoreToken(logits_, token, request_.logprobs);
  return &current_;
}

absl::Status ValidateScoreRequest(const ScoreRequest& request, int32_t n_ctx, int32_t n_vocab) {
  const int64_t n = static_cast<int64_t>(request.tokens.size());
  if (n < 2) return absl::InvalidArgumentError("scoring needs at least 2 tokens");
  if (n > n_ctx) {
    return absl::InvalidArgumentError(absl::StrCat(n, " tokens exceed the context of ", n_ctx));
  }
  for (int32_t id : request.tokens) {
    if (id < 0 || id >= n_vocab) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", id, " outside the vocabulary"));
    }
  }
  if (request.options.first < 1 || request.options.first >= n) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot score from position ", request.options.first, " of ", n));
  }
  if (request.options.top_k < 0 || request.options.top_k > n_vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_k ", request.options.top_k, " out of range"));
  }
  return absl::OkStatus();
}

}  // namespace swarm::gateway
