#include "model/model_drafter.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace swarm::model {

absl::StatusOr<std::unique_ptr<ModelDrafter>> ModelDrafter::Create(
    ClientHead& head, BlockPipeline& blocks, const Tokenizer& draft_vocab,
    const Tokenizer& target_vocab, const SamplingParams& sampling, int64_t max_length) {
  if (draft_vocab.n_vocab() != target_vocab.n_vocab() ||
      head.config().n_vocab != target_vocab.n_vocab()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the draft model's vocabulary has ", head.config().n_vocab, " tokens, the target's ",
        target_vocab.n_vocab(), ": a draft model must share the target's vocabulary"));
  }
  for (int32_t id = 0; id < target_vocab.n_vocab(); ++id) {
    if (draft_vocab.TokenText(id) != target_vocab.TokenText(id)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the draft model's token ", id, " is \"", std::string(draft_vocab.TokenText(id)),
          "\", the target's \"", std::string(target_vocab.TokenText(id)),
          "\": a draft model must share the target's vocabulary"));
    }
  }
  SWARM_RETURN_IF_ERROR(sampling.Validate());
  return std::unique_ptr<ModelDrafter>(new ModelDrafter(head, blocks, sampling, max_length));
}

absl::Status ModelDrafter::Feed(std::span<const int32_t> tokens) {
  const int64_t n_embd = head_.config().n_embd;
  const size_t from = fed_.size();
  const int64_t n = static_cast<int64_t>(tokens.size() - from);
  hidden_.resize(static_cast<size_t>(n_embd * n));
  SWARM_RETURN_IF_ERROR(head_.Embed(tokens.subspan(from), hidden_.data()));
  SWARM_RETURN_IF_ERROR(blocks_.Forward(n, hidden_.data(), hidden_.data()));
  fed_.insert(fed_.end(), tokens.begin() + static_cast<std::ptrdiff_t>(from), tokens.end());
  logits_.resize(static_cast<size_t>(head_.config().n_vocab));
  return head_.Logits(hidden_.data() + (n - 1) * n_embd, logits_.data());
}

absl::Status ModelDrafter::Draft(std::span<const int32_t> tokens, int64_t max_tokens,
                                 std::vector<DraftToken>& out) {
  if (tokens.empty() || max_tokens <= 0) return absl::OkStatus();
  // Keep what the cache shares with `tokens`, at least one token short of all of it: the last
  // token must run through the blocks to give the logits of the next.
  size_t keep = 0;
  while (keep < fed_.size() && keep < tokens.size() && fed_[keep] == tokens[keep]) ++keep;
  keep = std::min(keep, tokens.size() - 1);
  if (keep < fed_.size()) {
    SWARM_RETURN_IF_ERROR(blocks_.Rollback(static_cast<int64_t>(keep)));
    fed_.resize(keep);
  }
  std::vector<int32_t> sequence(tokens.begin(), tokens.end());
  for (int64_t i = 0; i < max_tokens; ++i) {
    if (static_cast<int64_t>(sequence.size()) > max_length_) break;  // the cache is full
    SWARM_RETURN_IF_ERROR(Feed(sequence));
    sampler_.Distribution(logits_, sequence, dist_);
    DraftToken draft;
    if (sampler_.params().temperature <= 0.0f) {
      draft.token = dist_.front().id;  // a point mass
    } else {
      draft.token = sampler_.DrawFrom(dist_);
      draft.q = dist_;
    }
    sequence.push_back(draft.token);
    out.push_back(std::move(draft));
  }
  return absl::OkStatus();
}

}  // namespace swarm::model
