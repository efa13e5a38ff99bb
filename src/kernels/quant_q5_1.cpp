// Q5_1 reference code. The float expressions keep llama.cpp's order of operations (see
// quant_reference.cpp): the golden tests check the bits.
#include "kernels/quant_q5_1.h"

#include <cfloat>
#include <cstring>

#include "base/half.h"

namespace swarm::kernels::quant_internal {

void QuantizeQ5_1(const float* x, BlockQ5_1* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK5_1) {
    float min = FLT_MAX;
    float max = -FLT_MAX;
    for (int j = 0; j < kQK5_1; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 31;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = FloatToHalf(d);
    y[i].m = FloatToHalf(min);
    // ggml truncates (v - min) * id + 0.5, which lies in [0.5, 31.5] for finite rows (no cap).
    auto quant = [&](float v) {
      const float q = (v - min) * id + 0.5f;
      return static_cast<uint8_t>(q >= 0.0f && q < 32.0f ? static_cast<int>(q) : 0);
    };
    uint32_t qh = 0;
    for (int j = 0; j < kQK5_1 / 2; ++j) {
      const uint8_t q0 = quant(x[j]);
      const uint8_t q1 = quant(x[j + kQK5_1 / 2]);
      y[i].qs[j] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
      qh |= uint32_t{(q0 & 0x10u) >> 4} << j;
      qh |= uint32_t{(q1 & 0x10u) >> 4} << (j + kQK5_1 / 2);
    }
    std::memcpy(y[i].qh, &qh, sizeof qh);
  }
}

void DequantizeQ5_1(const BlockQ5_1* x, float* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, y += kQK5_1) {
    const float d = HalfToFloat(x[i].d);
    const float m = HalfToFloat(x[i].m);
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, sizeof qh);
    for (int j = 0; j < kQK5_1 / 2; ++j) {
      const int q0 = (x[i].qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1) << 4);
      const int q1 = (x[i].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
      y[j] = q0 * d + m;
      y[j + kQK5_1 / 2] = q1 * d + m;
    }
  }
}

float VecDotQ5_1Q8_1(const BlockQ5_1* x, const BlockQ8_1* y, int64_t n_blocks) {
  float sumf = 0;
  for (int64_t ib = 0; ib < n_blocks; ++ib) {
    uint32_t qh;
    std::memcpy(&qh, x[ib].qh, sizeof qh);
    int sumi0 = 0;
    int sumi1 = 0;
    for (int j = 0; j < kQK5_1 / 2; ++j) {
      const int q0 = (x[ib].qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1) << 4);
      const int q1 = (x[ib].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
      sumi0 += q0 * y[ib].qs[j];
      sumi1 += q1 * y[ib].qs[j + kQK5_1 / 2];
    }
    const int sumi = sumi0 + sumi1;
    // The min term uses Q8_1's precomputed d * sum(qs).
    sumf += (HalfToFloat(x[ib].d) * HalfToFloat(y[ib].d)) * sumi +
            HalfToFloat(x[ib].m) * HalfToFloat(y[ib].s);
  }
  return sumf;
}

}  // namespace swarm::kernels::quant_internal
