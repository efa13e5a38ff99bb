// Portable matrix products of the Q4_1, Q5_0 and Q5_K weight types against X8 activations
// (kernels.h): integer sums per block times the two scales, the minimum terms (Q4_1, Q5_K) from
// the X8 token's fsum32 and the Q5_0 offset from its bsum32. The SIMD kernels compute the same
// integer sums; only float summation order differs.
#include <cstring>

#include "base/half.h"
#include "kernels/cpu/kernels_isa.h"

namespace swarm::kernels::cpu::generic {
namespace {

struct Token {
  const int8_t* qs;
  const float* d;
  const int32_t* bsum32;
  const float* fsum32;
};

Token ViewToken(const MatMulArgs& a, int64_t t) {
  const uint8_t* base = a.x + t * a.x_stride;
  const X8Layout& l = a.x8;
  return {reinterpret_cast<const int8_t*>(base), reinterpret_cast<const float*>(base + l.d_offset),
          reinterpret_cast<const int32_t*>(base + l.bsum32_offset),
          reinterpret_cast<const float*>(base + l.fsum32_offset)};
}

float DotQ4_1(const uint8_t* row, const Token& x, int64_t n) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / kQK4_1; ++b) {
    const auto* blk = reinterpret_cast<const BlockQ4_1*>(row) + b;
    const int8_t* xq = x.qs + 32 * b;
    int32_t s = 0;
    for (int i = 0; i < 16; ++i) s += (blk->qs[i] & 0x0f) * xq[i] + (blk->qs[i] >> 4) * xq[i + 16];
    // w = d * q + m: sum(w * x) = d * dx * sum(q * xq) + m * (dx * sum(xq)).
    sum +=
        static_cast<float>(s) * (HalfToFloat(blk->d) * x.d[b]) + HalfToFloat(blk->m) * x.fsum32[b];
  }
  return sum;
}

float DotQ5_0(const uint8_t* row, const Token& x, int64_t n) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / kQK5_0; ++b) {
    const auto* blk = reinterpret_cast<const BlockQ5_0*>(row) + b;
    const int8_t* xq = x.qs + 32 * b;
    uint32_t qh;
    std::memcpy(&qh, blk->qh, sizeof qh);
    int32_t s = 0;
    for (int i = 0; i < 16; ++i) {
      const int q0 = (blk->qs[i] & 0x0f) | static_cast<int>(((qh >> i) & 1) << 4);
      const int q1 = (blk->qs[i] >> 4) | static_cast<int>(((qh >> (i + 16)) & 1) << 4);
      s += q0 * xq[i] + q1 * xq[i + 16];
    }
    s -= 16 * x.bsum32[b];  // the quants are w + 16
    sum += static_cast<float>(s) * (HalfToFloat(blk->d) * x.d[b]);
  }
  return sum;
}

void GetScaleMinK4(int j, const uint8_t* q, int* scale, int* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    *min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

float DotQ5_K(const uint8_t* row, const Token& x, int64_t n) {
  float sum = 0.0f;
  for (int64_t s = 0; s < n / kQK_K; ++s) {
    const auto* blk = reinterpret_cast<const BlockQ5_K*>(row) + s;
    const int8_t* xq = x.qs + kQK_K * s;
    int32_t isum = 0;
    float mins = 0.0f;
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      GetScaleMinK4(j, blk->scales, &sc, &m);
      const uint8_t* q = blk->qs + 32 * (j / 2);
      int32_t sub = 0;
      for (int i = 0; i < 32; ++i) {
        const int low = (j % 2 == 0) ? (q[i] & 0x0f) : (q[i] >> 4);
        sub += (low | (((blk->qh[i] >> j) & 1) << 4)) * xq[32 * j + i];
      }
      isum += sc * sub;
      mins += static_cast<float>(m) * x.fsum32[8 * s + j];
    }
    sum +=
        static_cast<float>(isum) * (HalfToFloat(blk->d) * x.d[s]) - mins * HalfToFloat(blk->dmin);
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

void MatMulQ4_1(const MatMulArgs& a, int64_t r0, int64_t r1) { MatMul<DotQ4_1>(a, r0, r1); }
void MatMulQ5_0(const MatMulArgs& a, int64_t r0, int64_t r1) { MatMul<DotQ5_0>(a, r0, r1); }
void MatMulQ5_K(const MatMulArgs& a, int64_t r0, int64_t r1) { MatMul<DotQ5_K>(a, r0, r1); }

}  // namespace swarm::kernels::cpu::generic
