// What a client needs for speculative decoding, set up once from the --draft, --draft-model and
// --draft-max flags: the draft model (loaded once, weights, head and blocks in this process) and
// a fresh drafter for each generation (its own KV cache). Thread-safe: generations on many
// threads share the draft model, whose steps take turns on a mutex.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kernels/backend_factory.h"
#include "model/drafter.h"
#include "model/speculative_generator.h"
#include "model/tokenizer.h"
#include "shard/local_model.h"

namespace swarm::shard {

struct SpeculationFlags {
  std::string draft = "none";  // "none" or "lookup"; a draft model overrides it
  std::string draft_model;     // GGUF of a small model with the target's vocabulary
  int64_t draft_max = 0;       // drafted tokens per chunk at most; 0: the loop's default

  bool enabled() const { return draft != "none" || !draft_model.empty(); }
};

class Speculation {
 public:
  // Null when the flags ask for no drafting. InvalidArgument for an unknown --draft or a bad
  // --draft-max; FailedPrecondition when the draft model's vocabulary is not the target's.
  static absl::StatusOr<std::unique_ptr<Speculation>> Create(
      const SpeculationFlags& flags, const model::Tokenizer& target,
      const kernels::BackendOptions& backend);

  // A drafter for one generation of up to max_length positions; a model drafter draws with
  // `sampling`'s transforms (its own random state).
  absl::StatusOr<std::unique_ptr<model::Drafter>> NewDrafter(const model::SamplingParams& sampling,
                                                             int64_t max_length);
  const model::SpeculativeOptions& options() const { return options_; }
  // "lookup" or "model <file>", for logs.
  const std::string& description() const { return description_; }

 private:
  Speculation() = default;

  model::SpeculativeOptions options_;
  std::string description_;
  const model::Tokenizer* target_ = nullptr;
  std::unique_ptr<LocalModel> draft_;  // null for lookup
  absl::Mutex draft_mu_;               // one draft step at a time on the shared draft model
};

}  // namespace swarm::shard
