// AVX-512 helpers shared by the *_avx512.cpp files (and only them: everything here has internal
// linkage, so no AVX-512 code can leak into other translation units through the linker).
#pragma once

// GCC 12's AVX-512 headers trip -Wuninitialized on their own _mm512_undefined_* (GCC bug 105593,
// fixed in 13); silence it for the header's lines only, by including it under the pragma.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif

#include <cstdint>

namespace swarm::kernels::cpu::avx512 {
namespace {

// Sum of the 16 lanes in a fixed order.
inline float Hsum(__m512 v) {
  const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
  const __m128 d = _mm_add_ss(c, _mm_movehdup_ps(c));
  return _mm_cvtss_f32(d);
}

// A matrix-vector product streams its rows from memory faster than the hardware prefetcher alone
// fetches them: each step also asks for the lines this far ahead of the bytes it reads (measured
// on Zen 5, one thread, weights from memory: f16 82-86% of a plain read's rate without, 89-93%
// with; 4 KiB beat 1, 2, 8 and 16 KiB).
inline constexpr int64_t kStreamPrefetchBytes = 4096;

// Prefetches the lines kStreamPrefetchBytes past [p, p + bytes) into L1.
inline void PrefetchAhead(const void* p, int64_t bytes) {
  const char* q = static_cast<const char*>(p) + kStreamPrefetchBytes;
  for (int64_t off = 0; off < bytes; off += 64) _mm_prefetch(q + off, _MM_HINT_T0);
}

inline float Hmax(__m512 v) { return _mm512_reduce_max_ps(v); }

inline __mmask16 TailMask(int64_t n) {
  return static_cast<__mmask16>(n >= 16 ? 0xffff : (1u << n) - 1u);
}

// 16 floats from 16 fp16 / bf16 values.
inline __m512 LoadF16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512 LoadF16Masked(const uint16_t* p, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
inline __m512 LoadBF16(const uint16_t* p) {
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
inline __m512 LoadBF16Masked(const uint16_t* p, __mmask16 m) {
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

inline float HalfToFloat1(uint16_t h) { return _cvtsh_ss(h); }

// exp(x), about 1 ulp (Cephes expf polynomial); exp(-inf) = 0, overflow gives inf, NaN stays NaN.
inline __m512 Exp(__m512 x) {
  // Below -104 the result underflows to 0 anyway; clamping keeps -inf out of the reduction.
  // max(lo, x) returns x when x is NaN.
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
  x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

}  // namespace
}  // namespace swarm::kernels::cpu::avx512
