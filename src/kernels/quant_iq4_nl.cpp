// IQ4_NL reference code: ggml's IQ4 fit (as IQ4_XS's, quant_reference_lowbit.cpp) with one block
// per scale, the scale stored as it is fitted. Float expressions in llama.cpp's order: the golden
// tests check the bits.
#include "kernels/quant_iq4_nl.h"

#include <cmath>

#include "base/half.h"
#include "kernels/block_lowbit.h"
#include "kernels/quant_reference_internal.h"

namespace swarm::kernels::quant_internal {
namespace {

// Index of the level nearest x (ggml's best_index_int8 over the 16 ascending levels).
int NearestLevel(float x) {
  const int8_t* values = kKValuesIq4Nl;
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

void QuantizeIQ4_NL(const float* x, BlockIQ4_NL* y, int64_t n_blocks) {
  constexpr int kNtry = 7;
  const int8_t* values = kKValuesIq4Nl;
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK4_NL) {
    float weight[kQK4_NL];
    for (int j = 0; j < kQK4_NL; ++j) weight[j] = x[j] * x[j];
    float amax = 0;
    float max = 0;
    for (int j = 0; j < kQK4_NL; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    float d = 0;
    if (amax >= kGroupMaxEps) {
      d = -max / values[0];
      float id = 1 / d;
      float sumqx = 0;
      float sumq2 = 0;
      for (int j = 0; j < kQK4_NL; ++j) {
        const float q = values[NearestLevel(id * x[j])];
        sumqx += weight[j] * q * x[j];
        sumq2 += weight[j] * q * q;
      }
      d = sumqx / sumq2;
      float best = d * sumqx;
      for (int itry = -kNtry; itry <= kNtry; ++itry) {
        id = static_cast<float>(itry + values[0]) / max;
        sumqx = 0;
        sumq2 = 0;
        for (int j = 0; j < kQK4_NL; ++j) {
          const float q = values[NearestLevel(id * x[j])];
          sumqx += weight[j] * q * x[j];
          sumq2 += weight[j] * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
          d = sumqx / sumq2;
          best = d * sumqx;
        }
      }
    }
    // One block per scale: the fitted d is stored as is and the levels chosen again against it
    // (unrounded), as ggml does; an all-zero block takes the level nearest 0.
    y[i].d = FloatToHalf(d);
    const float id = d != 0.0f ? 1 / d : 0.0f;
    for (int j = 0; j < kQK4_NL / 2; ++j) {
      y[i].qs[j] = static_cast<uint8_t>(NearestLevel(id * x[j]) |
                                        (NearestLevel(id * x[j + kQK4_NL / 2]) << 4));
    }
  }
}

void DequantizeIQ4_NL(const BlockIQ4_NL* x, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, y += kQK4_NL) {
    const float d = HalfToFloat(x[i].d);
    for (int j = 0; j < kQK4_NL / 2; ++j) {
      y[j] = d * kKValuesIq4Nl[x[i].qs[j] & 0x0f];
      y[j + kQK4_NL / 2] = d * kKValuesIq4Nl[x[i].qs[j] >> 4];
    }
  }
}

float VecDotIQ4_NLQ8_0(const BlockIQ4_NL* x, const BlockQ8_0* y, int64_t n_blocks) {
  float sumf = 0;
  for (int64_t ib = 0; ib < n_blocks; ++ib) {
    const float d = HalfToFloat(y[ib].d) * HalfToFloat(x[ib].d);
    int sumi1 = 0;
    int sumi2 = 0;
    for (int j = 0; j < kQK4_NL / 2; ++j) {
      sumi1 += y[ib].qs[j] * kKValuesIq4Nl[x[ib].qs[j] & 0x0f];
      sumi2 += y[ib].qs[j + kQK4_NL / 2] * kKValuesIq4Nl[x[ib].qs[j] >> 4];
    }
    sumf += d * (sumi1 + sumi2);
  }
  return sumf;
}

}  // namespace swarm::kernels::quant_internal
