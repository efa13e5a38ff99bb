// Log-probabilities of tokens: what evaluation (perplexity, an OpenAI client's `logprobs` and
// `echo`) asks of a model. ScoreToken turns one position's logits into the log-probability of a
// token and the most likely alternatives; ScoreSequence runs a whole token sequence through the
// blocks in batched steps and scores every position from the logits of all of them. Log-softmax of
// the raw logits (before any sampling transform: temperature, penalties, biases). Pure functions
// and borrowed objects; the caller's thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "model/client_head.h"
#include "model/generator.h"

namespace swarm::model {

struct TokenAlternative {
  int32_t token = -1;
  double logprob = 0;
};

struct TokenLogprob {
  int32_t token = -1;
  double logprob = 0;  // log p(token | everything before it)
  // The most likely tokens at this position, most likely first (ties: lower id first).
  std::vector<TokenAlternative> top;
};

// logits: [n_vocab] of one position. token must be inside [0, n_vocab); top_k is clamped to
// n_vocab.
TokenLogprob ScoreToken(std::span<const float> logits, int32_t token, int32_t top_k);

struct ScoreOptions {
  int64_t first = 1;  // score tokens[first..]; positions before only give context (>= 1)
  int64_t batch = 0;  // positions per forward step; <= 0: the whole sequence in one step
  int32_t top_k = 0;  // alternatives per scored token
};

// Runs tokens (positions 0.. of a fresh `blocks`) through head and blocks and returns, for every
// i in [options.first, tokens.size()), the log-probability of tokens[i] given tokens[0, i):
// tokens.size() - first entries. The logits of all positions of a step come from one product.
absl::StatusOr<std::vector<TokenLogprob>> ScoreSequence(ClientHead& head, BlockPipeline& blocks,
                                                        std::span<const int32_t> tokens,
                                                        const ScoreOptions& options);

}  // namespace swarm::model
