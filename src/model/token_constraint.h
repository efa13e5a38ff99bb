// A constraint on which tokens may come next (constrained decoding, e.g. JSON that must parse and
// match a schema). The sampler asks it to mask the logits before each draw and tells it the token
// drawn. One per sequence, owned by whoever asked for the constraint; same thread as its Sampler.
#pragma once

#include <cstdint>
#include <span>

namespace swarm::model {

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  // Sets the logit of every token that may not come next to -infinity. logits: [n_vocab].
  virtual void Mask(std::span<float> logits) = 0;
  // The token that was drawn (always one Mask() left finite, unless all were masked).
  virtual void Accept(int32_t token) = 0;
};

}  // namespace swarm::model
