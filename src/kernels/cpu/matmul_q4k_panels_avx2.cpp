// AVX2 Q4_K products over weights in the row-panel layout (q4k_panels.h): one 32-bit lane per row,
// 8 rows per vector. Each step multiplies 4 quant bytes of each of 8 rows by the same 4 activation
// bytes (broadcast), the 16-bit pair sums of a sub-block's 8 steps add up exactly in 16 bits (at
// most 8 * 2 * 15 * 127 = 30480), and one vpmaddwd per sub-block applies 8 rows' scales. The
// 6-bit scales and mins are unpacked, and the fp16 super-scales converted, once per super-block
// for 8 rows; the mins term is an integer sum against the activations' 16-value sums. Every
// output is one float lane whose instruction sequence does not depend on the tile or the token
// count (the integer sums are exact, so their order does not matter).
#include <algorithm>
#include <cstring>

#include "kernels/cpu/kernels_isa.h"
#include "kernels/cpu/panel_driver_avx2.h"
#include "kernels/cpu/q4k_panels.h"
#include "kernels/cpu/simd_avx2.h"

namespace swarm::kernels::cpu::avx2 {
namespace {

static_assert(kQ4KPanelRows == kGroupRows);

constexpr int64_t kGroupBytes = kQ4KPanelRows * int64_t{sizeof(BlockQ4_K)};

__m256i Load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
__m128i Load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
__m256i Broadcast32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm256_set1_epi32(v);
}

// The shuffle that spreads byte 4r + s of each 128-bit half (row 4h + r's value of sub-block s)
// over both 16-bit halves of 32-bit lane r, as (value, value).
__m256i SpreadSubBlock(int s) {
  auto lane = [s](int r) {
    const uint32_t b = static_cast<uint32_t>(4 * r + s);
    return static_cast<int>(b | 0x80u << 8 | b << 16 | 0x80u << 24);
  };
  return _mm256_setr_epi32(lane(0), lane(1), lane(2), lane(3), lane(0), lane(1), lane(2), lane(3));
}

struct Token {
  const int8_t* qs;
  const float* d;
  const int16_t* bsum16;
};

// The 8 rows from g0 (a full group) for tokens t .. t + C - 1, and with P > 1 (one token only)
// those of the P - 1 panels after it, their super-blocks interleaved: several streams from memory
// at once keep more lines in flight than one (see the vector-product note in
// matmul_quant_avx2.cpp). Writes the rows in [r0, r1).
template <int C, int P = 1>
void GroupQ4K(const MatMulArgs& a, int64_t g0, int64_t t, int64_t r0, int64_t r1) {
  static_assert(P == 1 || C == 1);
  const uint8_t* bases[P];
  SWARM_UNROLL
  for (int p = 0; p < P; ++p) bases[p] = a.w + (g0 + p * kQ4KPanelRows) * a.row_bytes;
  const int64_t panel_bytes = kQ4KPanelRows * static_cast<int64_t>(a.row_bytes);
  const X8Layout& l = a.x8;
  Token xs[C];
  SWARM_UNROLL
  for (int c = 0; c < C; ++c) {
    const uint8_t* x = a.x + (t + c) * a.x_stride;
    xs[c] = {reinterpret_cast<const int8_t*>(x), reinterpret_cast<const float*>(x + l.d_offset),
             reinterpret_cast<const int16_t*>(x + l.bsum16_offset)};
  }
  __m256 acc[P][C];
  SWARM_UNROLL
  for (int p = 0; p < P; ++p) {
    SWARM_UNROLL
    for (int c = 0; c < C; ++c) acc[p][c] = _mm256_setzero_ps();
  }
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i bits45 = _mm256_set1_epi8(0x30);
  __m256i spread[4];
  SWARM_UNROLL
  for (int s = 0; s < 4; ++s) spread[s] = SpreadSubBlock(s);
  const int64_t n_super = a.n_in / kQK_K;
  // Panels in blocks of kBlock, each block's panels innermost: each broadcast activation serves
  // kBlock panels (in L2: 30-32 GB/s one panel at a time, 36.5-40 in blocks of 2).
  constexpr int kBlock = P < 2 ? P : 2;
  static_assert(P % kBlock == 0);
  for (int64_t sb = 0; sb < n_super; ++sb) {
    const uint8_t* groups[P];
    SWARM_UNROLL
    for (int p = 0; p < P; ++p) {
      groups[p] = bases[p] + sb * kGroupBytes;
    }
    SWARM_UNROLL
    for (int p0 = 0; p0 < P; p0 += kBlock) {
      __m256i scales[kBlock][2];
      SWARM_UNROLL
      for (int k = 0; k < kBlock; ++k) {
        const uint8_t* group = groups[p0 + k];
        const __m256i nib_sc = Load256(group + 32);
        const __m256i high = Load256(group + 96);
        scales[k][0] = _mm256_or_si256(_mm256_and_si256(nib_sc, low4),
                                       _mm256_and_si256(_mm256_slli_epi16(high, 4), bits45));
        scales[k][1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(nib_sc, 4), low4),
                                       _mm256_and_si256(_mm256_slli_epi16(high, 2), bits45));
      }
      __m256i isum[kBlock][C];
      SWARM_UNROLL
      for (int k = 0; k < kBlock; ++k) {
        SWARM_UNROLL
        for (int c = 0; c < C; ++c) isum[k][c] = _mm256_setzero_si256();
      }
      for (int j = 0; j < 4; ++j) {
        __m256i sum_lo[kBlock][C], sum_hi[kBlock][C];
        SWARM_UNROLL
        for (int k = 0; k < kBlock; ++k) {
          SWARM_UNROLL
          for (int c = 0; c < C; ++c) sum_lo[k][c] = sum_hi[k][c] = _mm256_setzero_si256();
        }
        SWARM_UNROLL
        for (int step = 0; step < 8; ++step) {
          __m256i xlo[C], xhi[C];
          SWARM_UNROLL
          for (int c = 0; c < C; ++c) {
            const int8_t* xq = xs[c].qs + kQK_K * sb + 64 * j + 4 * step;
            xlo[c] = Broadcast32(xq);
            xhi[c] = Broadcast32(xq + 32);
          }
          SWARM_UNROLL
          for (int k = 0; k < kBlock; ++k) {
            const __m256i v = Load256(groups[p0 + k] + 128 + 32 * (8 * j + step));
            if constexpr (C == 1) {
              PrefetchLineOf(groups[p0 + k] + P * panel_bytes, kGroupBytes, 8 * j + step);
            }
            const __m256i lo = _mm256_and_si256(v, low4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
            SWARM_UNROLL
            for (int c = 0; c < C; ++c) {
              sum_lo[k][c] = _mm256_add_epi16(sum_lo[k][c], _mm256_maddubs_epi16(lo, xlo[c]));
              sum_hi[k][c] = _mm256_add_epi16(sum_hi[k][c], _mm256_maddubs_epi16(hi, xhi[c]));
            }
          }
        }
        const int s_lo = 2 * j, s_hi = 2 * j + 1;
        SWARM_UNROLL
        for (int k = 0; k < kBlock; ++k) {
          const __m256i sc_lo = _mm256_shuffle_epi8(scales[k][s_lo / 4], spread[s_lo % 4]);
          const __m256i sc_hi = _mm256_shuffle_epi8(scales[k][s_hi / 4], spread[s_hi % 4]);
          SWARM_UNROLL
          for (int c = 0; c < C; ++c) {
            isum[k][c] = _mm256_add_epi32(isum[k][c],
                                          _mm256_add_epi32(_mm256_madd_epi16(sum_lo[k][c], sc_lo),
                                                           _mm256_madd_epi16(sum_hi[k][c], sc_hi)));
          }
        }
      }
      SWARM_UNROLL
      for (int k = 0; k < kBlock; ++k) {
        const uint8_t* group = groups[p0 + k];
        const int p = p0 + k;
        const __m256 d = _mm256_cvtph_ps(Load128(group));
        const __m256 dmin = _mm256_cvtph_ps(Load128(group + 16));
        const __m256i nib_m = Load256(group + 64);
        const __m256i high = Load256(group + 96);
        const __m256i mins[2] = {
            _mm256_or_si256(_mm256_and_si256(nib_m, low4), _mm256_and_si256(high, bits45)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(nib_m, 4), low4),
                            _mm256_and_si256(_mm256_srli_epi16(high, 2), bits45))};
        SWARM_UNROLL
        for (int c = 0; c < C; ++c) {
          __m256i imin = _mm256_setzero_si256();
          SWARM_UNROLL
          for (int s = 0; s < 8; ++s) {
            const __m256i m = _mm256_shuffle_epi8(mins[s / 4], spread[s % 4]);
            imin = _mm256_add_epi32(
                imin, _mm256_madd_epi16(m, Broadcast32(xs[c].bsum16 + (kQK_K / 16) * sb + 2 * s)));
          }
          const __m256 dx = _mm256_set1_ps(xs[c].d[sb]);
          acc[p][c] =
              _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[k][c]), _mm256_mul_ps(d, dx), acc[p][c]);
          acc[p][c] =
              _mm256_fnmadd_ps(_mm256_cvtepi32_ps(imin), _mm256_mul_ps(dmin, dx), acc[p][c]);
        }
      }
    }
  }
  SWARM_UNROLL
  for (int p = 0; p < P; ++p) {
    SWARM_UNROLL
    for (int c = 0; c < C; ++c) StoreGroupRows(a, acc[p][c], t + c, g0 + p * kGroupRows, r0, r1);
  }
}

// Tokens per tile of a prompt.
constexpr int kCols = 2;

// The kernel over the rows in [r0, r1), as DrivePanels calls it (panel_driver_avx2.h).
struct Q4KGroups {
  const MatMulArgs& a;
  int64_t r0, r1;
  template <int C, int P = 1>
  void Run(int64_t g, int64_t t) const {
    GroupQ4K<C, P>(a, g, t, r0, r1);
  }
};

}  // namespace

void MatMulQ4_KPanels(const MatMulArgs& a, int64_t r0, int64_t r1) {
  DrivePanels<kCols>(a, Q4KGroups{a, r0, r1}, r0, r1, MatMulQ4_K);
}

}  // namespace swarm::kernels::cpu::avx2
