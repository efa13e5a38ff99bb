// Q5_K reference code. The float expressions keep llama.cpp's order of operations (see
// quant_reference.cpp): the golden tests check the bits.
#include "kernels/quant_q5_k.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/half.h"
#include "kernels/quant_reference_internal.h"

namespace swarm::kernels::quant_internal {

void QuantizeQ5_K(const float* x, BlockQ5_K* y, int64_t n_blocks) {
  uint8_t L[kQK_K];
  uint8_t Laux[32];
  float weights[32];
  float mins[kQK_K / 32];
  float scales[kQK_K / 32];
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK_K) {
    float max_scale = 0;
    float max_min = 0;
    for (int j = 0; j < kQK_K / 32; ++j) {
      float sum_x2 = 0;
      for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
      const float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
      scales[j] = MakeQkx2Quants(32, 31, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.5f,
                                 0.1f, 15, FitError::kSquared);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }

    // Scales and mins packed exactly as Q4_K's.
    PackScalesMinsK4(scales, mins, max_scale, max_min, y[i].scales, &y[i].d, &y[i].dmin);

    RequantizeK4(x, y[i].scales, y[i].d, y[i].dmin, 31, L);

    // Sub-block j's low 4 bits go where Q4_K puts them; its fifth bits are bit j of qh[0..31].
    std::memset(y[i].qh, 0, sizeof y[i].qh);
    uint8_t* ql = y[i].qs;
    for (int j = 0; j < kQK_K / 32; j += 2, ql += 32) {
      for (int l = 0; l < 32; ++l) {
        const uint8_t l1 = L[32 * j + l];
        const uint8_t l2 = L[32 * (j + 1) + l];
        y[i].qh[l] |= static_cast<uint8_t>(((l1 >> 4) << j) | ((l2 >> 4) << (j + 1)));
        ql[l] = static_cast<uint8_t>((l1 & 0x0f) | ((l2 & 0x0f) << 4));
      }
    }
  }
}

void UnpackQ5_K(const BlockQ5_K& b, uint8_t* out) {
  for (int e = 0; e < kQK_K; ++e) {
    const int sub = e / 32;
    const uint8_t byte = b.qs[32 * (sub / 2) + e % 32];
    const int low = (sub % 2 == 0) ? (byte & 0x0f) : (byte >> 4);
    out[e] = static_cast<uint8_t>(low | (((b.qh[e % 32] >> sub) & 1) << 4));
  }
}

void DequantizeQ5_K(const BlockQ5_K* x, float* y, int64_t n_blocks) {
  uint8_t q[kQK_K];
  for (int64_t i = 0; i < n_blocks; ++i, y += kQK_K) {
    const float d = HalfToFloat(x[i].d);
    const float dmin = HalfToFloat(x[i].dmin);
    UnpackQ5_K(x[i], q);
    for (int j = 0; j < kQK_K / 32; ++j) {
      uint8_t sc;
      uint8_t m;
      GetScaleMinK4(j, x[i].scales, &sc, &m);
      const float d1 = d * sc;
      const float m1 = dmin * m;
      for (int l = 0; l < 32; ++l) y[32 * j + l] = d1 * q[32 * j + l] - m1;
    }
  }
}

// As VecDotQ4_KQ8_K (quant_reference.cpp): integer products in 8 lanes (element e to lane e % 8),
// 8 float partial sums carried across blocks and added at the end.
float VecDotQ5_KQ8_K(const BlockQ5_K* x, const BlockQ8_K* y, int64_t n_blocks) {
  float sums[8] = {};
  float sumf = 0;
  uint8_t q[kQK_K];
  for (int64_t i = 0; i < n_blocks; ++i) {
    uint8_t scales[8];
    uint8_t mins[8];
    for (int j = 0; j < 8; ++j) GetScaleMinK4(j, x[i].scales, &scales[j], &mins[j]);
    UnpackQ5_K(x[i], q);
    int32_t lanes[8] = {};
    for (int e = 0; e < kQK_K; ++e) lanes[e % 8] += scales[e / 32] * (q[e] * y[i].qs[e]);
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

}  // namespace swarm::kernels::quant_internal
