// The token loop of text generation: embed, run every block, sample, repeat. The blocks run behind
// the BlockPipeline interface, in-process (shard::LocalPipeline) or through a chain of peers
// (router), so the swarm and the in-process run share this loop and must give the same tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/client_head.h"
#include "model/sampler.h"
#include "model/tokenizer.h"

namespace swarm::model {

// All of a model's blocks for one sequence. Positions advance with every successful Forward().
//
// Speculative decoding adds two things. Rollback: forget the positions from some point on (the
// draft tokens the target rejected), cheaply, without recomputing what is kept. Pipelining:
// Submit sends a step without waiting for its outputs, so several steps can be in flight through
// a chain of peers at once; Collect returns the oldest submitted step's outputs, in submission
// order. Forward(n) is Submit(n) then Collect(). The defaults compute at Submit (in-process
// there is nothing to overlap) and keep the outputs until collected.
class BlockPipeline {
 public:
  virtual ~BlockPipeline() = default;
  // hidden_in, hidden_out: [n_embd, n_tokens] host memory, the next n_tokens positions.
  // Not while steps are in flight (in_flight() > 0).
  virtual absl::Status Forward(int64_t n_tokens, const float* hidden_in, float* hidden_out) = 0;
  // True when Forward waits for other processes (peers) rather than computing here.
  virtual bool waits_on_peers() const { return false; }

  // Forgets positions >= position, where 0 <= position <= the end of the collected positions;
  // every submitted step not yet collected is dropped too (its outputs are never returned). The
  // next Forward or Submit starts at `position`. Unimplemented by default.
  virtual absl::Status Rollback(int64_t position);
  // Queues the next n_tokens positions (after every submitted step) and returns without waiting
  // for them where the pipeline can. hidden_in: [n_embd, n_tokens] (its size says n_embd), copied
  // before returning.
  virtual absl::Status Submit(int64_t n_tokens, std::span<const float> hidden_in);
  // Waits for the oldest submitted step not yet collected and writes its outputs
  // ([n_embd, n_tokens] of that step) to hidden_out; FailedPrecondition when none is in flight.
  // An error fails that step and drops every later one (roll back, then submit again).
  virtual absl::Status Collect(float* hidden_out);
  // Steps submitted and not yet collected, and their positions in all.
  virtual int64_t in_flight() const { return static_cast<int64_t>(done_.size()); }
  virtual int64_t in_flight_tokens() const;

 protected:
  // Drops the default Submit's uncollected outputs (for a Rollback override).
  void DropCollected() { done_.clear(); }

 private:
  struct Done {
    int64_t n_tokens = 0;
    std::vector<float> hidden;  // [n_embd, n_tokens]
  };
  std::vector<Done> done_;  // the default Submit's outputs, oldest first
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
