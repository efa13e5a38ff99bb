#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace swarm::model {

absl::Status SamplingParams::Validate() const {
  if (!(temperature >= 0.0f) || !std::isfinite(temperature)) {
    return absl::InvalidArgumentError(absl::StrCat("temperature must be >= 0, got ", temperature));
  }
  if (!(top_p > 0.0f && top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", top_p));
  }
  if (!(min_p >= 0.0f && min_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("min_p must be in [0, 1], got ", min_p));
  }
  if (!(repeat_penalty > 0.0f) || !std::isfinite(repeat_penalty)) {
    return absl::InvalidArgumentError(
        absl::StrCat("repeat_penalty must be > 0, got ", repeat_penalty));
  }
  if (repeat_last_n < 0) return absl::InvalidArgumentError("repeat_last_n must be >= 0");
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("presence_penalty must be in [-2, 2], got ", presence_penalty));
  }
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("frequency_penalty must be in [-2, 2], got ", frequency_penalty));
  }
  for (const auto& [id, bias] : logit_bias) {
    if (id < 0) return absl::InvalidArgumentError(absl::StrCat("logit_bias: bad token id ", id));
    if (!(bias >= -100.0f && bias <= 100.0f)) {
      return absl::InvalidArgumentError(
          absl::StrCat("logit_bias must be in [-100, 100], got ", bias));
    }
  }
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

void Sampler::Adjust(std::span<const float> logits, bool mask) {
  const int32_t n_vocab = static_cast<int32_t>(logits.size());
  constexpr float kBanned = -std::numeric_limits<float>::infinity();
  adjusted_.assign(logits.begin(), logits.end());
  for (const auto& [id, n] : counts_) {
    if (id < n_vocab) {
      adjusted_[id] -= params_.presence_penalty + params_.frequency_penalty * static_cast<float>(n);
    }
  }
  bool forced = false;
  for (const auto& [id, bias] : params_.logit_bias) forced |= bias >= 100.0f && id < n_vocab;
  if (forced) {  // only the tokens biased by 100 stay
    std::vector<float> kept(adjusted_.size(), kBanned);
    for (const auto& [id, bias] : params_.logit_bias) {
      if (bias >= 100.0f && id < n_vocab) kept[id] = adjusted_[id];
    }
    adjusted_ = std::move(kept);
  }
  for (const auto& [id, bias] : params_.logit_bias) {
    if (id >= n_vocab) continue;
    adjusted_[id] = bias <= -100.0f ? kBanned : adjusted_[id] + bias;
  }
  if (mask && constraint_ != nullptr) {
    constraint_->Mask(adjusted_);
    // The constraint outranks the bias: when together they leave nothing, the constraint alone.
    if (std::none_of(adjusted_.begin(), adjusted_.end(), [](float v) { return v > kBanned; })) {
      adjusted_.assign(logits.begin(), logits.end());
      constraint_->Mask(adjusted_);
    }
  }
}

int32_t Sampler::Sample(std::span<const float> logits, std::span<const int32_t> history) {
  Adjust(logits, true);
  const int32_t token = Draw(adjusted_, history);
  ++counts_[token];
  if (constraint_ != nullptr) constraint_->Accept(token);
  return token;
}

void Sampler::Distribution(std::span<const float> logits, std::span<const int32_t> history,
                           std::vector<TokenProb>& out) {
  Adjust(logits, false);
  bool certain = false;
  const size_t keep = Prepare(adjusted_, history, certain);
  out.clear();
  if (certain) {
    out.push_back({candidates_[0].id, 1.0});
    return;
  }
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += probs_[i];
  for (size_t i = 0; i < keep; ++i) out.push_back({candidates_[i].id, probs_[i] / total});
}

int32_t Sampler::DrawFrom(std::span<const TokenProb> dist) {
  double total = 0;
  for (const TokenProb& t : dist) total += t.p;
  const double u = Uniform() * total;
  double cumulative = 0;
  for (const TokenProb& t : dist) {
    cumulative += t.p;
    if (u < cumulative) return t.id;
  }
  return dist.empty() ? 0 : dist.back().id;
}

size_t Sampler::Prepare(std::span<const float> logits, std::span<const int32_t> history,
                        bool& certain) {
  certain = false;
  const int32_t n_vocab = static_cast<int32_t>(logits.size());
  candidates_.resize(logits.size());
  for (int32_t i = 0; i < n_vocab; ++i) candidates_[i] = {i, logits[i]};

  if (params_.repeat_penalty != 1.0f && params_.repeat_last_n > 0) {
    const size_t n = std::min(history.size(), static_cast<size_t>(params_.repeat_last_n));
    absl::flat_hash_set<int32_t> recent(history.end() - n, history.end());
    for (int32_t id : recent) {
      if (id < 0 || id >= n_vocab) continue;
      float& logit = candidates_[id].logit;
      logit = logit > 0 ? logit / params_.repeat_penalty : logit * params_.repeat_penalty;
    }
  }

  if (params_.temperature <= 0.0f) {  // greedy: the first of the largest logits
    int32_t best = 0;
    for (int32_t i = 1; i < n_vocab; ++i) {
      if (candidates_[i].logit > candidates_[best].logit) best = i;
    }
    candidates_[0] = candidates_[best];
    certain = true;
    return 1;
  }

  // Sort descending by logit (ties by id, so the order is fully determined).
  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.logit != b.logit ? a.logit > b.logit : a.id < b.id;
  };
  size_t keep = candidates_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < keep) {
    keep = static_cast<size_t>(params_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + keep, candidates_.end(), by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  candidates_.resize(keep);
  // Banned tokens (-inf: bias, constraint) never survive the cut-offs below.
  while (keep > 1 && std::isinf(candidates_[keep - 1].logit) && candidates_[keep - 1].logit < 0) {
    --keep;
  }
  if (std::isinf(candidates_[0].logit)) {
    certain = true;
    return 1;
  }

  // Probabilities before temperature, as llama.cpp's default chain (top-k, top-p, min-p, temp).
  probs_.resize(keep);
  std::vector<double>& probs = probs_;
  const double max_logit = candidates_[0].logit;
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += probs[i] = std::exp(candidates_[i].logit - max_logit);
  if (params_.top_p < 1.0f) {
    double cumulative = 0;
    for (size_t i = 0; i < keep; ++i) {
      cumulative += probs[i] / sum;
      if (cumulative >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  if (params_.min_p > 0.0f) {
    const double threshold = params_.min_p * probs[0];
    size_t n = 1;
    while (n < keep && probs[n] >= threshold) ++n;
    keep = n;
  }

  for (size_t i = 0; i < keep; ++i) {
    probs[i] = std::exp((candidates_[i].logit - max_logit) / params_.temperature);
  }
  return keep;
}

int32_t Sampler::Draw(std::span<const float> logits, std::span<const int32_t> history) {
  bool certain = false;
  const size_t keep = Prepare(logits, history, certain);
  if (certain) return candidates_[0].id;
  const std::vector<double>& probs = probs_;
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += probs[i];
  // A uniform double in [0, 1) from 53 random bits: identical on every platform.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * total;
  double cumulative = 0;
  for (size_t i = 0; i < keep; ++i) {
    cumulative += probs[i];
    if (u < cumulative) return candidates_[i].id;
  }
  return candidates_[keep - 1].id;
}

}  // namespace swarm::model
