// AVX-512 VNNI matrix products of Q4_1, Q5_0 and Q5_K weights against X8 activations. Q5_K is the
// Q4_K kernel of matmul_quant_avx512.cpp with the fifth bits or-ed into the nibbles. Q4_1 and
// Q5_0 are the 256-bit kernels of matmul_quant_ext_x86.inc compiled with this level's flags: with
// two blocks per register and prompts' rows unpacked once per token panel they measured faster,
// decode and prompts, than the 512-bit vpdpbusd kernels they replaced. The tile driver comes from
// there too. As every kernel here, each output is accumulated by a fixed instruction sequence
// whatever its tile.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/kernels_isa.h"
#include "kernels/cpu/simd_avx512.h"  // first: brings in immintrin.h

namespace swarm::kernels::cpu::avx512 {
namespace {
#include "kernels/cpu/matmul_quant_ext_x86.inc"

using ext::FifthBitsK;
using ext::Half;
using ext::Load256;
using ext::Token;
using ext::UnpackScalesK4;
using ext::ViewToken;

template <int C>
inline void PrefetchIfStreaming(const void* p, int64_t bytes) {
  if constexpr (C == 1) PrefetchAhead(p, bytes);
}

// ---- Q5_K ---------------------------------------------------------------------------------------

// As matmul_quant_avx512.cpp's PairShuffleQ4K: steps 2h and 2h+1 (sub-blocks 4h..4h+3) packed into
// one vector of 16-bit sums; this control puts each sum's sub-block scale in its low byte.
__m512i PairShuffleK(int h) {
  alignas(64) int8_t ctrl[64];
  for (int i = 0; i < 64; ++i) {
    const int q = i / 16, word = (i % 16) / 2;
    const int sub = 4 * h + (word < 4 ? 0 : 2) + q / 2;
    ctrl[i] = i % 2 == 0 ? static_cast<int8_t>(sub) : static_cast<int8_t>(-128);
  }
  return _mm512_load_si512(ctrl);
}

template <int S>
__m512i QuantsQ5K(const BlockQ5_K* blk, __m256i h) {
  const __m256i v = Load256(blk->qs + 32 * S);
  const __m512i nibbles =
      _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1),
                       _mm512_set1_epi8(0x0f));
  const __m512i fifth =
      _mm512_inserti64x4(_mm512_castsi256_si512(FifthBitsK<2 * S>(h)), FifthBitsK<2 * S + 1>(h), 1);
  return _mm512_or_si512(nibbles, fifth);
}

template <int R, int C>
void TileQ5K(const MatMulArgs& a, int64_t r, int64_t t) {
  const uint8_t* rows[R];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) rows[i] = a.w + (r + i) * a.row_bytes;
  Token xs[C];
  SWARM_UNROLL
  for (int j = 0; j < C; ++j) xs[j] = ViewToken(a, t + j);
  __m512 acc[R][C];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) acc[i][j] = _mm512_setzero_ps();
  }
  const __m512i pair_idx[2] = {PairShuffleK(0), PairShuffleK(1)};
  const int64_t n_super = a.n_in / kQK_K;
  for (int64_t sb = 0; sb < n_super; ++sb) {
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      const auto* blk = reinterpret_cast<const BlockQ5_K*>(rows[i]) + sb;
      PrefetchIfStreaming<C>(blk, sizeof(BlockQ5_K));
      const __m128i scales_mins = UnpackScalesK4(blk->scales);
      const __m512i sc8v = _mm512_broadcastq_epi64(scales_mins);
      const float d = Half(blk->d);
      const __m256 mins = _mm256_mul_ps(
          _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(scales_mins, scales_mins))),
          _mm256_set1_ps(Half(blk->dmin)));
      const __m256i h = Load256(blk->qh);
      const __m512i wq[4] = {QuantsQ5K<0>(blk, h), QuantsQ5K<1>(blk, h), QuantsQ5K<2>(blk, h),
                             QuantsQ5K<3>(blk, h)};
      __m512i isum[C];
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) isum[j] = _mm512_setzero_si512();
      SWARM_UNROLL
      for (int hh = 0; hh < 2; ++hh) {
        const __m512i scs = _mm512_shuffle_epi8(sc8v, pair_idx[hh]);
        SWARM_UNROLL
        for (int j = 0; j < C; ++j) {
          // Sums of 4 products of at most 31 * 128: exact in 16 bits.
          const __m512i p0 =
              _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[2 * hh],
                                  _mm512_loadu_si512(xs[j].qs + kQK_K * sb + 128 * hh));
          const __m512i p1 =
              _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[2 * hh + 1],
                                  _mm512_loadu_si512(xs[j].qs + kQK_K * sb + 128 * hh + 64));
          isum[j] = _mm512_dpwssd_epi32(isum[j], _mm512_packs_epi32(p0, p1), scs);
        }
      }
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) {
        acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[j]), _mm512_set1_ps(d * xs[j].d[sb]),
                                    acc[i][j]);
        acc[i][j] = _mm512_mask3_fnmadd_ps(
            _mm512_castps256_ps512(mins),
            _mm512_castps256_ps512(_mm256_loadu_ps(xs[j].fsum32 + 8 * sb)), acc[i][j], 0x00ff);
      }
    }
  }
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) a.y[(t + j) * a.n_out + r + i] = Hsum(acc[i][j]);
  }
}

template <int R, int C>
struct Q5KKernel {
  static void Run(const MatMulArgs& a, int64_t r, int64_t t) { TileQ5K<R, C>(a, r, t); }
};

}  // namespace

void MatMulQ4_1(const MatMulArgs& a, int64_t r0, int64_t r1) {
  ext::DriveUnpacked<ext::Q4_1Kernel, ext::Q32Unpack<GgmlType::kQ4_1>>(a, r0, r1);
}
void MatMulQ5_0(const MatMulArgs& a, int64_t r0, int64_t r1) {
  ext::DriveUnpacked<ext::Q5_0Kernel, ext::Q32Unpack<GgmlType::kQ5_0>>(a, r0, r1);
}
void MatMulQ5_K(const MatMulArgs& a, int64_t r0, int64_t r1) { ext::Drive<Q5KKernel>(a, r0, r1); }

}  // namespace swarm::kernels::cpu::avx512
