// AVX2 Q2_K products over weights in the row-panel layout (q2k_panels.h): one 32-bit lane per row,
// 8 rows per vector. Each load holds 4 quant bytes of each of 8 rows, i.e. 4 values of each of 4
// sub-blocks (one per bit pair); the pairs are taken as (q) and (4 q) by masks 0x03 and 0x0c,
// before and after one 4-bit shift, and each is multiplied by its 4 activation bytes
// (broadcast). A sub-block's 4 loads add up exactly in 16 bits (at most 8 * 12 * 128 = 12288),
// and one vpmaddwd per sub-block applies 8 rows' scales; the sums of the (4 q) sub-blocks and 4
// times those of the (q) ones make 4 times the integer dot product, whose float step carries the
// 1/4 (exact). The mins term is an integer sum against the activations' 16-value sums, two
// sub-blocks per vpmaddwd. Every output is one float lane whose instruction sequence does not
// depend on the tile or the token count (the integer sums are exact, so their order does not
// matter).
#include <algorithm>
#include <cstring>

#include "kernels/block_lowbit.h"
#include "kernels/cpu/kernels_isa.h"
#include "kernels/cpu/matmul_lowbit.h"
#include "kernels/cpu/panel_driver_avx2.h"
#include "kernels/cpu/q2k_panels.h"
#include "kernels/cpu/simd_avx2.h"

namespace swarm::kernels::cpu::avx2 {
namespace {

static_assert(kQ2KPanelRows == kGroupRows);

constexpr int64_t kRows = kQ2KPanelRows;
constexpr int64_t kGroupBytes = kRows * int64_t{sizeof(BlockQ2_K)};
constexpr int64_t kScOffset = 2 * kRows * 2;
constexpr int64_t kQsOffset = kScOffset + kRows * kQK_K / 16;

__m256i Load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
__m128i Load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
__m256i Broadcast32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm256_set1_epi32(v);
}

// The shuffle that puts bytes 4r + s0 and 4r + s1 of each 128-bit half (row 4h + r's values of
// two sub-blocks) in the 16-bit halves of 32-bit lane r, zero-extended.
__m256i Spread(int s0, int s1) {
  auto lane = [s0, s1](int r) {
    const auto b0 = static_cast<uint32_t>(4 * r + s0), b1 = static_cast<uint32_t>(4 * r + s1);
    return static_cast<int>(b0 | 0x80u << 8 | b1 << 16 | 0x80u << 24);
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
void GroupQ2K(const MatMulArgs& a, int64_t g0, int64_t t, int64_t r0, int64_t r1) {
  static_assert(P == 1 || C == 1);
  const uint8_t* bases[P];
  SWARM_UNROLL
  for (int p = 0; p < P; ++p) bases[p] = a.w + (g0 + p * kRows) * a.row_bytes;
  const int64_t panel_bytes = kRows * static_cast<int64_t>(a.row_bytes);
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
  const __m256i m03 = _mm256_set1_epi8(0x03);
  const __m256i m0c = _mm256_set1_epi8(0x0c);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256 quarter = _mm256_set1_ps(0.25f);
  const int64_t n_super = a.n_in / kQK_K;
  for (int64_t sb = 0; sb < n_super; ++sb) {
    // Not unrolled: unrolled, GCC keeps the panels' shared activation broadcasts and sums live
    // across all 4 bodies and spills them (no faster; 4 times the code).
#pragma GCC unroll 1
    for (int p = 0; p < P; ++p) {
      const uint8_t* group = bases[p] + sb * kGroupBytes;
      const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(Load128(group)), quarter);
      const __m256 dmin = _mm256_cvtph_ps(Load128(group + 16));
      // isum1: sub-blocks of bit pairs 0 and 2 (taken as q); isum4: pairs 1 and 3 (as 4 q).
      __m256i isum1[C], isum4[C], imin[C];
      SWARM_UNROLL
      for (int c = 0; c < C; ++c) isum1[c] = isum4[c] = imin[c] = _mm256_setzero_si256();
      SWARM_UNROLL
      for (int h = 0; h < 2; ++h) {
        // Scale bytes of sub-blocks 8h + 4u .. 8h + 4u + 3 (u = 0, 1).
        const __m256i sc_bytes[2] = {Load256(group + kScOffset + 32 * (2 * h)),
                                     Load256(group + kScOffset + 32 * (2 * h + 1))};
        const __m256i sc[2] = {_mm256_and_si256(sc_bytes[0], low4),
                               _mm256_and_si256(sc_bytes[1], low4)};
        SWARM_UNROLL
        for (int half = 0; half < 2; ++half) {
          // Quant bytes 32h + 16 half .. + 15: bit pair j holds sub-block 8h + 2j + half.
          __m256i sum[C][4];
          SWARM_UNROLL
          for (int c = 0; c < C; ++c) {
            SWARM_UNROLL
            for (int j = 0; j < 4; ++j) sum[c][j] = _mm256_setzero_si256();
          }
          SWARM_UNROLL
          for (int step = 0; step < 4; ++step) {
            const int ql = 4 * half + step;
            const __m256i v = Load256(group + kQsOffset + 32 * (8 * h + ql));
            if constexpr (C == 1) {
              // The next tile's group, one of its 11-12 lines per step (see PrefetchLineOf).
              PrefetchLineOf(group + P * panel_bytes, kGroupBytes, 8 * h + ql);
            }
            const __m256i v4 = _mm256_srli_epi16(v, 4);
            const __m256i f[4] = {_mm256_and_si256(v, m03), _mm256_and_si256(v, m0c),
                                  _mm256_and_si256(v4, m03), _mm256_and_si256(v4, m0c)};
            SWARM_UNROLL
            for (int c = 0; c < C; ++c) {
              const int8_t* xq = xs[c].qs + kQK_K * sb + 128 * h + 4 * ql;
              SWARM_UNROLL
              for (int j = 0; j < 4; ++j) {
                sum[c][j] = _mm256_add_epi16(sum[c][j],
                                             _mm256_maddubs_epi16(f[j], Broadcast32(xq + 32 * j)));
              }
            }
          }
          SWARM_UNROLL
          for (int j = 0; j < 4; ++j) {
            // Sub-block 8h + 2j + half is byte (2j + half) % 4 of scale vector j / 2.
            const int s = (2 * j + half) % 4;
            const __m256i scale = _mm256_shuffle_epi8(sc[j / 2], Spread(s, s));
            SWARM_UNROLL
            for (int c = 0; c < C; ++c) {
              if (j % 2 == 0) {
                isum1[c] = _mm256_add_epi32(isum1[c], _mm256_madd_epi16(sum[c][j], scale));
              } else {
                isum4[c] = _mm256_add_epi32(isum4[c], _mm256_madd_epi16(sum[c][j], scale));
              }
            }
          }
        }
        SWARM_UNROLL
        for (int u = 0; u < 2; ++u) {
          const __m256i mins = _mm256_and_si256(_mm256_srli_epi16(sc_bytes[u], 4), low4);
          SWARM_UNROLL
          for (int s = 0; s < 4; s += 2) {
            const __m256i m = _mm256_shuffle_epi8(mins, Spread(s, s + 1));
            SWARM_UNROLL
            for (int c = 0; c < C; ++c) {
              const int16_t* bsum = xs[c].bsum16 + (kQK_K / 16) * sb + 8 * h + 4 * u + s;
              imin[c] = _mm256_add_epi32(imin[c], _mm256_madd_epi16(m, Broadcast32(bsum)));
            }
          }
        }
      }
      SWARM_UNROLL
      for (int c = 0; c < C; ++c) {
        const __m256i isum = _mm256_add_epi32(_mm256_slli_epi32(isum1[c], 2), isum4[c]);
        const __m256 dx = _mm256_set1_ps(xs[c].d[sb]);
        acc[p][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d, dx), acc[p][c]);
        acc[p][c] =
            _mm256_fnmadd_ps(_mm256_cvtepi32_ps(imin[c]), _mm256_mul_ps(dmin, dx), acc[p][c]);
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
struct Q2KGroups {
  const MatMulArgs& a;
  int64_t r0, r1;
  template <int C, int P = 1>
  void Run(int64_t g, int64_t t) const {
    GroupQ2K<C, P>(a, g, t, r0, r1);
  }
};

}  // namespace

void MatMulQ2_KPanels(const MatMulArgs& a, int64_t r0, int64_t r1) {
  DrivePanels<kCols>(a, Q2KGroups{a, r0, r1}, r0, r1, LowBitMatMulAvx2(GgmlType::kQ2_K));
}

}  // namespace swarm::kernels::cpu::avx2
