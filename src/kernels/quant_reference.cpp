// Reference (de)quantization and dot products. Every function reproduces llama.cpp's
// quantize_row_*_ref / dequantize_row_* / ggml_vec_dot_*_generic bit for bit, so the float
// operations below are written in the same order as there: do not "simplify" an expression such as
// (d * sc) * q into d * (sc * q), or fold a*b+c into an FMA, without re-checking the golden tests.
#include "kernels/quant_reference.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/half.h"
#include "kernels/block_lowbit.h"
#include "kernels/quant_iq4_nl.h"
#include "kernels/quant_q4_1.h"
#include "kernels/quant_q5_0.h"
#include "kernels/quant_q5_1.h"
#include "kernels/quant_q5_k.h"
#include "kernels/quant_reference_internal.h"

namespace swarm::kernels {
namespace quant_internal {

// Round to nearest, ties to even, by letting the float adder do it: adding 1.5 * 2^23 puts the
// integer part in the low mantissa bits. Exact for |x| < 2^22 (ggml's nearest_int); for larger or
// non-finite inputs it returns some int without undefined behavior.
int NearestInt(float x) {
  const float shifted = x + 12582912.f;
  int32_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  return (bits & 0x007fffff) - 0x00400000;
}

// Converts an already rounded float to int8 the way a C cast does for in-range values; out-of-range
// values saturate and NaN becomes 0 instead of being undefined behavior.
int8_t SaturateToInt8(float v) {
  if (std::isnan(v)) return 0;
  return static_cast<int8_t>(std::clamp(v, -128.0f, 127.0f));
}

// ---- K-quant helpers --------------------------------------------------------------------------

// Fits x[i] ~= scale * L[i] - the_min with L in [0, nmax] by weighted least squares over a small
// sweep of candidate scales (ggml's make_qkx2_quants), minimizing the weighted squared or absolute
// error. Returns scale; *the_min is >= 0.
float MakeQkx2Quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                     float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                     FitError error) {
  const bool use_mad = error == FitError::kAbsolute;
  float min = x[0];
  float max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.0f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = NearestInt(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    const float diff = scale * L[i] + min - x[i];
    best_error += weights[i] * (use_mad ? std::fabs(diff) : diff * diff);
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0;
    float sum_l2 = 0;
    float sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = NearestInt(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        const float diff = this_scale * Laux[i] + this_min - x[i];
        cur_error += weights[i] * (use_mad ? std::fabs(diff) : diff * diff);
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// Fits x[i] ~= scale * (L[i] - nmax) with L - nmax in [-nmax, nmax - 1], weighting by x^2 and
// sweeping the scale by +-0.9 (ggml's make_qx_quants with rmse_type 1 and no quant weights).
float MakeQxQuants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0;
  float amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  float iscale = -nmax / max;
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = NearestInt(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = 0;
    suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = NearestInt(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = NearestInt(iscale * x[i]);
        L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Unpacks the 6-bit scale and min of sub-block j (0..7) of a Q4_K block: sub-blocks 0-3 keep
// theirs in the low 6 bits of bytes j and j+4; sub-blocks 4-7 split theirs into a nibble in byte
// j+4 and the two spare top bits of bytes j-4 (scale) and j (min).
void GetScaleMinK4(int j, const uint8_t* q, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = static_cast<uint8_t>((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    *min = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

void PackScalesMinsK4(const float* scales, const float* mins, float max_scale, float max_min,
                      uint8_t* packed, uint16_t* d, uint16_t* dmin) {
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  std::memset(packed, 0, kKScaleSize);
  for (int j = 0; j < kQK_K / 32; ++j) {
    // ggml stores nearest_int into a uint8_t before capping, so a (never expected) negative
    // value wraps; reproduced for bit-compatibility.
    uint8_t ls = static_cast<uint8_t>(NearestInt(inv_scale * scales[j]));
    uint8_t lm = static_cast<uint8_t>(NearestInt(inv_min * mins[j]));
    ls = std::min<uint8_t>(63, ls);
    lm = std::min<uint8_t>(63, lm);
    if (j < 4) {
      packed[j] = ls;
      packed[j + 4] = lm;
    } else {
      packed[j + 4] = static_cast<uint8_t>((ls & 0x0f) | ((lm & 0x0f) << 4));
      packed[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      packed[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
  *d = FloatToHalf(max_scale / 63.0f);
  *dmin = FloatToHalf(max_min / 63.0f);
}

void RequantizeK4(const float* x, const uint8_t* packed, uint16_t d, uint16_t dmin, int nmax,
                  uint8_t* L) {
  for (int j = 0; j < kQK_K / 32; ++j) {
    uint8_t sc;
    uint8_t m;
    GetScaleMinK4(j, packed, &sc, &m);
    const float dj = HalfToFloat(d) * sc;
    if (dj == 0.0f) continue;
    const float dm = HalfToFloat(dmin) * m;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = NearestInt((x[32 * j + ii] + dm) / dj);
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

}  // namespace quant_internal

namespace {

using quant_internal::FitError;
using quant_internal::GetScaleMinK4;
using quant_internal::kGroupMaxEps;
using quant_internal::MakeQkx2Quants;
using quant_internal::MakeQxQuants;
using quant_internal::NearestInt;
using quant_internal::PackScalesMinsK4;
using quant_internal::RequantizeK4;
using quant_internal::SaturateToInt8;

// ---- Q8_0 -------------------------------------------------------------------------------------

void QuantizeQ8_0(const float* x, BlockQ8_0* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK8_0) {
    float amax = 0.0f;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = FloatToHalf(d);
    // roundf: ties away from zero (unlike NearestInt).
    for (int j = 0; j < kQK8_0; ++j) y[i].qs[j] = SaturateToInt8(std::round(x[j] * id));
  }
}

void DequantizeQ8_0(const BlockQ8_0* x, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i) {
    const float d = HalfToFloat(x[i].d);
    for (int j = 0; j < kQK8_0; ++j) *y++ = x[i].qs[j] * d;
  }
}

// ---- Q4_0 -------------------------------------------------------------------------------------

void QuantizeQ4_0(const float* x, BlockQ4_0* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK4_0) {
    // The signed value of largest magnitude maps to -8, so the full range [-8, 7] is used on the
    // side where it matters.
    float amax = 0.0f;
    float max = 0.0f;
    for (int j = 0; j < kQK4_0; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = FloatToHalf(d);
    auto quant = [&](float v) -> uint8_t {
      // Truncation of v*id + 8.5 (a C cast), i.e. rounding with ties up, capped at 15.
      const float shifted = v * id + 8.5f;
      if (!(shifted >= 0.0f)) return 0;
      return static_cast<uint8_t>(std::min(15, static_cast<int>(std::min(shifted, 127.0f))));
    };
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      y[i].qs[j] = static_cast<uint8_t>(quant(x[j]) | (quant(x[j + kQK4_0 / 2]) << 4));
    }
  }
}

void DequantizeQ4_0(const BlockQ4_0* x, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, y += kQK4_0) {
    const float d = HalfToFloat(x[i].d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      y[j] = ((x[i].qs[j] & 0x0f) - 8) * d;
      y[j + kQK4_0 / 2] = ((x[i].qs[j] >> 4) - 8) * d;
    }
  }
}

// ---- Q4_K -------------------------------------------------------------------------------------

void QuantizeQ4_K(const float* x, BlockQ4_K* y, int64_t n_blocks) {
  uint8_t L[kQK_K];
  uint8_t Laux[32];
  float weights[32];
  float mins[kQK_K / 32];
  float scales[kQK_K / 32];
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK_K) {
    float max_scale = 0;  // scales are >= 0 because the min is subtracted
    float max_min = 0;
    for (int j = 0; j < kQK_K / 32; ++j) {
      float sum_x2 = 0;
      for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
      const float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
      scales[j] = MakeQkx2Quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.0f,
                                 0.1f, 20, FitError::kSquared);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }

    PackScalesMinsK4(scales, mins, max_scale, max_min, y[i].scales, &y[i].d, &y[i].dmin);

    RequantizeK4(x, y[i].scales, y[i].d, y[i].dmin, 15, L);

    // Each 32 bytes of qs hold two sub-blocks: the low nibbles one, the high nibbles the next.
    uint8_t* q = y[i].qs;
    for (int j = 0; j < kQK_K; j += 64, q += 32) {
      for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    }
  }
}

void DequantizeQ4_K(const BlockQ4_K* x, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i) {
    const float d = HalfToFloat(x[i].d);
    const float dmin = HalfToFloat(x[i].dmin);
    const uint8_t* q = x[i].qs;
    for (int j = 0; j < kQK_K / 64; ++j, q += 32) {
      uint8_t sc;
      uint8_t m;
      GetScaleMinK4(2 * j, x[i].scales, &sc, &m);
      const float d1 = d * sc;
      const float m1 = dmin * m;
      GetScaleMinK4(2 * j + 1, x[i].scales, &sc, &m);
      const float d2 = d * sc;
      const float m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0x0f) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    }
  }
}

// ---- Q6_K -------------------------------------------------------------------------------------

void QuantizeQ6_K(const float* x, BlockQ6_K* y, int64_t n_blocks) {
  int8_t L[kQK_K];
  float scales[kQK_K / 16];
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK_K) {
    float max_scale = 0;
    float max_abs_scale = 0;
    for (int ib = 0; ib < kQK_K / 16; ++ib) {
      const float scale = MakeQxQuants(16, 32, x + 16 * ib, L + 16 * ib);
      scales[ib] = scale;
      if (std::fabs(scale) > max_abs_scale) {
        max_abs_scale = std::fabs(scale);
        max_scale = scale;
      }
    }
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(&y[i], 0, sizeof(BlockQ6_K));
      continue;
    }

    // The sub-scale of largest magnitude becomes -128 (so d usually has the opposite sign).
    const float iscale = -128.0f / max_scale;
    y[i].d = FloatToHalf(1 / iscale);
    for (int ib = 0; ib < kQK_K / 16; ++ib) {
      y[i].scales[ib] = static_cast<int8_t>(std::min(127, NearestInt(iscale * scales[ib])));
    }
    for (int j = 0; j < kQK_K / 16; ++j) {
      const float d = HalfToFloat(y[i].d) * y[i].scales[j];
      if (d == 0.0f) continue;
      for (int ii = 0; ii < 16; ++ii) {
        int l = NearestInt(x[16 * j + ii] / d);
        l = std::max(-32, std::min(31, l));
        L[16 * j + ii] = static_cast<int8_t>(l + 32);
      }
    }

    // Per 128 elements: ql[0..31] holds elements 0-31 (low nibble) and 64-95 (high nibble),
    // ql[32..63] elements 32-63 and 96-127; qh[l] holds the top 2 bits of elements l, l+32, l+64,
    // l+96 in bit pairs 0-1, 2-3, 4-5, 6-7.
    uint8_t* ql = y[i].ql;
    uint8_t* qh = y[i].qh;
    for (int j = 0; j < kQK_K; j += 128, ql += 64, qh += 32) {
      for (int l = 0; l < 32; ++l) {
        const uint8_t q1 = L[j + l] & 0x0f;
        const uint8_t q2 = L[j + l + 32] & 0x0f;
        const uint8_t q3 = L[j + l + 64] & 0x0f;
        const uint8_t q4 = L[j + l + 96] & 0x0f;
        ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
        ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
        qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                     ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
      }
    }
  }
}

// The 6-bit quants of one Q6_K block, with the -32 offset applied: out[256] in [-32, 31].
void UnpackQ6_K(const BlockQ6_K& b, int8_t* out) {
  const uint8_t* ql = b.ql;
  const uint8_t* qh = b.qh;
  for (int n = 0; n < kQK_K; n += 128, ql += 64, qh += 32, out += 128) {
    for (int l = 0; l < 32; ++l) {
      out[l] = static_cast<int8_t>(((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32);
      out[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32);
      out[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
      out[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
    }
  }
}

void DequantizeQ6_K(const BlockQ6_K* x, float* y, int64_t n_blocks) {
  int8_t q[kQK_K];
  for (int64_t i = 0; i < n_blocks; ++i, y += kQK_K) {
    const float d = HalfToFloat(x[i].d);
    UnpackQ6_K(x[i], q);
    for (int j = 0; j < kQK_K; ++j) y[j] = d * x[i].scales[j / 16] * q[j];
  }
}

// ---- Q8_K (activations) -----------------------------------------------------------------------

void QuantizeQ8_K(const float* x, BlockQ8_K* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK_K) {
    float max = 0;
    float amax = 0;
    for (int j = 0; j < kQK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0.0f) {
      // ggml leaves bsums untouched here; zero them so the output is fully determined.
      std::memset(&y[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    // -127 rather than -128 keeps the quants symmetric (as ggml, for its SIMD dot products).
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQK_K; ++j) {
      y[i].qs[j] = static_cast<int8_t>(std::max(-128, std::min(127, NearestInt(iscale * x[j]))));
    }
    for (int j = 0; j < kQK_K / 16; ++j) {
      int sum = 0;
      for (int ii = 0; ii < 16; ++ii) sum += y[i].qs[16 * j + ii];
      y[i].bsums[j] = static_cast<int16_t>(sum);
    }
    y[i].d = 1 / iscale;
  }
}

void DequantizeQ8_K(const BlockQ8_K* x, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i) {
    for (int j = 0; j < kQK_K; ++j) *y++ = x[i].d * x[i].qs[j];
  }
}

// ---- integer dot products ---------------------------------------------------------------------

float VecDotQ8_0Q8_0(const BlockQ8_0* x, const BlockQ8_0* y, int64_t n_blocks) {
  float sumf = 0;
  for (int64_t ib = 0; ib < n_blocks; ++ib) {
    int sumi = 0;
    for (int j = 0; j < kQK8_0; ++j) sumi += x[ib].qs[j] * y[ib].qs[j];
    sumf += sumi * (HalfToFloat(x[ib].d) * HalfToFloat(y[ib].d));
  }
  return sumf;
}

float VecDotQ4_0Q8_0(const BlockQ4_0* x, const BlockQ8_0* y, int64_t n_blocks) {
  float sumf = 0;
  for (int64_t ib = 0; ib < n_blocks; ++ib) {
    int sumi0 = 0;
    int sumi1 = 0;
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      sumi0 += ((x[ib].qs[j] & 0x0f) - 8) * y[ib].qs[j];
      sumi1 += ((x[ib].qs[j] >> 4) - 8) * y[ib].qs[j + kQK4_0 / 2];
    }
    const int sumi = sumi0 + sumi1;
    sumf += sumi * HalfToFloat(x[ib].d) * HalfToFloat(y[ib].d);
  }
  return sumf;
}

// ggml's scalar K-quant dot products accumulate integer products in 8 lanes (element e of a block
// goes to lane e % 8) and carry 8 float partial sums across blocks, adding them at the very end.
// The integer part is exact in any order; the float part is reproduced lane by lane.
float VecDotQ4_KQ8_K(const BlockQ4_K* x, const BlockQ8_K* y, int64_t n_blocks) {
  float sums[8] = {};
  float sumf = 0;
  for (int64_t i = 0; i < n_blocks; ++i) {
    uint8_t scales[8];
    uint8_t mins[8];
    for (int j = 0; j < 8; ++j) GetScaleMinK4(j, x[i].scales, &scales[j], &mins[j]);
    int32_t lanes[8] = {};
    for (int e = 0; e < kQK_K; ++e) {
      const int sub = e / 32;  // 32-element sub-block
      const uint8_t byte = x[i].qs[32 * (sub / 2) + e % 32];
      const int q4 = (sub % 2 == 0) ? (byte & 0x0f) : (byte >> 4);
      lanes[e % 8] += scales[sub] * (q4 * y[i].qs[e]);
    }
    // The mins term: sum over elements of min(sub) * q8 = sum over 16-groups of min * bsum.
    int sumi = 0;
    for (int j = 0; j < kQK_K / 16; ++j) sumi += y[i].bsums[j] * mins[j / 2];
    const float d = HalfToFloat(x[i].d) * y[i].d;
    for (int l = 0; l < 8; ++l) sums[l] += d * lanes[l];
    const float dmin = HalfToFloat(x[i].dmin) * y[i].d;
    sumf -= dmin * sumi;
  }
  for (int l = 0; l < 8; ++l) sumf += sums[l];
  return sumf;
}

float VecDotQ6_KQ8_K(const BlockQ6_K* x, const BlockQ8_K* y, int64_t n_blocks) {
  float sums[8] = {};
  int8_t q6[kQK_K];
  for (int64_t i = 0; i < n_blocks; ++i) {
    UnpackQ6_K(x[i], q6);  // includes the -32 offset
    int32_t lanes[8] = {};
    for (int e = 0; e < kQK_K; ++e) {
      lanes[e % 8] += x[i].scales[e / 16] * (q6[e] * y[i].qs[e]);
    }
    const float d = HalfToFloat(x[i].d) * y[i].d;
    for (int l = 0; l < 8; ++l) sums[l] += d * lanes[l];
  }
  float sumf = 0;
  for (int l = 0; l < 8; ++l) sumf += sums[l];
  return sumf;
}

}  // namespace

void DequantizeRow(GgmlType type, const void* src, float* dst, int64_t n) {
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case GgmlType::kF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = HalfToFloat(h[i]);
      return;
    }
    case GgmlType::kBF16: {
      const auto* b = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToFloat(b[i]);
      return;
    }
    case GgmlType::kQ8_0:
      return DequantizeQ8_0(static_cast<const BlockQ8_0*>(src), dst, n / kQK8_0);
    case GgmlType::kQ4_0:
      return DequantizeQ4_0(static_cast<const BlockQ4_0*>(src), dst, n / kQK4_0);
    case GgmlType::kQ4_K:
      return DequantizeQ4_K(static_cast<const BlockQ4_K*>(src), dst, n / kQK_K);
    case GgmlType::kQ6_K:
      return DequantizeQ6_K(static_cast<const BlockQ6_K*>(src), dst, n / kQK_K);
    case GgmlType::kQ8_K:
      return DequantizeQ8_K(static_cast<const BlockQ8_K*>(src), dst, n / kQK_K);
    case GgmlType::kQ2_K:
      return DequantizeQ2_K(static_cast<const BlockQ2_K*>(src), dst, n / kQK_K);
    case GgmlType::kQ3_K:
      return DequantizeQ3_K(static_cast<const BlockQ3_K*>(src), dst, n / kQK_K);
    case GgmlType::kIQ4_XS:
      return DequantizeIQ4_XS(static_cast<const BlockIQ4_XS*>(src), dst, n / kQK_K);
    case GgmlType::kQ4_1:
      return quant_internal::DequantizeQ4_1(static_cast<const BlockQ4_1*>(src), dst, n / kQK4_1);
    case GgmlType::kQ8_1:
      return quant_internal::DequantizeQ8_1(static_cast<const BlockQ8_1*>(src), dst, n / kQK8_1);
    case GgmlType::kQ5_0:
      return quant_internal::DequantizeQ5_0(static_cast<const BlockQ5_0*>(src), dst, n / kQK5_0);
    case GgmlType::kQ5_1:
      return quant_internal::DequantizeQ5_1(static_cast<const BlockQ5_1*>(src), dst, n / kQK5_1);
    case GgmlType::kIQ4_NL:
      return quant_internal::DequantizeIQ4_NL(static_cast<const BlockIQ4_NL*>(src), dst,
                                              n / kQK4_NL);
    case GgmlType::kQ5_K:
      return quant_internal::DequantizeQ5_K(static_cast<const BlockQ5_K*>(src), dst, n / kQK_K);
  }
  // An id outside the enum: callers validate types first; produce a defined result anyway.
  std::fill(dst, dst + n, 0.0f);
}

namespace {

// QuantizeRow's dispatch: false for a type it has no quantizer for (then nothing is written).
bool QuantizeRowIfHandled(GgmlType type, const float* src, void* dst, int64_t n) {
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return true;
    case GgmlType::kF16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = FloatToHalf(src[i]);
      return true;
    }
    case GgmlType::kBF16: {
      auto* b = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) b[i] = FloatToBf16(src[i]);
      return true;
    }
    case GgmlType::kQ8_0:
      QuantizeQ8_0(src, static_cast<BlockQ8_0*>(dst), n / kQK8_0);
      return true;
    case GgmlType::kQ4_0:
      QuantizeQ4_0(src, static_cast<BlockQ4_0*>(dst), n / kQK4_0);
      return true;
    case GgmlType::kQ4_K:
      QuantizeQ4_K(src, static_cast<BlockQ4_K*>(dst), n / kQK_K);
      return true;
    case GgmlType::kQ6_K:
      QuantizeQ6_K(src, static_cast<BlockQ6_K*>(dst), n / kQK_K);
      return true;
    case GgmlType::kQ8_K:
      QuantizeQ8_K(src, static_cast<BlockQ8_K*>(dst), n / kQK_K);
      return true;
    case GgmlType::kQ2_K:
      QuantizeQ2_K(src, static_cast<BlockQ2_K*>(dst), n / kQK_K);
      return true;
    case GgmlType::kQ3_K:
      QuantizeQ3_K(src, static_cast<BlockQ3_K*>(dst), n / kQK_K);
      return true;
    case GgmlType::kIQ4_XS:
      QuantizeIQ4_XS(src, static_cast<BlockIQ4_XS*>(dst), n / kQK_K);
      return true;
    case GgmlType::kQ4_1:
      quant_internal::QuantizeQ4_1(src, static_cast<BlockQ4_1*>(dst), n / kQK4_1);
      return true;
    case GgmlType::kQ8_1:
      quant_internal::QuantizeQ8_1(src, static_cast<BlockQ8_1*>(dst), n / kQK8_1);
      return true;
    case GgmlType::kQ5_0:
      quant_internal::QuantizeQ5_0(src, static_cast<BlockQ5_0*>(dst), n / kQK5_0);
      return true;
    case GgmlType::kQ5_1:
      quant_internal::QuantizeQ5_1(src, static_cast<BlockQ5_1*>(dst), n / kQK5_1);
      return true;
    case GgmlType::kIQ4_NL:
      quant_internal::QuantizeIQ4_NL(src, static_cast<BlockIQ4_NL*>(dst), n / kQK4_NL);
      return true;
    case GgmlType::kQ5_K:
      quant_internal::QuantizeQ5_K(src, static_cast<BlockQ5_K*>(dst), n / kQK_K);
      return true;
  }
  return false;
}

}  // namespace

absl::Status CheckQuantizeRow(GgmlType type, int64_t n) {
  // The dispatch itself answers, on an empty row: no second list of types to keep in step.
  const float none = 0.0f;
  uint8_t sink[1];
  if (!QuantizeRowIfHandled(type, &none, sink, 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("no quantizer for ", GgmlTypeIdName(static_cast<uint32_t>(type))));
  }
  return RowBytes(type, n).status();
}

void QuantizeRow(GgmlType type, const float* src, void* dst, int64_t n) {
  if (!QuantizeRowIfHandled(type, src, dst, n)) {
    // A caller skipped CheckQuantizeRow: stop rather than leave the row unwritten.
    std::fprintf(stderr, "QuantizeRow: no quantizer for %s\n",
                 GgmlTypeIdName(static_cast<uint32_t>(type)).c_str());
    std::abort();
  }
}

float DotRowReference(GgmlType type, const void* row, const float* x, int64_t n) {
  // Dequantize a block-sized chunk at a time so that no allocation is needed.
  constexpr int64_t kChunk = kQK_K;  // a multiple of every block size
  float w[kChunk];
  double sum = 0.0;
  const auto* bytes = static_cast<const uint8_t*>(row);
  auto traits = GetTypeTraits(type);
  if (!traits.ok()) return 0.0f;
  const size_t chunk_bytes = static_cast<size_t>(kChunk / traits->block_size) * traits->type_size;
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t len = std::min(kChunk, n - start);
    DequantizeRow(type, bytes, w, len);
    for (int64_t i = 0; i < len; ++i) sum += static_cast<double>(w[i]) * x[start + i];
    bytes += chunk_bytes;
  }
  return static_cast<float>(sum);
}

GgmlType VecDotType(GgmlType weight_type) {
  switch (weight_type) {
    case GgmlType::kQ8_0:
    case GgmlType::kQ4_0:
    case GgmlType::kQ5_0:
    case GgmlType::kIQ4_NL:
      return GgmlType::kQ8_0;
    case GgmlType::kQ4_1:
    case GgmlType::kQ5_1:
      return GgmlType::kQ8_1;
    case GgmlType::kQ4_K:
    case GgmlType::kQ5_K:
    case GgmlType::kQ6_K:
    case GgmlType::kQ2_K:
    case GgmlType::kQ3_K:
    case GgmlType::kIQ4_XS:
      return GgmlType::kQ8_K;
    default:
      return GgmlType::kF32;
  }
}

float VecDotQuantizedReference(GgmlType type, const void* row, const void* x_quant, int64_t n) {
  switch (type) {
    case GgmlType::kQ8_0:
      return VecDotQ8_0Q8_0(static_cast<const BlockQ8_0*>(row),
                            static_cast<const BlockQ8_0*>(x_quant), n / kQK8_0);
    case GgmlType::kQ4_0:
      return VecDotQ4_0Q8_0(static_cast<const BlockQ4_0*>(row),
                            static_cast<const BlockQ8_0*>(x_quant), n / kQK4_0);
    case GgmlType::kQ4_K:
      return VecDotQ4_KQ8_K(static_cast<const BlockQ4_K*>(row),
                            static_cast<const BlockQ8_K*>(x_quant), n / kQK_K);
    case GgmlType::kQ6_K:
      return VecDotQ6_KQ8_K(static_cast<const BlockQ6_K*>(row),
                            static_cast<const BlockQ8_K*>(x_quant), n / kQK_K);
    case GgmlType::kQ2_K:
      return VecDotQ2_KQ8_K(static_cast<const BlockQ2_K*>(row),
                            static_cast<const BlockQ8_K*>(x_quant), n / kQK_K);
    case GgmlType::kQ3_K:
      return VecDotQ3_KQ8_K(static_cast<const BlockQ3_K*>(row),
                            static_cast<const BlockQ8_K*>(x_quant), n / kQK_K);
    case GgmlType::kIQ4_XS:
      return VecDotIQ4_XSQ8_K(static_cast<const BlockIQ4_XS*>(row),
                              static_cast<const BlockQ8_K*>(x_quant), n / kQK_K);
    case GgmlType::kQ4_1:
      return quant_internal::VecDotQ4_1Q8_1(static_cast<const BlockQ4_1*>(row),
                                            static_cast<const BlockQ8_1*>(x_quant), n / kQK4_1);
    case GgmlType::kQ5_0:
      return quant_internal::VecDotQ5_0Q8_0(static_cast<const BlockQ5_0*>(row),
                                            static_cast<const BlockQ8_0*>(x_quant), n / kQK5_0);
    case GgmlType::kQ5_1:
      return quant_internal::VecDotQ5_1Q8_1(static_cast<const BlockQ5_1*>(row),
                                            static_cast<const BlockQ8_1*>(x_quant), n / kQK5_1);
    case GgmlType::kIQ4_NL:
      return quant_internal::VecDotIQ4_NLQ8_0(static_cast<const BlockIQ4_NL*>(row),
                                              static_cast<const BlockQ8_0*>(x_quant), n / kQK4_NL);
    case GgmlType::kQ5_K:
      return quant_internal::VecDotQ5_KQ8_K(static_cast<const BlockQ5_K*>(row),
                                            static_cast<const BlockQ8_K*>(x_quant), n / kQK_K);
    default:
      // Float weight types take float activations (VecDotType is F32).
      return DotRowReference(type, row, static_cast<const float*>(x_quant), n);
  }
}

}  // namespace swarm::kernels
