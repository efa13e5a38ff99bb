// The model-free drafter (prompt lookup): the longest recent n-gram ending the sequence is looked
// up earlier in the prompt and the text so far, and what followed it there is proposed. Costs no
// model; works where text repeats (code, quotes, stories that reuse phrases). One thread.
#pragma once

#include "model/drafter.h"

namespace swarm::model {

class LookupDrafter final : public Drafter {
 public:
  // n-grams of max_ngram tokens down to min_ngram are tried, longest first.
  explicit LookupDrafter(int max_ngram = 3, int min_ngram = 1)
      : max_ngram_(max_ngram), min_ngram_(min_ngram) {}
  absl::Status Draft(std::span<const int32_t> tokens, int64_t max_tokens,
                     std::vector<DraftToken>& out) override;
  std::string name() const override { return "lookup"; }

 private:
  int max_ngram_;
  int min_ngram_;
  std::vector<int32_t> work_;  // tokens + what this call drafted so far
};

}  // namespace swarm::model
