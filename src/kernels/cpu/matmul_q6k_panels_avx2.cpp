// AVX2 Q6_K products over weights in the row-panel layout (q6k_panels.h): one 32-bit lane per row,
// 8 rows per vector. Each step builds the 6-bit values of 4 quant positions of 4 sub-blocks for 8
// rows from 12 bytes per row and multiplies them by broadcast activation bytes; two steps' 16-bit
// pair sums add up exactly in 16 bits (at most 4 * 63 * 127 = 32004), and one vpmaddwd applies 8
// rows' scales. The offset of 32 is an integer sum of the scales against the activations'
// 16-value sums, and the float step (one FMA) serves 8 rows per super-block. Every output is one
// float lane whose instruction sequence does not depend on the tile or the token count (the
// integer sums are exact, so their order does not matter).
#include <algorithm>
#include <cstring>

#include "kernels/cpu/kernels_isa.h"
#include "kernels/cpu/panel_driver_avx2.h"
#include "kernels/cpu/q6k_panels.h"
#include "kernels/cpu/simd_avx2.h"

namespace swarm::kernels::cpu::avx2 {
namespace {

static_assert(kQ6KPanelRows == kGroupRows);

constexpr int64_t kGroupBytes = kQ6KPanelRows * int64_t{sizeof(BlockQ6_K)};

__m256i Load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
__m128i Load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
__m256i Broadcast32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm256_set1_epi32(v);
}

// A shuffle that puts byte 4r + a of each 128-bit half into the high byte of 16-bit lane 2r and
// byte 4r + b into that of lane 2r + 1 (an arithmetic shift by 8 then sign-extends them).
__m256i SpreadHigh(int a, int b) {
  auto lane = [a, b](int r) {
    const uint32_t x = static_cast<uint32_t>(4 * r + a), y = static_cast<uint32_t>(4 * r + b);
    return static_cast<int>(0x80u | x << 8 | 0x80u << 16 | y << 24);
  };
  return _mm256_setr_epi32(lane(0), lane(1), lane(2), lane(3), lane(0), lane(1), lane(2), lane(3));
}

// Sub-block s's scales of 8 rows as (scale, scale) in each 32-bit lane.
__m256i ScalePair(const __m256i* scales, int a, int b, int v) {
  return _mm256_srai_epi16(_mm256_shuffle_epi8(scales[v], SpreadHigh(a, b)), 8);
}

struct Token {
  const int8_t* qs;
  const float* d;
  const int16_t* bsum16;
};

// The 8 rows from g0 (a full group) for tokens t .. t + C - 1, and with P > 1 (one token only)
// those of the P - 1 panels after it, their super-blocks interleaved (see kVecPanels). Writes the
// rows in [r0, r1).
template <int C, int P = 1>
void GroupQ6K(const MatMulArgs& a, int64_t g0, int64_t t, int64_t r0, int64_t r1) {
  static_assert(P == 1 || C == 1);
  const uint8_t* bases[P];
  SWARM_UNROLL
  for (int panel = 0; panel < P; ++panel)
    bases[panel] = a.w + (g0 + panel * kQ6KPanelRows) * a.row_bytes;
  const int64_t panel_bytes = kQ6KPanelRows * static_cast<int64_t>(a.row_bytes);
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
  for (int panel = 0; panel < P; ++panel) {
    SWARM_UNROLL
    for (int c = 0; c < C; ++c) acc[panel][c] = _mm256_setzero_ps();
  }
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i bits45 = _mm256_set1_epi8(0x30);
  const int64_t n_super = a.n_in / kQK_K;
  for (int64_t sb = 0; sb < n_super; ++sb) {
    SWARM_UNROLL
    for (int panel = 0; panel < P; ++panel) {
      const uint8_t* group = bases[panel] + sb * kGroupBytes;
      const __m256 d = _mm256_cvtph_ps(Load128(group));
      __m256i scales[4];
      SWARM_UNROLL
      for (int v = 0; v < 4; ++v) scales[v] = Load256(group + 16 + 32 * v);
      const uint8_t* steps = group + 16 + 128;
      __m256i isum[C];
      SWARM_UNROLL
      for (int c = 0; c < C; ++c) isum[c] = _mm256_setzero_si256();
      for (int n = 0; n < 2; ++n) {
        SWARM_UNROLL
        for (int pair = 0; pair < 4; ++pair) {
          __m256i p[C][4];
          SWARM_UNROLL
          for (int c = 0; c < C; ++c) {
            SWARM_UNROLL
            for (int k = 0; k < 4; ++k) p[c][k] = _mm256_setzero_si256();
          }
          SWARM_UNROLL
          for (int half = 0; half < 2; ++half) {
            const int step = 2 * pair + half;
            const uint8_t* s = steps + 96 * (8 * n + step);
            if constexpr (C == 1) {
              // The next tile's group, 2 of its 27-28 lines per step (see PrefetchLineOf).
              PrefetchLineOf(group + P * panel_bytes, kGroupBytes, 2 * (8 * n + step));
              PrefetchLineOf(group + P * panel_bytes, kGroupBytes, 2 * (8 * n + step) + 1);
            }
            const __m256i qa = Load256(s);
            const __m256i qb = Load256(s + 32);
            const __m256i qh = Load256(s + 64);
            const __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(qa, low4),
                                _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45)),
                _mm256_or_si256(_mm256_and_si256(qb, low4),
                                _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), low4),
                                _mm256_and_si256(qh, bits45)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), low4),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45))};
            SWARM_UNROLL
            for (int c = 0; c < C; ++c) {
              const int8_t* xq = xs[c].qs + kQK_K * sb + 128 * n + 4 * step;
              SWARM_UNROLL
              for (int k = 0; k < 4; ++k) {
                p[c][k] =
                    _mm256_add_epi16(p[c][k], _mm256_maddubs_epi16(q[k], Broadcast32(xq + 32 * k)));
              }
            }
          }
          // Step pair `pair` lies in sub-block 8n + pair / 2 + 2k of piece k.
          SWARM_UNROLL
          for (int k = 0; k < 4; ++k) {
            const int sub = 8 * n + pair / 2 + 2 * k;
            const __m256i sc = ScalePair(scales, sub % 4, sub % 4, sub / 4);
            SWARM_UNROLL
            for (int c = 0; c < C; ++c) {
              isum[c] = _mm256_add_epi32(isum[c], _mm256_madd_epi16(p[c][k], sc));
            }
          }
        }
      }
      SWARM_UNROLL
      for (int c = 0; c < C; ++c) {
        // The offset: 32 * sum over sub-blocks of scale * (sum of the activations' 16 values).
        __m256i off = _mm256_setzero_si256();
        SWARM_UNROLL
        for (int s = 0; s < 16; s += 2) {
          const __m256i sc = ScalePair(scales, s % 4, s % 4 + 1, s / 4);
          off = _mm256_add_epi32(
              off, _mm256_madd_epi16(sc, Broadcast32(xs[c].bsum16 + (kQK_K / 16) * sb + s)));
        }
        const __m256i total = _mm256_sub_epi32(isum[c], _mm256_slli_epi32(off, 5));
        acc[panel][c] =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(total),
                            _mm256_mul_ps(d, _mm256_set1_ps(xs[c].d[sb])), acc[panel][c]);
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
struct Q6KGroups {
  const MatMulArgs& a;
  int64_t r0, r1;
  template <int C, int P = 1>
  void Run(int64_t g, int64_t t) const {
    GroupQ6K<C, P>(a, g, t, r0, r1);
  }
};

}  // namespace

void MatMulQ6_KPanels(const MatMulArgs& a, int64_t r0, int64_t r1) {
  DrivePanels<kCols>(a, Q6KGroups{a, r0, r1}, r0, r1, MatMulQ6_K);
}

}  // namespace swarm::kernels::cpu::avx2
