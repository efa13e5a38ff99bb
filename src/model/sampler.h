// Token sampling from logits: greedy, temperature, top-k, top-p, min-p, repetition penalty,
// OpenAI's presence/frequency penalties and logit bias, and an optional TokenConstraint. A Sampler
// owns its seeded random state, so the same seed and logits give the same tokens.
// Not thread-safe: one per generation.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "model/token_constraint.h"

namespace swarm::model {

// One token's probability in a distribution the sampler draws from.
struct TokenProb {
  int32_t id = 0;
  double p = 0;
};

struct SamplingParams {
  float temperature = 0.8f;     // 0 = greedy
  int32_t top_k = 40;           // <= 0: off
  float top_p = 0.95f;          // 1: off
  float min_p = 0.05f;          // 0: off
  float repeat_penalty = 1.0f;  // 1: off; applied to the last repeat_last_n tokens
  int32_t repeat_last_n = 64;
  uint64_t seed = 0;
  // OpenAI's penalties over the tokens this sampler generated (not the prompt): a token's logit
  // drops by presence_penalty once it appeared and by frequency_penalty per appearance. [-2, 2].
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  // Added to a token's logit: (token id, bias in [-100, 100]). -100 bans the token; 100 forces it
  // (only tokens biased by 100 remain, unless a constraint forbids them all).
  std::vector<std::pair<int32_t, float>> logit_bias;

  absl::Status Validate() const;  // InvalidArgument naming the bad field
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // logits: [n_vocab]; `history`: tokens so far (prompt and generated), for the repetition penalty.
  int32_t Sample(std::span<const float> logits, std::span<const int32_t> history);
  // Not owned; must outlive the sampler's use. Null: unconstrained.
  void set_constraint(TokenConstraint* constraint) { constraint_ = constraint; }
  TokenConstraint* constraint() const { return constraint_; }

  // For speculative decoding, Sample in three parts. Distribution: what Sample would draw from now
  // (after penalties, bias, repetition penalty, top-k, top-p, min-p and temperature), the kept
  // tokens with probabilities summing to 1 (greedy: the token Sample returns, with 1); nothing
  // changes. Not with a constraint (it cannot be asked about a position ahead). Accept: `token` is
  // the next token of the sequence (the penalties count it), as Sample records its draw. Uniform:
  // a uniform double in [0, 1) from the sampler's random state. DrawFrom: a token of `dist` drawn
  // with one Uniform().
  void Distribution(std::span<const float> logits, std::span<const int32_t> history,
                    std::vector<TokenProb>& out);
  void Accept(int32_t token) { ++counts_[token]; }
  double Uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }
  int32_t DrawFrom(std::span<const TokenProb> dist);
  const SamplingParams& params() const { return params_; }

 private:
  // adjusted_ = logits after the penalties, bias and mask.
  void Adjust(std::span<const float> logits, bool mask);
  // Fills candidates_[0, n) and their weights probs_[0, n) (unnormalised) from adjusted logits and
  // returns n; `certain`: the first candidate is the answer and no random number is drawn.
  size_t Prepare(std::span<const float> logits, std::span<const int32_t> history, bool& certain);
  // Draws from logits already adjusted (penalties, bias, mask).
  int32_t Draw(std::span<const float> logits, std::span<const int32_t> history);

  struct Candidate {
    int32_t id;
    float logit;
  };
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<Candidate> candidates_;
  std::vector<double> probs_;                     // weights of candidates_ kept by Prepare
  std::vector<float> adjusted_;                   // [n_vocab] logits after penalties, bias, mask
  absl::flat_hash_map<int32_t, int32_t> counts_;  // generated token -> times drawn
  TokenConstraint* constraint_ = nullptr;
};

}  // namespace swarm::model
