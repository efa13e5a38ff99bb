// The token loop of text generation: embed, run every block, sample, repeat. The blocks run behind
// the BlockPipeline interface, in-process (shard::LocalPipeline) or through a chain of peers
// (router), so the swarm and the in-process run share this loop and must give the same tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "model/client_head.h"
#include "model/sampler.h"
#include "model/tokenizer.h"

namespace swarm::model {

// All of a model's blocks for one sequence. Positions advance with every successful Forward().
class BlockPipeline {
 public:
  virtual ~BlockPipeline() = default;
  // hidden_in, hidden_out: [n_embd, n_tokens] host memory, the next n_tokens positions.
  virtual absl::Status Forward(int64_t n_tokens, const float* hidden_in, float* hidden_out) = 0;
  // True when Forward waits for other processes (peers) rather than computing here.
  virtual bool waits_on_peers() const { return false; }
};

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  bool stop_at_end_of_generation = true;  // stop on EOS/EOT (the token is not reported)
  // Optional observers (log-probabilities). on_prompt_hidden: once, with the final hidden states
  // of every prompt position ([n_embd, prompt.size()] host) from the prompt's forward step; an
  // error ends the generation. on_logits: each step's logits ([n_vocab]) before sampling.
  std::function<absl::Status(const float* hidden, int64_t n_tokens)> on_prompt_hidden;
  std::function<void(std::span<const float> logits)> on_logits;
};

struct GenerationStats {
  int64_t prompt_tokens = 0;
  double prompt_seconds = 0;  // prompt forward until the first token is sampled
  int64_t generated_tokens = 0;
  double generation_seconds = 0;  // after the first token
  std::string finish_reason;      // "length", "stop" (end of generation) or "cancelled"
};

// Generates up to max_new_tokens after `prompt` (non-empty). on_token is called with each new token
// as soon as it is sampled; returning false stops generation ("cancelled").
absl::StatusOr<GenerationStats> Generate(std::span<const int32_t> prompt,
                                         const GenerateOptions& options, ClientHead& head,
                                         BlockPipeline& blocks, Sampler& sampler,
                                         const Tokenizer& tokenizer,
                                         const std::function<bool(int32_t)>& on_token);

}  // namespace swarm::model
