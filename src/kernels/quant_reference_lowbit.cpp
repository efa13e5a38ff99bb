// Reference (de)quantization and Q8_K dot products of Q2_K, Q3_K and IQ4_XS. Each function
// reproduces llama.cpp's quantize_row_q2_K_ref / quantize_row_q3_K_ref / quantize_iq4_xs (no
// importance weights) and ggml_vec_dot_*_q8_K_generic bit for bit, so the float operations keep the
// order they have there (see quant_reference.cpp); the golden test checks them against llama.cpp.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/half.h"
#include "kernels/block_lowbit.h"
#include "kernels/quant_reference_internal.h"

namespace swarm::kernels {
namespace {

using quant_internal::FitError;
using quant_internal::kGroupMaxEps;
using quant_internal::MakeQkx2Quants;
using quant_internal::NearestInt;

// ggml's make_q3_quants with rmse refinement: x ~= scale * l, l in [-nmax, nmax - 1], improved one
// element at a time while the weighted (x^2) least-squares fit gets better; L = l + nmax.
float MakeQ3Quants(int n, int nmax, const float* x, int8_t* L) {
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
  const float iscale = -nmax / max;
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = NearestInt(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * L[i];
      if (slx > 0) {
        float sl2 = suml2 - w * L[i] * L[i];
        int new_l = NearestInt(x[i] * sl2 / slx);
        new_l = std::max(-nmax, std::min(nmax - 1, new_l));
        if (new_l != L[i]) {
          slx += w * x[i] * new_l;
          sl2 += w * new_l * new_l;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<int8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (n_changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return sumlx / suml2;
}

// Packs 256 2-bit values: per 128 elements, byte l holds elements l, l+32, l+64, l+96 in bit pairs
// 0-1, 2-3, 4-5, 6-7.
template <typename T>
void Pack2Bit(const T* L, uint8_t* qs) {
  for (int j = 0; j < kQK_K; j += 128) {
    for (int l = 0; l < 32; ++l) {
      qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                           (L[j + l + 96] << 6));
    }
  }
}

// The 2-bit value of element e (0..255) of a Q2_K/Q3_K qs array.
inline int Get2Bit(const uint8_t* qs, int e) {
  return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}

// The index of the value in `values` (16 ascending levels) nearest to x (ggml's best_index_int8:
// ties go to the upper level).
int BestIndexInt8(const int8_t* values, float x) {
  if (x <= values[0]) return 0;
  if (x >= values[15]) return 15;
  int ml = 0;
  int mu = 15;
  while (mu - ml > 1) {
    const int mav = (ml + mu) / 2;
    if (x < values[mav]) {
      mu = mav;
    } else {
      ml = mav;
    }
  }
  return x - values[mu - 1] < values[mu] - x ? mu - 1 : mu;
}

}  // namespace

// ---- Q2_K -------------------------------------------------------------------------------------

void QuantizeQ2_K(const float* x, BlockQ2_K* y, int64_t n_blocks) {
  uint8_t L[kQK_K];
  uint8_t Laux[16];
  float weights[16];
  float mins[kQK_K / 16];
  float scales[kQK_K / 16];
  constexpr float kQ4Scale = 15.0f;
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK_K) {
    float max_scale = 0;  // scales are >= 0 because the min is subtracted
    float max_min = 0;
    for (int j = 0; j < kQK_K / 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] = MakeQkx2Quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f,
                                 0.1f, 15, FitError::kAbsolute);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
      const float iscale = kQ4Scale / max_scale;
      for (int j = 0; j < kQK_K / 16; ++j) {
        y[i].scales[j] = static_cast<uint8_t>(NearestInt(iscale * scales[j]));
      }
      y[i].d = FloatToHalf(max_scale / kQ4Scale);
    } else {
      for (int j = 0; j < kQK_K / 16; ++j) y[i].scales[j] = 0;
      y[i].d = FloatToHalf(0.0f);
    }
    if (max_min > 0) {
      const float iscale = kQ4Scale / max_min;
      for (int j = 0; j < kQK_K / 16; ++j) {
        y[i].scales[j] |= static_cast<uint8_t>(NearestInt(iscale * mins[j]) << 4);
      }
      y[i].dmin = FloatToHalf(max_min / kQ4Scale);
    } else {
      y[i].dmin = FloatToHalf(0.0f);
    }
    // Requantize against the scales as stored.
    for (int j = 0; j < kQK_K / 16; ++j) {
      const float d = HalfToFloat(y[i].d) * (y[i].scales[j] & 0x0f);
      if (d == 0.0f) continue;
      const float dm = HalfToFloat(y[i].dmin) * (y[i].scales[j] >> 4);
      for (int ii = 0; ii < 16; ++ii) {
        const int l = NearestInt((x[16 * j + ii] + dm) / d);
        L[16 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(3, l)));
      }
    }
    Pack2Bit(L, y[i].qs);
  }
}

void DequantizeQ2_K(const BlockQ2_K* x, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, y += kQK_K) {
    const float d = HalfToFloat(x[i].d);
    const float min = HalfToFloat(x[i].dmin);
    for (int e = 0; e < kQK_K; ++e) {
      const uint8_t sc = x[i].scales[e / 16];
      const float dl = d * (sc & 0x0f);
      const float ml = min * (sc >> 4);
      y[e] = dl * Get2Bit(x[i].qs, e) - ml;
    }
  }
}

float VecDotQ2_KQ8_K(const BlockQ2_K* x, const BlockQ8_K* y, int64_t n_blocks) {
  float sumf = 0;
  for (int64_t i = 0; i < n_blocks; ++i) {
    int summs = 0;  // the mins term: sum over 16-groups of min * bsum
    for (int j = 0; j < 16; ++j) summs += y[i].bsums[j] * (x[i].scales[j] >> 4);
    const float dall = y[i].d * HalfToFloat(x[i].d);
    const float dmin = y[i].d * HalfToFloat(x[i].dmin);
    int isum = 0;
    for (int e = 0; e < kQK_K; ++e) {
      isum += (x[i].scales[e / 16] & 0x0f) * (y[i].qs[e] * Get2Bit(x[i].qs, e));
    }
    sumf += dall * isum - dmin * summs;
  }
  return sumf;
}

// ---- Q3_K -------------------------------------------------------------------------------------

void QuantizeQ3_K(const float* x, BlockQ3_K* y, int64_t n_blocks) {
  int8_t L[kQK_K];
  float scales[kQK_K / 16];
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK_K) {
    float max_scale = 0;
    float amax = 0;
    for (int j = 0; j < kQK_K / 16; ++j) {
      scales[j] = MakeQ3Quants(16, 4, x + 16 * j, L + 16 * j);
      const float scale = std::fabs(scales[j]);
      if (scale > amax) {
        amax = scale;
        max_scale = scales[j];
      }
    }
    std::memset(y[i].scales, 0, sizeof y[i].scales);
    if (max_scale != 0.0f) {
      // The sub-scale of largest magnitude becomes -32, stored with a +32 offset in 6 bits.
      const float iscale = -32.0f / max_scale;
      for (int j = 0; j < kQK_K / 16; ++j) {
        const int l = std::max(-32, std::min(31, NearestInt(iscale * scales[j]))) + 32;
        if (j < 8) {
          y[i].scales[j] = static_cast<uint8_t>(l & 0x0f);
        } else {
          y[i].scales[j - 8] |= static_cast<uint8_t>((l & 0x0f) << 4);
        }
        y[i].scales[j % 4 + 8] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
      }
      y[i].d = FloatToHalf(1 / iscale);
    } else {
      y[i].d = FloatToHalf(0.0f);
    }
    for (int j = 0; j < kQK_K / 16; ++j) {
      const float d = HalfToFloat(y[i].d) * (Q3_KScale(y[i].scales, j) - 32);
      if (d == 0.0f) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = NearestInt(x[16 * j + ii] / d);
        L[16 * j + ii] = static_cast<int8_t>(std::max(-4, std::min(3, l)) + 4);
      }
    }
    std::memset(y[i].hmask, 0, sizeof y[i].hmask);
    for (int j = 0; j < kQK_K; ++j) {
      if (L[j] > 3) {
        y[i].hmask[j % 32] |= static_cast<uint8_t>(1 << (j / 32));
        L[j] = static_cast<int8_t>(L[j] - 4);
      }
    }
    Pack2Bit(L, y[i].qs);
  }
}

namespace {
// The 3-bit value (-4..3) of element e of a Q3_K block.
inline int Q3_KValue(const BlockQ3_K& b, int e) {
  return Get2Bit(b.qs, e) - ((b.hmask[e % 32] >> (e / 32)) & 1 ? 0 : 4);
}
}  // namespace

void DequantizeQ3_K(const BlockQ3_K* x, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, y += kQK_K) {
    const float d_all = HalfToFloat(x[i].d);
    for (int e = 0; e < kQK_K; ++e) {
      const float dl = d_all * (Q3_KScale(x[i].scales, e / 16) - 32);
      y[e] = dl * Q3_KValue(x[i], e);
    }
  }
}

// As ggml's scalar K-quant dot products: integer products in 8 lanes (element e to lane e % 8),
// 8 float partial sums across blocks added at the end.
float VecDotQ3_KQ8_K(const BlockQ3_K* x, const BlockQ8_K* y, int64_t n_blocks) {
  float sums[8] = {};
  for (int64_t i = 0; i < n_blocks; ++i) {
    int32_t lanes[8] = {};
    for (int e = 0; e < kQK_K; ++e) {
      lanes[e % 8] += (Q3_KScale(x[i].scales, e / 16) - 32) * (y[i].qs[e] * Q3_KValue(x[i], e));
    }
    const float d = HalfToFloat(x[i].d) * y[i].d;
    for (int l = 0; l < 8; ++l) sums[l] += d * lanes[l];
  }
  float sumf = 0;
  for (int l = 0; l < 8; ++l) sumf += sums[l];
  return sumf;
}

// ---- IQ4_XS -----------------------------------------------------------------------------------

void QuantizeIQ4_XS(const float* x, BlockIQ4_XS* y, int64_t n_blocks) {
  constexpr int kNtry = 7;
  const int8_t* values = kKValuesIq4Nl;
  uint8_t L[kQK_K];
  float weight[32];
  float scales[kQK_K / 32];
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK_K) {
    BlockIQ4_XS& b = y[i];
    std::memset(b.qs, 0, sizeof b.qs);
    float max_scale = 0;
    float amax_scale = 0;
    for (int ib = 0; ib < kQK_K / 32; ++ib) {
      const float* xb = x + 32 * ib;
      uint8_t* Lb = L + 32 * ib;
      for (int j = 0; j < 32; ++j) weight[j] = xb[j] * xb[j];
      float amax = 0;
      float max = 0;
      for (int j = 0; j < 32; ++j) {
        const float ax = std::fabs(xb[j]);
        if (ax > amax) {
          amax = ax;
          max = xb[j];
        }
      }
      if (amax < kGroupMaxEps) {
        scales[ib] = 0;
        continue;
      }
      float d = -max / values[0];
      float id = 1 / d;
      float sumqx = 0;
      float sumq2 = 0;
      for (int j = 0; j < 32; ++j) {
        const int l = BestIndexInt8(values, id * xb[j]);
        Lb[j] = static_cast<uint8_t>(l);
        const float q = values[l];
        const float w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      d = sumqx / sumq2;
      float best = d * sumqx;
      for (int itry = -kNtry; itry <= kNtry; ++itry) {
        id = static_cast<float>(itry + values[0]) / max;
        sumqx = 0;
        sumq2 = 0;
        for (int j = 0; j < 32; ++j) {
          const float q = values[BestIndexInt8(values, id * xb[j])];
          const float w = weight[j];
          sumqx += w * q * xb[j];
          sumq2 += w * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
          d = sumqx / sumq2;
          best = d * sumqx;
        }
      }
      scales[ib] = d;
      if (std::fabs(d) > amax_scale) {
        amax_scale = std::fabs(d);
        max_scale = d;
      }
    }

    // The 6-bit sub-scales (offset 32) are fitted against the unrounded super-scale d, as ggml
    // does.
    b.scales_h = 0;
    const float d = -max_scale / 32;
    b.d = FloatToHalf(d);
    const float id = d != 0.0f ? 1 / d : 0.0f;
    for (int ib = 0; ib < kQK_K / 32; ++ib) {
      int l = std::max(-32, std::min(31, NearestInt(id * scales[ib])));
      const float dl = d * l;
      const float idl = dl != 0.0f ? 1 / dl : 0.0f;
      for (int j = 0; j < 32; ++j) {
        L[32 * ib + j] = static_cast<uint8_t>(BestIndexInt8(values, idl * x[32 * ib + j]));
      }
      l += 32;
      const auto l_l = static_cast<uint8_t>(l & 0x0f);
      const auto l_h = static_cast<uint16_t>(l >> 4);
      if (ib % 2 == 0) {
        b.scales_l[ib / 2] = l_l;
      } else {
        b.scales_l[ib / 2] |= static_cast<uint8_t>(l_l << 4);
      }
      b.scales_h |= static_cast<uint16_t>(l_h << (2 * ib));
    }
    for (int s = 0; s < kQK_K / 32; ++s) {
      for (int j = 0; j < 16; ++j) {
        b.qs[16 * s + j] = static_cast<uint8_t>(L[32 * s + j] | (L[32 * s + 16 + j] << 4));
      }
    }
  }
}

void DequantizeIQ4_XS(const BlockIQ4_XS* x, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i) {
    const float d = HalfToFloat(x[i].d);
    const uint8_t* qs = x[i].qs;
    for (int ib = 0; ib < kQK_K / 32; ++ib, y += 32, qs += 16) {
      const float dl = d * (IQ4_XSScale(x[i], ib) - 32);
      for (int j = 0; j < 16; ++j) {
        y[j] = dl * kKValuesIq4Nl[qs[j] & 0x0f];
        y[j + 16] = dl * kKValuesIq4Nl[qs[j] >> 4];
      }
    }
  }
}

float VecDotIQ4_XSQ8_K(const BlockIQ4_XS* x, const BlockQ8_K* y, int64_t n_blocks) {
  float sumf = 0;
  for (int64_t i = 0; i < n_blocks; ++i) {
    const float d4d8 = HalfToFloat(x[i].d) * y[i].d;
    const uint8_t* qs = x[i].qs;
    const int8_t* q8 = y[i].qs;
    for (int ib = 0; ib < kQK_K / 32; ++ib, qs += 16, q8 += 32) {
      const float dl = d4d8 * (IQ4_XSScale(x[i], ib) - 32);
      int sumi = 0;
      for (int j = 0; j < 16; ++j) {
        sumi += q8[j] * kKValuesIq4Nl[qs[j] & 0x0f] + q8[j + 16] * kKValuesIq4Nl[qs[j] >> 4];
      }
      sumf += dl * sumi;
    }
  }
  return sumf;
}

}  // namespace swarm::kernels
