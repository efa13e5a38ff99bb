// Q4_1 and Q8_1 reference code. The float expressions keep llama.cpp's order of operations (see
// quant_reference.cpp): the golden tests check the bits.
#include "kernels/quant_q4_1.h"

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "base/half.h"
#include "kernels/quant_reference_internal.h"

namespace swarm::kernels::quant_internal {

void QuantizeQ4_1(const float* x, BlockQ4_1* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK4_1) {
    float min = FLT_MAX;
    float max = -FLT_MAX;
    for (int j = 0; j < kQK4_1; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 15;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = FloatToHalf(d);
    y[i].m = FloatToHalf(min);
    // ggml truncates v + 0.5 to int8 and caps at 15 (a negative int8 would wrap in the uint8).
    auto quant = [&](float v) {
      return static_cast<uint8_t>(std::min(15, int{SaturateToInt8((v - min) * id + 0.5f)}));
    };
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      y[i].qs[j] = static_cast<uint8_t>(quant(x[j]) | (quant(x[j + kQK4_1 / 2]) << 4));
    }
  }
}

void DequantizeQ4_1(const BlockQ4_1* x, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, y += kQK4_1) {
    const float d = HalfToFloat(x[i].d);
    const float m = HalfToFloat(x[i].m);
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      y[j] = (x[i].qs[j] & 0x0f) * d + m;
      y[j + kQK4_1 / 2] = (x[i].qs[j] >> 4) * d + m;
    }
  }
}

void QuantizeQ8_1(const float* x, BlockQ8_1* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK8_1) {
    float amax = 0.0f;
    for (int j = 0; j < kQK8_1; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = FloatToHalf(d);
    int sum = 0;
    for (int j = 0; j < kQK8_1; ++j) {
      y[i].qs[j] = SaturateToInt8(std::round(x[j] * id));  // roundf: ties away from zero
      sum += y[i].qs[j];
    }
    y[i].s = FloatToHalf(sum * d);
  }
}

void DequantizeQ8_1(const BlockQ8_1* x, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i) {
    const float d = HalfToFloat(x[i].d);
    for (int j = 0; j < kQK8_1; ++j) *y++ = x[i].qs[j] * d;
  }
}

float VecDotQ4_1Q8_1(const BlockQ4_1* x, const BlockQ8_1* y, int64_t n_blocks) {
  float sumf = 0;
  for (int64_t ib = 0; ib < n_blocks; ++ib) {
    int sumi0 = 0;
    int sumi1 = 0;
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      sumi0 += (x[ib].qs[j] & 0x0f) * y[ib].qs[j];
      sumi1 += (x[ib].qs[j] >> 4) * y[ib].qs[j + kQK4_1 / 2];
    }
    const int sumi = sumi0 + sumi1;
    // The min term uses Q8_1's precomputed d * sum(qs).
    sumf += (HalfToFloat(x[ib].d) * HalfToFloat(y[ib].d)) * sumi +
            HalfToFloat(x[ib].m) * HalfToFloat(y[ib].s);
  }
  return sumf;
}

}  // namespace swarm::kernels::quant_internal
