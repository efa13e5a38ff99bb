// The model drafter: a small model with the target's vocabulary runs in-process on the client
// (its own ClientHead and BlockPipeline, e.g. a quantized copy of the target) and proposes tokens
// one forward step each. When the target rejects some, its KV cache is rolled back to the last
// token both agree on. Borrows the head and the pipeline; one thread.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "model/client_head.h"
#include "model/drafter.h"
#include "model/generator.h"
#include "model/tokenizer.h"

namespace swarm::model {

class ModelDrafter final : public Drafter {
 public:
  // FailedPrecondition when the draft's vocabulary differs from the target's (size or any token's
  // text). `sampling`: how the draft chooses (temperature 0: its argmax, a point mass; else drawn
  // from its own distribution after those transforms, which speculative sampling then corrects).
  // `max_length`: the pipeline's capacity in positions.
  static absl::StatusOr<std::unique_ptr<ModelDrafter>> Create(
      ClientHead& head, BlockPipeline& blocks, const Tokenizer& draft_vocab,
      const Tokenizer& target_vocab, const SamplingParams& sampling, int64_t max_length);

  absl::Status Draft(std::span<const int32_t> tokens, int64_t max_tokens,
                     std::vector<DraftToken>& out) override;
  std::string name() const override { return "model"; }

 private:
  ModelDrafter(ClientHead& head, BlockPipeline& blocks, const SamplingParams& sampling,
               int64_t max_length)
      : head_(head), blocks_(blocks), sampler_(sampling), max_length_(max_length) {}
  // Runs tokens[fed_.size(), end) through the blocks; logits_ = the last position's.
  absl::Status Feed(std::span<const int32_t> tokens);

  ClientHead& head_;
  BlockPipeline& blocks_;
  Sampler sampler_;
  int64_t max_length_;
  std::vector<int32_t> fed_;  // the tokens whose positions the draft's cache holds
  std::vector<float> hidden_, logits_;
  std::vector<TokenProb> dist_;
};

}  // namespace swarm::model
