#include "model/scoring.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace swarm::model {

TokenLogprob ScoreToken(std::span<const float> logits, int32_t token, int32_t top_k) {
  // log p_i = l_i - (max + log sum_j exp(l_j - max)), in double so that a sum over thousands of
  // positions (perplexity) keeps its digits.
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - max);
  const double log_z = static_cast<double>(max) + std::log(sum);
  TokenLogprob out;
  out.token = token;
  out.logprob = static_cast<double>(logits[static_cast<size_t>(token)]) - log_z;
  const int32_t n_vocab = static_cast<int32_t>(logits.size());
  const int32_t k = std::clamp<int32_t>(top_k, 0, n_vocab);
  if (k > 0) {
    std::vector<int32_t> ids(static_cast<size_t>(n_vocab));
    std::iota(ids.begin(), ids.end(), 0);
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
      return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
    });
    out.top.reserve(static_cast<size_t>(k));
    for (int32_t i = 0; i < k; ++i) {
      out.top.push_back({ids[i], static_cast<double>(logits[ids[i]]) - log_z});
    }
  }
  return out;
}

absl::StatusOr<std::vector<TokenLogprob>> ScoreSequence(ClientHead& head, BlockPipeline& blocks,
                                                        std::span<const int32_t> tokens,
                                                        const ScoreOptions& options) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (options.first < 1 || options.first > n) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot score from position ", options.first, " of ", n, " tokens"));
  }
  const int64_t n_embd = head.config().n_embd;
  const int64_t n_vocab = head.config().n_vocab;
  const int64_t batch = options.batch > 0 ? std::min(options.batch, n) : n;
  std::vector<TokenLogprob> out;
  out.reserve(static_cast<size_t>(n - options.first));
  std::vector<float> hidden(static_cast<size_t>(n_embd * batch));  // [n_embd, batch]
  std::vector<float> logits;                                       // [n_vocab, scored]
  // Position p's logits predict tokens[p + 1]: positions [first - 1, n - 1) are needed.
  for (int64_t start = 0; start < n - 1; start += batch) {
    const int64_t count = std::min(batch, n - start);
    SWARM_RETURN_IF_ERROR(head.Embed(tokens.subspan(start, count), hidden.data()));
    if (blocks.waits_on_peers()) head.ParkThreads();
    SWARM_RETURN_IF_ERROR(blocks.Forward(count, hidden.data(), hidden.data()));
    const int64_t from = std::max(start, options.first - 1);
    const int64_t to = std::min(start + count, n - 1);
    if (from >= to) continue;
    logits.resize(static_cast<size_t>(n_vocab * (to - from)));
    SWARM_RETURN_IF_ERROR(
        head.LogitsBatch(hidden.data() + (from - start) * n_embd, to - from, logits.data()));
    for (int64_t p = from; p < to; ++p) {
      const std::span<const float> row(logits.data() + (p - from) * n_vocab,
                                       static_cast<size_t>(n_vocab));
      out.push_back(ScoreToken(row, tokens[static_cast<size_t>(p + 1)], options.top_k));
    }
  }
  return out;
}

}  // namespace swarm::model
