// Token sampling from logits: greedy, temperature, top-k, top-p, min-p, repetition penalty.
// A Sampler owns its seeded random state, so the same seed and logits give the same tokens.
// Not thread-safe: one per generation.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "absl/status/status.h"

namespace swarm::model {

struct SamplingParams {
  float temperature = 0.8f;     // 0 = greedy
  int32_t top_k = 40;           // <= 0: off
  float top_p = 0.95f;          // 1: off
  float min_p = 0.05f;          // 0: off
  float repeat_penalty = 1.0f;  // 1: off; applied to the last repeat_last_n tokens
  int32_t repeat_last_n = 64;
  uint64_t seed = 0;

  absl::Status Validate() const;  // InvalidArgument naming the bad field
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // logits: [n_vocab]; `history`: tokens so far (prompt and generated), for the repetition penalty.
  int32_t Sample(std::span<const float> logits, std::span<const int32_t> history);

 private:
  struct Candidate {
    int32_t id;
    float logit;
  };
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<Candidate> candidates_;
};

}  // namespace swarm::model
