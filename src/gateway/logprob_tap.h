// Connects a GenerationRequest's wish for log-probabilities to model::Generate's observers: the
// prompt's from the prompt's own forward step (every position's logits in one product), each
// sampled token's from the logits it was sampled from. One per generation, on the generating
// thread; borrows the request and the client head.
#pragma once

#include <cstdint>
#include <vector>

#include "gateway/completion_engine.h"
#include "model/client_head.h"
#include "model/generator.h"
#include "model/scoring.h"

namespace swarm::gateway {

class LogprobTap {
 public:
  // with_prompt false: this generation leaves the prompt's log-probabilities to another (with
  // n > 1 choices only one of them reports them).
  LogprobTap(const GenerationRequest& request, model::ClientHead& head, bool with_prompt = true)
      : request_(request), head_(head), with_prompt_(with_prompt) {}

  // Sets the observers the request needs (none when it wants no log-probabilities).
  void Install(model::GenerateOptions& options);
  // The log-probability of the token just sampled: null when the request wants none. Valid until
  // the next call.
  const model::TokenLogprob* For(int32_t token);

 private:
  absl::Status OnPromptHidden(const float* hidden, int64_t n_tokens);

  const GenerationRequest& request_;
  model::ClientHead& head_;
  bool with_prompt_;
  std::vector<float> logits_;  // [n_vocab] of the step being sampled
  model::TokenLogprob current_;
};

// The checks every engine applies to a ScoreRequest before running it: 2 <= tokens <= n_ctx, ids
// inside the vocabulary, options in range.
absl::Status ValidateScoreRequest(const ScoreRequest& request, int32_t n_ctx, int32_t n_vocab);

}  // namespace swarm::gateway
