// The x86 bodies of the Q2_K, Q3_K and IQ4_XS products (256-bit integer SIMD), included by
// matmul_lowbit_avx2.cpp and matmul_lowbit_avx512.cpp so that each compiles them with its own
// flags. Internal linkage only: include from exactly those files.
#pragma once

#include <immintrin.h>

#include <cstring>

#include "kernels/block_lowbit.h"
#include "kernels/cpu/matmul_lowbit.h"

namespace swarm::kernels::cpu {
namespace {

struct X8Token {
  const int8_t* qs;
  const float* d;
  const int16_t* bsum16;
};

inline X8Token ViewToken(const uint8_t* base, const X8Layout& l) {
  return {reinterpret_cast<const int8_t*>(base), reinterpret_cast<const float*>(base + l.d_offset),
          reinterpret_cast<const int16_t*>(base + l.bsum16_offset)};
}

inline float HorizontalSum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

// Shuffle masks that spread the int8 scales of sub-blocks (of 16) 2m and 2m + 1 over 8 bytes each.
alignas(16) constexpr int8_t kPairMasks[8][16] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
    {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},
    {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9},
    {10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13},
    {14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15}};

// 16 int16: the scale of sub-block 2m (of the 16 int8 scales in `scales`) in lanes 0-7 and of
// sub-block 2m + 1 in lanes 8-15 (the 16-element halves of a 32-element maddubs).
inline __m256i PairScales(__m128i scales, int m) {
  const __m128i pick = _mm_load_si128(reinterpret_cast<const __m128i*>(kPairMasks[m]));
  return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pick));
}

inline float Half(uint16_t h) { return _cvtsh_ss(h); }

// The 16 signed Q3_K scales (6-bit value - 32) as bytes: low nibbles from bytes 0-7 (sub-blocks
// 0-7 the low nibble, 8-15 the high one), high bit pairs from bytes 8-11 (sub-block 4k + i: bits
// 2k..2k+1 of byte 8 + i).
inline __m128i Q3_KScales(const uint8_t* s) {
  uint64_t low_bytes;
  uint32_t high_bytes;
  std::memcpy(&low_bytes, s, 8);
  std::memcpy(&high_bytes, s + 8, 4);
  const __m128i v = _mm_cvtsi64_si128(static_cast<long long>(low_bytes));
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const __m128i low =
      _mm_unpacklo_epi64(_mm_and_si128(v, m4), _mm_and_si128(_mm_srli_epi16(v, 4), m4));
  const __m128i high = _mm_and_si128(
      _mm_srlv_epi32(_mm_set1_epi32(static_cast<int>(high_bytes)), _mm_setr_epi32(0, 2, 4, 6)),
      _mm_set1_epi8(3));
  return _mm_sub_epi8(_mm_or_si128(low, _mm_slli_epi16(high, 4)), _mm_set1_epi8(32));
}

float DotQ2_K(const uint8_t* row, const X8Token& x, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  __m256 acc_min = _mm256_setzero_ps();
  const __m256i mask2 = _mm256_set1_epi8(3);
  for (int64_t s = 0; s < n / kQK_K; ++s) {
    const auto* b = reinterpret_cast<const BlockQ2_K*>(row) + s;
    const int8_t* xq = x.qs + kQK_K * s;
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales));
    const __m128i scales = _mm_and_si128(raw, _mm_set1_epi8(0x0f));
    const __m256i mins =
        _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0f)));
    const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.bsum16 + 16 * s));
    const __m256i msum = _mm256_madd_epi16(mins, bsums);
    __m256i isum = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs + 32 * h));
      for (int k = 0; k < 4; ++k) {
        const __m256i w = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), mask2);
        const __m256i xv =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 128 * h + 32 * k));
        const __m256i p = _mm256_maddubs_epi16(w, xv);
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, PairScales(scales, 4 * h + k)));
      }
    }
    const float xd = x.d[s];
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(Half(b->d) * xd), acc);
    acc_min =
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(Half(b->dmin) * xd), acc_min);
  }
  return HorizontalSum(acc) - HorizontalSum(acc_min);
}

float DotQ3_K(const uint8_t* row, const X8Token& x, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  const __m256i mask2 = _mm256_set1_epi8(3);
  const __m256i four = _mm256_set1_epi8(4);
  for (int64_t s = 0; s < n / kQK_K; ++s) {
    const auto* b = reinterpret_cast<const BlockQ3_K*>(row) + s;
    const int8_t* xq = x.qs + kQK_K * s;
    const __m128i scales = Q3_KScales(b->scales);
    // The -4 of elements without their high bit, as -4 * scale * (sum of the 16 activations).
    const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.bsum16 + 16 * s));
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->hmask));
    __m256i isum = _mm256_slli_epi32(_mm256_madd_epi16(_mm256_cvtepi8_epi16(scales), bsums), 2);
    isum = _mm256_sub_epi32(_mm256_setzero_si256(), isum);
    for (int h = 0; h < 2; ++h) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs + 32 * h));
      for (int k = 0; k < 4; ++k) {
        const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << (4 * h + k)));
        const __m256i high =
            _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit), four);
        const __m256i w =
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * k), mask2), high);
        const __m256i xv =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 128 * h + 32 * k));
        const __m256i p = _mm256_maddubs_epi16(w, xv);
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, PairScales(scales, 4 * h + k)));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(Half(b->d) * x.d[s]), acc);
  }
  return HorizontalSum(acc);
}

float DotIQ4_XS(const uint8_t* row, const X8Token& x, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  const __m128i values128 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kKValuesIq4Nl));
  const __m256i values = _mm256_set_m128i(values128, values128);
  const __m128i mask4 = _mm_set1_epi8(0x0f);
  for (int64_t s = 0; s < n / kQK_K; ++s) {
    const auto* b = reinterpret_cast<const BlockIQ4_XS*>(row) + s;
    const int8_t* xq = x.qs + kQK_K * s;
    __m256i isum = _mm256_setzero_si256();
    int16_t sc[8];
    for (int j = 0; j < 8; ++j) {
      const int ls =
          ((b->scales_l[j / 2] >> (4 * (j % 2))) & 0x0f) | (((b->scales_h >> (2 * j)) & 3) << 4);
      sc[j] = static_cast<int16_t>(ls - 32);
    }
    for (int j = 0; j < 8; ++j) {
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->qs + 16 * j));
      const __m256i idx =
          _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), mask4), _mm_and_si128(q, mask4));
      const __m256i w = _mm256_shuffle_epi8(values, idx);
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32 * j));
      // Signed by signed: |w| (unsigned) times x carrying w's sign.
      const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xv, w));
      const __m256i scale = _mm256_set1_epi16(sc[j]);
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scale));
    }
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(Half(b->d) * x.d[s]), acc);
  }
  return HorizontalSum(acc);
}

// Rows outer, tokens inner: a row's blocks stay in L1 while every token reads them.
template <float (*kDot)(const uint8_t*, const X8Token&, int64_t)>
void MatMul(const MatMulArgs& a, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = a.w + r * a.row_bytes;
    if (r + 1 < r1) {
      // The next row is the next stream of weight bytes; start it while this one computes.
      for (size_t off = 0; off < a.row_bytes; off += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(row + a.row_bytes + off), _MM_HINT_T0);
      }
    }
    for (int64_t t = 0; t < a.n_tokens; ++t) {
      a.y[t * a.n_out + r] = kDot(row, ViewToken(a.x + t * a.x_stride, a.x8), a.n_in);
    }
  }
}

inline MatMulFn LowBitMatMulX86(GgmlType type) {
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

}  // namespace
}  // namespace swarm::kernels::cpu
