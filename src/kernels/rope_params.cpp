#include "kernels/rope_params.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace swarm::kernels {

namespace {

// The pair index at which a pair turns n_rot times over n_ctx_orig positions (YaRN's correction
// dimension), for heads of d values.
double CorrectionDim(double d, double n_ctx_orig, double n_rot, double base) {
  return d * std::log(n_ctx_orig / (n_rot * 2.0 * std::numbers::pi)) / (2.0 * std::log(base));
}

}  // namespace

RopeTable MakeRopeTable(const RopeParams& p, int64_t head_dim) {
  RopeTable table;
  const int64_t half = head_dim / 2;
  const double d = static_cast<double>(head_dim);
  const double base = p.freq_base;
  const bool yarn = p.ext_factor != 0.0f;
  double low = 0.0, high = 0.0;
  if (yarn) {
    const double n_ctx = static_cast<double>(std::max<int64_t>(p.n_ctx_orig, 1));
    low = std::max(0.0, std::floor(CorrectionDim(d, n_ctx, p.beta_fast, base)));
    high = std::min(d - 1.0, std::ceil(CorrectionDim(d, n_ctx, p.beta_slow, base)));
  }
  table.freq.resize(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    double extrap = std::pow(base, -2.0 * static_cast<double>(i) / d);
    if (static_cast<size_t>(i) < p.freq_factors.size()) extrap /= p.freq_factors[i];
    const double interp = p.freq_scale == 1.0f ? extrap : p.freq_scale * extrap;
    double freq = interp;
    if (yarn) {
      const double y = (static_cast<double>(i) - low) / std::max(0.001, high - low);
      const double mix = (1.0 - std::clamp(y, 0.0, 1.0)) * p.ext_factor;
      freq = interp * (1.0 - mix) + extrap * mix;
    }
    table.freq[i] = freq;
  }
  table.mscale = p.attn_factor;
  if (yarn) table.mscale *= 1.0 + 0.1 * std::log(1.0 / static_cast<double>(p.freq_scale));
  return table;
}

}  // namespace swarm::kernels
