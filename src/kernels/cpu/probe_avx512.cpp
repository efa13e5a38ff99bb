// AVX-512 loops for the machine probe (machine_probe.h): a streaming read and an FMA-bound loop.
#include "kernels/cpu/kernels_isa.h"
#include "kernels/cpu/simd_avx512.h"  // first: brings in immintrin.h

namespace swarm::kernels::cpu::avx512 {

uint64_t ReadSum(const uint8_t* p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 256) {
    a0 = _mm512_add_epi64(a0, _mm512_load_si512(p + i));
    a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + i + 64));
    a2 = _mm512_add_epi64(a2, _mm512_load_si512(p + i + 128));
    a3 = _mm512_add_epi64(a3, _mm512_load_si512(p + i + 192));
  }
  // Lane by lane in unsigned arithmetic: the bytes read may be anything (a model's weights), and
  // _mm512_reduce_add_epi64 adds as signed 64-bit integers, which must not overflow.
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
  uint64_t sum = 0;
  for (uint64_t lane : lanes) sum += lane;
  return sum;
}

float FmaLoop(int64_t iters) {
  __m512 acc[kFmaChains];
  SWARM_UNROLL
  for (int i = 0; i < kFmaChains; ++i) acc[i] = _mm512_set1_ps(0.001f * static_cast<float>(i));
  const __m512 b = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(0.001f);
  for (int64_t k = 0; k < iters; ++k) {
    SWARM_UNROLL
    for (int i = 0; i < kFmaChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], b, c);
  }
  __m512 s = acc[0];
  for (int i = 1; i < kFmaChains; ++i) s = _mm512_add_ps(s, acc[i]);
  return Hsum(s);
}

}  // namespace swarm::kernels::cpu::avx512
