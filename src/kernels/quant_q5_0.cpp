// Q5_0 reference code. The float expressions keep llama.cpp's order of operations (see
// quant_reference.cpp): the golden tests check the bits.
#include "kernels/quant_q5_0.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/half.h"
#include "kernels/quant_reference_internal.h"

namespace swarm::kernels::quant_internal {

void QuantizeQ5_0(const float* x, BlockQ5_0* y, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, x += kQK5_0) {
    // As Q4_0: the signed value of largest magnitude maps to -16.
    float amax = 0.0f;
    float max = 0.0f;
    for (int j = 0; j < kQK5_0; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = FloatToHalf(d);
    // ggml truncates v * id + 16.5 to int8 and caps at 31.
    auto quant = [&](float v) {
      return static_cast<uint8_t>(std::min(31, int{SaturateToInt8(v * id + 16.5f)}));
    };
    uint32_t qh = 0;
    for (int j = 0; j < kQK5_0 / 2; ++j) {
      const uint8_t q0 = quant(x[j]);
      const uint8_t q1 = quant(x[j + kQK5_0 / 2]);
      y[i].qs[j] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
      qh |= uint32_t{(q0 & 0x10u) >> 4} << j;
      qh |= uint32_t{(q1 & 0x10u) >> 4} << (j + kQK5_0 / 2);
    }
    std::memcpy(y[i].qh, &qh, sizeof qh);
  }
}

void UnpackQ5_0(const BlockQ5_0& b, int8_t* out) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, sizeof qh);
  for (int j = 0; j < kQK5_0 / 2; ++j) {
    const int h0 = static_cast<int>((qh >> j) & 1) << 4;
    const int h1 = static_cast<int>((qh >> (j + kQK5_0 / 2)) & 1) << 4;
    out[j] = static_cast<int8_t>(((b.qs[j] & 0x0f) | h0) - 16);
    out[j + kQK5_0 / 2] = static_cast<int8_t>(((b.qs[j] >> 4) | h1) - 16);
  }
}

void DequantizeQ5_0(const BlockQ5_0* x, float* y, int64_t n_blocks) {
  int8_t q[kQK5_0];
  for (int64_t i = 0; i < n_blocks; ++i) {
    const float d = HalfToFloat(x[i].d);
    UnpackQ5_0(x[i], q);
    for (int j = 0; j < kQK5_0; ++j) *y++ = q[j] * d;
  }
}

float VecDotQ5_0Q8_0(const BlockQ5_0* x, const BlockQ8_0* y, int64_t n_blocks) {
  int8_t q[kQK5_0];
  float sumf = 0;
  for (int64_t ib = 0; ib < n_blocks; ++ib) {
    UnpackQ5_0(x[ib], q);
    int sumi = 0;
    for (int j = 0; j < kQK5_0; ++j) sumi += q[j] * y[ib].qs[j];
    sumf += (HalfToFloat(x[ib].d) * HalfToFloat(y[ib].d)) * sumi;
  }
  return sumf;
}

}  // namespace swarm::kernels::quant_internal
