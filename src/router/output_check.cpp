#include "router/output_check.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace swarm::router {
namespace {

// Root mean square in double: float sums of 10^4 squares lose digits the bounds do not need,
// but an overflow to infinity would hide a huge output.
double Rms(std::span<const float> x) {
  double sum = 0;
  for (float v : x) sum += static_cast<double>(v) * v;
  return x.empty() ? 0 : std::sqrt(sum / static_cast<double>(x.size()));
}

}  // namespace

absl::Status CheckHopOutput(std::span<const float> input, std::span<const float> output,
                            int64_t n_embd, int64_t n_tokens, const OutputBounds& bounds) {
  if (n_embd <= 0 || n_tokens <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("bad shape [", n_embd, ", ", n_tokens, "]"));
  }
  const size_t n = static_cast<size_t>(n_embd) * static_cast<size_t>(n_tokens);
  if (output.size() != n || input.size() != n) {
    return absl::DataLossError(
        absl::StrCat("output of ", output.size(), " values for [", n_embd, ", ", n_tokens, "]"));
  }
  for (int64_t t = 0; t < n_tokens; ++t) {
    const auto in = input.subspan(static_cast<size_t>(t * n_embd), static_cast<size_t>(n_embd));
    const auto out = output.subspan(static_cast<size_t>(t * n_embd), static_cast<size_t>(n_embd));
    for (float v : out) {
      if (!std::isfinite(v)) {
        return absl::DataLossError(absl::StrCat("output token ", t, " holds NaN or infinity"));
      }
    }
    const double in_rms = Rms(in);
    const double out_rms = Rms(out);
    const double ratio = out_rms / std::max(in_rms, bounds.min_input_rms);
    const bool too_small = in_rms >= bounds.min_input_rms && ratio < bounds.min_rms_ratio;
    if (too_small || ratio > bounds.max_rms_ratio) {
      return absl::DataLossError(absl::StrFormat(
          "output token %d has rms %.3g for an input of rms %.3g (allowed: %g to %g times)", t,
          out_rms, in_rms, bounds.min_rms_ratio, bounds.max_rms_ratio));
    }
  }
  return absl::OkStatus();
}

}  // namespace swarm::router
