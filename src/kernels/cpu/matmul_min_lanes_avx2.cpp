// AVX2 matrix products of Q4_1 and Q5_1 weights in their lane layout (lane_layout_min.h) against
// X8 activations with the lane section (kernels.h): one block per 32-bit lane, 8 blocks per
// vector, integer sums over each block's 32 values, then per 8 blocks one float FMA for the
// scales (d * dx * sum(q * x)) and one for the mins (m * dx * sum(x), from the lane section's
// corr = -8 * sum(x)). The same tile code serves one token and prompts, so every output is
// accumulated by a fixed instruction sequence whatever its tile (the determinism contract).
#include <algorithm>
#include <cstring>

#include "kernels/cpu/kernels_isa.h"
#include "kernels/cpu/lane_layout_min.h"
#include "kernels/cpu/simd_avx2.h"

namespace swarm::kernels::cpu::avx2 {
namespace {

__m256i Load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
__m128i Load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Bit k of each byte of h moved to bit 4 (the value 16). 16-bit shifts carry bits across the
// byte boundary, but only into bits the mask drops.
template <int K>
__m256i FifthBits(__m256i h) {
  const __m256i sixteen = _mm256_set1_epi8(16);
  if constexpr (K < 4) return _mm256_and_si256(_mm256_slli_epi16(h, 4 - K), sixteen);
  if constexpr (K == 4) return _mm256_and_si256(h, sixteen);
  if constexpr (K > 4) return _mm256_and_si256(_mm256_srli_epi16(h, K - 4), sixteen);
}

// Byte e is 16 where bit e of a GGUF block's qh is set, else 0.
__m256i FifthBitsGguf(uint32_t bits) {
  const __m256i spread =
      _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                          _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101,
                                             0x0202020202020202, 0x0303030303030303));
  const __m256i others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
  const __m256i set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi8(-1));
  return _mm256_and_si256(set, _mm256_set1_epi8(16));
}

// The full 512-value groups of R rows against C tokens.
template <bool kQ5, int R, int C>
void LaneGroups(const MatMulArgs& a, const X8Layout& l, const uint8_t* const* rows, int64_t t,
                __m256 (&acc)[R][C]) {
  constexpr int64_t kGroupBytes =
      kQ5 ? 16 * int64_t{sizeof(BlockQ5_1)} : 16 * int64_t{sizeof(BlockQ4_1)};
  constexpr int64_t kQs = MinLanesQsOffset(kQ5 ? GgmlType::kQ5_1 : GgmlType::kQ4_1);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256 minus_eighth = _mm256_set1_ps(-0.125f);
  for (int64_t g = 0; g < l.lane_groups; ++g) {
    const uint8_t* xl[C];
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) {
      xl[j] = a.x + (t + j) * a.x_stride + l.lanes_offset + g * kX8LaneGroupBytes;
    }
    // Per token and half: dx and dx * sum(x) (corr = -8 * sum(x) is exact in float, and so is
    // its product with -1/8), shared by the tile's rows.
    __m256 dx[C][2];
    __m256 sx[C][2];
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) {
      SWARM_UNROLL
      for (int h = 0; h < 2; ++h) {
        dx[j][h] = _mm256_loadu_ps(reinterpret_cast<const float*>(xl[j] + 8 * 64) + 8 * h);
        sx[j][h] = _mm256_mul_ps(
            _mm256_mul_ps(_mm256_cvtepi32_ps(Load256(xl[j] + 9 * 64 + 32 * h)), minus_eighth),
            dx[j][h]);
      }
    }
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      const uint8_t* group = rows[i] + g * kGroupBytes;
      SWARM_UNROLL
      for (int h = 0; h < 2; ++h) {
        __m256i s[C];
        SWARM_UNROLL
        for (int j = 0; j < C; ++j) s[j] = _mm256_setzero_si256();
        __m256i qh = _mm256_setzero_si256();
        if constexpr (kQ5) qh = Load256(group + kMinLanesQhOffset + 32 * h);
        // Q4_1: the 16-bit pair sums of all 4 pieces stay within 4 * 2 * 2 * 15 * 127 < 2^15;
        // Q5_1 (quants up to 31): of 2 pieces, 2 * 2 * 2 * 31 * 127 < 2^15, so one widening per
        // 2 pieces.
        constexpr int kPiecesPerWiden = kQ5 ? 2 : 4;
        SWARM_UNROLL
        for (int c0 = 0; c0 < 4; c0 += kPiecesPerWiden) {
          __m256i p[C];
          SWARM_UNROLL
          for (int j = 0; j < C; ++j) p[j] = _mm256_setzero_si256();
          SWARM_UNROLL
          for (int c = c0; c < c0 + kPiecesPerWiden; ++c) {
            const __m256i q = Load256(group + kQs + 64 * c + 32 * h);
            if constexpr (C == 1) {
              // The next tile's group of this row, one of its 5-7 lines per step (see
              // PrefetchLineOf).
              PrefetchLineOf(group + R * a.row_bytes, kGroupBytes, 4 * h + c);
            }
            __m256i lo = _mm256_and_si256(q, low4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
            if constexpr (kQ5) {
              switch (c) {
                case 0:
                  lo = _mm256_or_si256(lo, FifthBits<0>(qh));
                  hi = _mm256_or_si256(hi, FifthBits<4>(qh));
                  break;
                case 1:
                  lo = _mm256_or_si256(lo, FifthBits<1>(qh));
                  hi = _mm256_or_si256(hi, FifthBits<5>(qh));
                  break;
                case 2:
                  lo = _mm256_or_si256(lo, FifthBits<2>(qh));
                  hi = _mm256_or_si256(hi, FifthBits<6>(qh));
                  break;
                default:
                  lo = _mm256_or_si256(lo, FifthBits<3>(qh));
                  hi = _mm256_or_si256(hi, FifthBits<7>(qh));
              }
            }
            SWARM_UNROLL
            for (int j = 0; j < C; ++j) {
              p[j] = _mm256_add_epi16(
                  p[j], _mm256_add_epi16(
                            _mm256_maddubs_epi16(lo, Load256(xl[j] + 64 * c + 32 * h)),
                            _mm256_maddubs_epi16(hi, Load256(xl[j] + 64 * (c + 4) + 32 * h))));
            }
          }
          SWARM_UNROLL
          for (int j = 0; j < C; ++j) s[j] = _mm256_add_epi32(s[j], _mm256_madd_epi16(p[j], ones));
        }
        const __m256 dw = _mm256_cvtph_ps(Load128(group + 16 * h));
        const __m256 mw = _mm256_cvtph_ps(Load128(group + kMinLanesMOffset + 16 * h));
        SWARM_UNROLL
        for (int j = 0; j < C; ++j) {
          acc[i][j] =
              _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[j]), _mm256_mul_ps(dw, dx[j][h]), acc[i][j]);
          acc[i][j] = _mm256_fmadd_ps(mw, sx[j][h], acc[i][j]);
        }
      }
    }
  }
}

template <bool kQ5, int R, int C>
void Tile(const MatMulArgs& a, const X8Layout& l, int64_t r, int64_t t) {
  constexpr int64_t kBlockBytes = kQ5 ? int64_t{sizeof(BlockQ5_1)} : int64_t{sizeof(BlockQ4_1)};
  const uint8_t* rows[R];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) rows[i] = a.w + (r + i) * a.row_bytes;
  __m256 acc[R][C];
  float mins[R][C];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) {
      acc[i][j] = _mm256_setzero_ps();
      mins[i][j] = 0.0f;
    }
  }
  LaneGroups<kQ5, R, C>(a, l, rows, t, acc);
  // The blocks past the full groups, GGUF blocks.
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t n_blocks = a.n_in / 32;
  for (int64_t b = 16 * l.lane_groups; b < n_blocks; ++b) {
    __m256i xv[C];
    float dx[C];
    float sx[C];
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) {
      const uint8_t* base = a.x + (t + j) * a.x_stride;
      xv[j] = Load256(base + 32 * b);
      dx[j] = reinterpret_cast<const float*>(base + l.d_offset)[b];
      sx[j] =
          dx[j] * static_cast<float>(reinterpret_cast<const int32_t*>(base + l.bsum32_offset)[b]);
    }
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      const uint8_t* blk = rows[i] + b * kBlockBytes;
      const float dw = HalfToFloat1(LoadU16(blk));
      const float mw = HalfToFloat1(LoadU16(blk + 2));
      const __m128i v = Load128(blk + (kQ5 ? 8 : 4));
      __m256i q = _mm256_and_si256(
          _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1),
          _mm256_set1_epi8(0x0f));
      if constexpr (kQ5) {
        uint32_t qh;
        std::memcpy(&qh, blk + 4, sizeof qh);
        q = _mm256_or_si256(q, FifthBitsGguf(qh));
      }
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) {
        const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q, xv[j]), ones);
        acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * dx[j]), acc[i][j]);
        mins[i][j] += mw * sx[j];
      }
    }
  }
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) a.y[(t + j) * a.n_out + r + i] = Hsum(acc[i][j]) + mins[i][j];
  }
}

// One token: 8 rows at once, each group's next tile prefetched (as the Q4_0 lane kernel).
// Several tokens: 3x3 tiles over panels of 48 tokens, a tile's weights reused from L1.
constexpr int kVecRows = 8;
constexpr int kRows = 3;
constexpr int kCols = 3;
constexpr int64_t kPanel = 48;

template <bool kQ5, int R>
void TileCols(const MatMulArgs& a, const X8Layout& l, int64_t r, int64_t t, int64_t cols) {
  switch (cols) {
    case 1:
      return Tile<kQ5, R, 1>(a, l, r, t);
    case 2:
      return Tile<kQ5, R, 2>(a, l, r, t);
    default:
      return Tile<kQ5, R, 3>(a, l, r, t);
  }
}

template <bool kQ5>
void Drive(const MatMulArgs& a, int64_t r0, int64_t r1) {
  const X8Layout& l = a.x8;
  if (a.n_tokens == 1) {
    int64_t r = r0;
    for (; r + kVecRows <= r1; r += kVecRows) Tile<kQ5, kVecRows, 1>(a, l, r, 0);
    for (; r < r1; ++r) Tile<kQ5, 1, 1>(a, l, r, 0);
    return;
  }
  for (int64_t tp = 0; tp < a.n_tokens; tp += kPanel) {
    const int64_t tp_end = std::min(a.n_tokens, tp + kPanel);
    int64_t r = r0;
    for (; r + kRows <= r1; r += kRows) {
      SpreadPrefetch next(
          a.w + (r + kRows) * a.row_bytes,
          static_cast<int64_t>(a.row_bytes) * std::min<int64_t>(kRows, r1 - r - kRows),
          (tp_end - tp + kCols - 1) / kCols);
      for (int64_t t = tp; t < tp_end; t += kCols) {
        next.Next();
        TileCols<kQ5, kRows>(a, l, r, t, std::min<int64_t>(kCols, tp_end - t));
      }
    }
    for (; r < r1; ++r) {
      for (int64_t t = tp; t < tp_end; t += kCols) {
        TileCols<kQ5, 1>(a, l, r, t, std::min<int64_t>(kCols, tp_end - t));
      }
    }
  }
}

}  // namespace

void MatMulQ4_1Lanes(const MatMulArgs& a, int64_t r0, int64_t r1) { Drive<false>(a, r0, r1); }
void MatMulQ5_1Lanes(const MatMulArgs& a, int64_t r0, int64_t r1) { Drive<true>(a, r0, r1); }

}  // namespace swarm::kernels::cpu::avx2
