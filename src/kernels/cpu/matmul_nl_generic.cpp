// Portable matrix products of Q5_1 and IQ4_NL weights (the 32-element types llama.cpp's quantizer
// falls back to) against X8 activations (kernels.h): integer sums per block times the two scales,
// Q5_1's minimum term from the X8 token's fsum32. The SIMD kernels (matmul_nl_x86.inc) compute
// the same integer sums; only float summation order differs.
#include <cstring>

#include "base/half.h"
#include "kernels/block_lowbit.h"
#include "kernels/cpu/kernels_isa.h"

namespace swarm::kernels::cpu::generic {
namespace {

struct Token {
  const int8_t* qs;
  const float* d;
  const float* fsum32;
};

Token ViewToken(const MatMulArgs& a, int64_t t) {
  const uint8_t* base = a.x + t * a.x_stride;
  return {reinterpret_cast<const int8_t*>(base),
          reinterpret_cast<const float*>(base + a.x8.d_offset),
          reinterpret_cast<const float*>(base + a.x8.fsum32_offset)};
}

float DotQ5_1(const uint8_t* row, const Token& x, int64_t n) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / kQK5_1; ++b) {
    const auto* blk = reinterpret_cast<const BlockQ5_1*>(row) + b;
    const int8_t* xq = x.qs + 32 * b;
    uint32_t qh;
    std::memcpy(&qh, blk->qh, sizeof qh);
    int32_t s = 0;
    for (int i = 0; i < 16; ++i) {
      const int q0 = (blk->qs[i] & 0x0f) | static_cast<int>(((qh >> i) & 1) << 4);
      const int q1 = (blk->qs[i] >> 4) | static_cast<int>(((qh >> (i + 16)) & 1) << 4);
      s += q0 * xq[i] + q1 * xq[i + 16];
    }
    // w = d * q + m: sum(w * x) = d * dx * sum(q * xq) + m * (dx * sum(xq)).
    sum +=
        static_cast<float>(s) * (HalfToFloat(blk->d) * x.d[b]) + HalfToFloat(blk->m) * x.fsum32[b];
  }
  return sum;
}

float DotIQ4_NL(const uint8_t* row, const Token& x, int64_t n) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / kQK4_NL; ++b) {
    const auto* blk = reinterpret_cast<const BlockIQ4_NL*>(row) + b;
    const int8_t* xq = x.qs + 32 * b;
    int32_t s = 0;
    for (int i = 0; i < 16; ++i) {
      s += kKValuesIq4Nl[blk->qs[i] & 0x0f] * xq[i] + kKValuesIq4Nl[blk->qs[i] >> 4] * xq[i + 16];
    }
    sum += static_cast<float>(s) * (HalfToFloat(blk->d) * x.d[b]);
  }
  return sum;
}

template <float (*kDot)(const uint8_t*, const Token&, int64_t)>
void MatMul(const MatMulArgs& a, int64_t r0, int64_t r1) {
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    const Token x = ViewToken(a, t);
    for (int64_t r = r0; r < r1; ++r) a.y[t * a.n_out + r] = kDot(a.w + r * a.row_bytes, x, a.n_in);
  }
}

}  // namespace

void MatMulQ5_1(const MatMulArgs& a, int64_t r0, int64_t r1) { MatMul<DotQ5_1>(a, r0, r1); }
void MatMulIQ4_NL(const MatMulArgs& a, int64_t r0, int64_t r1) { MatMul<DotIQ4_NL>(a, r0, r1); }

}  // namespace swarm::kernels::cpu::generic
