// Speculative decoding: a Drafter proposes tokens, the target's blocks verify a whole chunk of them
// in one step (one traversal of a chain of peers), and several chunks are in flight at once
// (BlockPipeline::Submit/Collect) so that a chain stays busy. The output is exactly the target's:
// greedy gives plain greedy decoding's tokens, sampling the target's distribution (speculative
// sampling). Runs on the caller's thread; borrows everything.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "model/client_head.h"
#include "model/drafter.h"
#include "model/generator.h"
#include "model/sampler.h"
#include "model/tokenizer.h"

namespace swarm::model {

struct SpeculativeOptions {
  // Drafted tokens per verification chunk at most (> 0), else kAdaptiveDraftMax; below it the
  // length follows the measured acceptance (the expected run of accepted tokens, and one more).
  int64_t draft_max = 0;
  // Verification chunks in flight at most; the loop picks the depth below it from the measured
  // round trip and acceptance.
  int64_t max_in_flight = 16;
  static constexpr int64_t kAdaptiveDraftMax = 16;
};

struct SpeculativeStats {
  int64_t drafted = 0;        // drafted tokens the target verified (accepted or rejected)
  int64_t accepted = 0;       // of those, accepted
  int64_t traversals = 0;     // verification chunks submitted (each one pass through the blocks)
  int64_t tokens = 0;         // tokens those chunks produced (every generated token but the first)
  int64_t max_in_flight = 0;  // most chunks in flight at once
  double acceptance() const { return drafted > 0 ? static_cast<double>(accepted) / drafted : 0; }
  double tokens_per_traversal() const {
    return traversals > 0 ? static_cast<double>(tokens) / traversals : 0;
  }
};

// "" when a generation with this sampler and these options can run speculatively with exactly the
// target's output; else what prevents it (e.g. "constrained decoding"), for the caller to say why
// it falls back to plain decoding.
std::string SpeculationBlocker(const Sampler& sampler, const GenerateOptions& options);

// As Generate (the same options, callbacks and finish reasons), drafting with `drafter`. `blocks`
// must roll back (Rollback). FailedPrecondition where SpeculationBlocker objects. `stats`, when
// set, receives the figures (also on error); `on_in_flight`, when set, hears the number of chunks
// in flight whenever it changes.
absl::StatusOr<GenerationStats> GenerateSpeculative(
    std::span<const int32_t> prompt, const GenerateOptions& options,
    const SpeculativeOptions& speculative, ClientHead& head, BlockPipeline& blocks,
    Sampler& sampler, const Tokenizer& tokenizer, Drafter& drafter,
    const std::function<bool(int32_t)>& on_token, SpeculativeStats* stats = nullptr,
    const std::function<void(int64_t)>& on_in_flight = nullptr);

// The line `swarm generate` prints on stderr after a speculative run:
// "speculative: drafted D, accepted A (R%), T.TT tokens per traversal, up to C chunks in flight".
std::string SpeculativeSummary(const SpeculativeStats& stats);

}  // namespace swarm::model
