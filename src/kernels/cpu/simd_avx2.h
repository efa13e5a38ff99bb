// AVX2 (+FMA, F16C) helpers shared by the *_avx2.cpp files (and only them: everything here has
// internal linkage, so no AVX2 code can leak into other translation units through the linker).
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace swarm::kernels::cpu::avx2 {
namespace {

// Fetches line i of the lines [p, p + bytes) covers into L2, if it has an i-th line. A kernel
// calls it once per step of its inner loop, so that the prefetches of the next tile are spread
// over the arithmetic: a whole group's lines prefetched in one burst at the start of its step
// left the stream short of the plain read's rate (matvec_bench --isa avx2, one thread, 512 MiB,
// fraction of a plain read: Q4_K panels 0.78-0.90 in bursts, 0.94-1.03 spread; Q2_K 0.84-0.92 ->
// 0.97-1.05; Q5_K 0.84-0.89 -> 0.92-0.99; IQ4_NL lanes 0.84-0.88 -> 0.93-1.01).
inline void PrefetchLineOf(const void* p, int64_t bytes, int64_t i) {
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p);
  const uintptr_t line = (begin & ~uintptr_t{63}) + 64 * static_cast<uintptr_t>(i);
  if (line < begin + bytes) _mm_prefetch(reinterpret_cast<const char*>(line), _MM_HINT_T1);
}

// Sum of the 8 lanes in a fixed order.
inline float Hsum(__m256 v) {
  const __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
  const __m128 d = _mm_add_ss(c, _mm_movehdup_ps(c));
  return _mm_cvtss_f32(d);
}

inline float Hmax(__m256 v) {
  __m128 b = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  b = _mm_max_ps(b, _mm_movehl_ps(b, b));
  b = _mm_max_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

inline int32_t HsumI32(__m256i v) {
  __m128i b = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  b = _mm_add_epi32(b, _mm_unpackhi_epi64(b, b));
  b = _mm_add_epi32(b, _mm_shuffle_epi32(b, 1));
  return _mm_cvtsi128_si32(b);
}

// Lanes [0, n) set (n in 0..8), for maskload/maskstore.
inline __m256i TailMask(int64_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n < 8 ? n : 8)), idx);
}

inline __m256 LoadF16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 LoadBF16(const uint16_t* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

inline float HalfToFloat1(uint16_t h) { return _cvtsh_ss(h); }

// exp(x), about 1 ulp in the normal range (Cephes expf polynomial); results below ~1e-38 are 0,
// overflow gives inf, NaN stays NaN.
inline __m256 Exp(__m256 x) {
  const __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_LT_OQ);
  x = _mm256_max_ps(_mm256_set1_ps(-87.3f), x);  // returns x when x is NaN
  const __m256 big = _mm256_cmp_ps(x, _mm256_set1_ps(88.7f), _CMP_GT_OQ);
  x = _mm256_min_ps(_mm256_set1_ps(88.7f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n for n in [-126, 128): n = 128 only when x was clamped at the top, handled by `big`.
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  y = _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), big);
  return _mm256_andnot_ps(underflow, y);
}

}  // namespace
}  // namespace swarm::kernels::cpu::avx2
