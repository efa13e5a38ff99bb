#include "model/lookup_drafter.h"

#include <algorithm>

namespace swarm::model {

absl::Status LookupDrafter::Draft(std::span<const int32_t> tokens, int64_t max_tokens,
                                  std::vector<DraftToken>& out) {
  work_.assign(tokens.begin(), tokens.end());
  int64_t drafted = 0;
  while (drafted < max_tokens) {
    const int64_t n = static_cast<int64_t>(work_.size());
    int64_t found = -1;  // where the continuation starts
    for (int g = max_ngram_; g >= min_ngram_ && found < 0; --g) {
      if (g > n - 1) continue;
      const auto suffix = work_.end() - g;
      // The most recent earlier occurrence: recent text predicts best.
      for (int64_t start = n - g - 1; start >= 0; --start) {
        if (std::equal(suffix, work_.end(), work_.begin() + start)) {
          found = start + g;
          break;
        }
      }
    }
    if (found < 0) break;
    // Copy what followed, up to the end of the sequence (it may run into the suffix itself).
    int64_t copied = 0;
    for (int64_t i = found; i < n && drafted < max_tokens; ++i, ++copied, ++drafted) {
      out.push_back({work_[i], {}});
    }
    if (copied == 0) break;
    for (auto it = out.end() - copied; it != out.end(); ++it) work_.push_back(it->token);
  }
  return absl::OkStatus();
}

}  // namespace swarm::model
