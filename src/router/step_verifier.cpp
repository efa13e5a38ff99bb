#include "router/step_verifier.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace swarm::router {
namespace {

// Measured between the CPU backends (reference, generic, AVX2, AVX-512) over stories260K's five
// blocks and 200 positions (docs/VERIFICATION.md): up to 4e-3 relative with f32 activations (the
// f16 KV cache rounds the backends' last-bit differences apart, and attention carries them on).
// 2.5 times that.
constexpr double kCrossBackendF32 = 1e-2;
// A GPU peer runs prompts of 17+ tokens (a replica's catch-up, a replay) through cuBLAS with
// activations rounded to f16/bf16 (NMSE up to 5e-5 per matmul, docs/GPU.md), so even two GPU
// peers differ in the last bits from token-by-token decoding; through a span's blocks that stays
// within a few 1e-3. Not measured on a GPU yet: a bound from the per-op figures, with margin.
constexpr double kGpu = 2e-2;

bool IsGpu(const std::string& backend) { return backend.find("cuda") != std::string::npos; }

// How far two honest peers' encodings of nearly equal values can land apart, relative to the
// token's norm: one step of the codec's rounding where a value sits on a boundary.
double CodecStep(const transport::Codec& codec) {
  switch (codec.dtype) {
    case transport::Dtype::kF32:
      return 0;
    case transport::Dtype::kF16:
      return 1e-3;  // 2^-10: one f16 ulp
    case transport::Dtype::kBf16:
      return 8e-3;  // 2^-7: one bf16 ulp
    default:
      return 1e-2;  // int8 blocks: a step of absmax/127 on the few values that round apart
  }
}

}  // namespace

int64_t VerificationStats::verified_steps() const {
  int64_t n = 0;
  for (const auto& [span, s] : spans) n += s.verified_steps;
  return n;
}

int64_t VerificationStats::unverified_steps() const {
  int64_t n = 0;
  for (const auto& [span, s] : spans) n += s.unverified_steps;
  return n;
}

std::string VerificationStats::Summary() const {
  const int64_t verified = verified_steps();
  const int64_t total = verified + unverified_steps();
  std::vector<std::string> unverifiable;
  for (const auto& [span, s] : spans) {
    if (s.no_replica_steps > 0) {
      unverifiable.push_back(span.second - span.first == 1
                                 ? absl::StrCat(span.first)
                                 : absl::StrCat(span.first, "..", span.second - 1));
    }
  }
  std::string out = absl::StrCat("verification: ", verified, "/", total, " hop-steps verified");
  if (!unverifiable.empty()) {
    absl::StrAppend(&out, " (no replica for blocks ", absl::StrJoin(unverifiable, ", "), ")");
  }
  absl::StrAppend(&out, ", ", mismatches, mismatches == 1 ? " mismatch" : " mismatches", ", ",
                  output_refused, " outputs refused, ", peers_banned,
                  peers_banned == 1 ? " peer banned" : " peers banned");
  if (max_cross_backend_error > 0) {
    absl::StrAppend(&out, absl::StrFormat(", largest difference between backends %.2g",
                                          max_cross_backend_error));
  }
  return out;
}

double MaxRelativeError(std::span<const float> a, std::span<const float> b, int64_t n_embd) {
  if (n_embd <= 0 || a.size() != b.size()) return INFINITY;
  double worst = 0;
  for (size_t t = 0; t + static_cast<size_t>(n_embd) <= a.size(); t += n_embd) {
    double diff = 0, norm = 0;
    for (size_t k = t; k < t + static_cast<size_t>(n_embd); ++k) {
      const double d = static_cast<double>(a[k]) - b[k];
      diff += d * d;
      norm += static_cast<double>(b[k]) * b[k];
    }
    const double error = norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
    if (!(error <= worst)) worst = error;  // NaN wins
  }
  return worst;
}

double ToleranceFor(const std::string& backend_a, const std::string& backend_b,
                    const transport::Codec& codec, double cross_backend_tolerance) {
  const bool gpu = IsGpu(backend_a) || IsGpu(backend_b);
  if (backend_a == backend_b && !backend_a.empty() && !gpu) return 0;
  const double cross = cross_backend_tolerance >= 0 ? cross_backend_tolerance
                       : gpu                        ? kGpu
                                                    : kCrossBackendF32;
  return cross + CodecStep(codec);
}

bool OutputsAgree(std::span<const float> a, std::span<const float> b, int64_t n_embd,
                  double tolerance) {
  if (a.size() != b.size()) return false;
  if (tolerance <= 0) return std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  return MaxRelativeError(a, b, n_embd) <= tolerance;
}

VerificationPolicy::VerificationPolicy(const VerifyOptions& options)
    : options_(options), rng_(options.seed != 0 ? options.seed : std::random_device{}()) {}

bool VerificationPolicy::ShouldCheck(const std::string& peer) {
  if (!enabled()) return false;
  const bool drawn = std::uniform_real_distribution<double>(0, 1)(rng_) < options_.share;
  if (drawn || (suspicious_ && options_.check_all_after_mismatch)) return true;
  auto it = passed_.find(peer);
  return (it == passed_.end() ? 0 : it->second) < options_.new_peer_steps;
}

}  // namespace swarm::router
