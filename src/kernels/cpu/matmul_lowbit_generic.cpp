// Portable Q2_K, Q3_K and IQ4_XS products against X8 activations (group 256): per super-block an
// integer dot product with the sub-block scales, times the weight and activation scales.
#include "base/half.h"
#include "kernels/block_lowbit.h"
#include "kernels/cpu/matmul_lowbit.h"

namespace swarm::kernels::cpu {
namespace {

struct X8Token {
  const int8_t* qs;
  const float* d;
  const int16_t* bsum16;
};

X8Token ViewToken(const uint8_t* base, const X8Layout& l) {
  return {reinterpret_cast<const int8_t*>(base), reinterpret_cast<const float*>(base + l.d_offset),
          reinterpret_cast<const int16_t*>(base + l.bsum16_offset)};
}

inline int TwoBits(const uint8_t* qs, int e) {
  return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}

float DotQ2_K(const uint8_t* row, const X8Token& x, int64_t n) {
  float sum = 0.0f;
  for (int64_t s = 0; s < n / kQK_K; ++s) {
    const auto* b = reinterpret_cast<const BlockQ2_K*>(row) + s;
    const int8_t* xq = x.qs + kQK_K * s;
    int32_t isum = 0;
    int32_t msum = 0;
    for (int j = 0; j < 16; ++j) {
      int32_t sub = 0;
      for (int i = 0; i < 16; ++i) sub += TwoBits(b->qs, 16 * j + i) * xq[16 * j + i];
      isum += (b->scales[j] & 0x0f) * sub;
      msum += (b->scales[j] >> 4) * x.bsum16[16 * s + j];
    }
    const float xd = x.d[s];
    sum += static_cast<float>(isum) * (HalfToFloat(b->d) * xd) -
           static_cast<float>(msum) * (HalfToFloat(b->dmin) * xd);
  }
  return sum;
}

float DotQ3_K(const uint8_t* row, const X8Token& x, int64_t n) {
  float sum = 0.0f;
  for (int64_t s = 0; s < n / kQK_K; ++s) {
    const auto* b = reinterpret_cast<const BlockQ3_K*>(row) + s;
    const int8_t* xq = x.qs + kQK_K * s;
    int32_t isum = 0;
    for (int j = 0; j < 16; ++j) {
      int32_t sub = 0;
      for (int i = 0; i < 16; ++i) {
        const int e = 16 * j + i;
        const int q = TwoBits(b->qs, e) - (((b->hmask[e % 32] >> (e / 32)) & 1) ? 0 : 4);
        sub += q * xq[e];
      }
      isum += (Q3_KScale(b->scales, j) - 32) * sub;
    }
    sum += static_cast<float>(isum) * (HalfToFloat(b->d) * x.d[s]);
  }
  return sum;
}

float DotIQ4_XS(const uint8_t* row, const X8Token& x, int64_t n) {
  float sum = 0.0f;
  for (int64_t s = 0; s < n / kQK_K; ++s) {
    const auto* b = reinterpret_cast<const BlockIQ4_XS*>(row) + s;
    const int8_t* xq = x.qs + kQK_K * s;
    int32_t isum = 0;
    for (int j = 0; j < 8; ++j) {
      const uint8_t* q = b->qs + 16 * j;
      int32_t sub = 0;
      for (int i = 0; i < 16; ++i) {
        sub += kKValuesIq4Nl[q[i] & 0x0f] * xq[32 * j + i] +
               kKValuesIq4Nl[q[i] >> 4] * xq[32 * j + 16 + i];
      }
      isum += (IQ4_XSScale(*b, j) - 32) * sub;
    }
    sum += static_cast<float>(isum) * (HalfToFloat(b->d) * x.d[s]);
  }
  return sum;
}

template <float (*kDot)(const uint8_t*, const X8Token&, int64_t)>
void MatMul(const MatMulArgs& a, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = a.w + r * a.row_bytes;
    for (int64_t t = 0; t < a.n_tokens; ++t) {
      a.y[t * a.n_out + r] = kDot(row, ViewToken(a.x + t * a.x_stride, a.x8), a.n_in);
    }
  }
}

}  // namespace

MatMulFn LowBitMatMulGeneric(GgmlType type) {
  switch (type) {
    case GgmlType::kQ2_K:
      return MatMul<DotQ2_K>;
    case GgmlType::kQ3_K:
      return MatMul<DotQ3_K>;
    case GgmlType::kIQ4_XS:
      return MatMul<DotIQ4_XS>;
    default:
      return nullptr;
  }
}

}  // namespace swarm::kernels::cpu
