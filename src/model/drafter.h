// A drafter proposes the tokens a target model will probably generate next, for speculative
// decoding (model/speculative_generator.h) to verify in one step. The generation loop owns its
// drafter and calls it from its own thread only.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "model/sampler.h"

namespace swarm::model {

// One proposed token and the distribution it was drawn from (q of speculative sampling). An empty
// q is a point mass: the token was chosen, not drawn (greedy drafting, lookup).
struct DraftToken {
  int32_t token = 0;
  std::vector<TokenProb> q;
};

class Drafter {
 public:
  virtual ~Drafter() = default;
  // Appends up to max_tokens proposed continuations of `tokens` (the whole sequence so far:
  // prompt, accepted and earlier drafted tokens) to `out`; fewer (even none) when it has no good
  // guess. `tokens` may share only a prefix with the previous call's (the rest was rejected).
  virtual absl::Status Draft(std::span<const int32_t> tokens, int64_t max_tokens,
                             std::vector<DraftToken>& out) = 0;
  // For logs: "lookup", "model".
  virtual std::string name() const = 0;
};

}  // namespace swarm::model
