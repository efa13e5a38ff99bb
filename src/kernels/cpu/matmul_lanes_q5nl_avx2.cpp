// AVX2 matrix products of Q5_0 and IQ4_NL weights in the lane layout (lane_layout.h,
// lane_layout_q5_0.h) against X8 activations with the Q4_0 lane section (kernels.h), for one token
// and for prompts alike. As LaneGroupsQ4_0 (matmul_quant_avx2.cpp): one 32-value block per 32-bit
// lane, 8 blocks per half group, integer sums per block, then one float conversion and FMA per
// half. Q5_0's 5-bit quants come out of its lane layout with a mask for half the values and a few
// shifts and masks for the other half (lane_layout_q5_0.h); IQ4_NL looks its nibbles up with one
// vpshufb into the signed levels and meets them as |level| against sign(x, level) (prompts) or |x|
// against sign(level, x) (one token), the same integers. Every output is accumulated by the same
// instruction sequence whatever its tile, row range or token count (the determinism contract of
// kernels.h).
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "kernels/block_lowbit.h"
#include "kernels/cpu/kernels_isa.h"
#include "kernels/cpu/lane_layout_q5_0.h"
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

uint32_t LoadU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The IQ4_NL levels in both 128-bit halves, for vpshufb.
__m256i LevelTable() { return _mm256_broadcastsi128_si256(Load128(kKValuesIq4Nl)); }

template <GgmlType kType>
constexpr int64_t kGroupBytes =
    kType == GgmlType::kQ5_0 ? kQ5_0LaneGroupBytes : 16 * int64_t{sizeof(BlockIQ4_NL)};
template <GgmlType kType>
constexpr int64_t kBlockBytes =
    kType == GgmlType::kQ5_0 ? int64_t{sizeof(BlockQ5_0)} : int64_t{sizeof(BlockIQ4_NL)};

// The full 512-value groups of R rows against C tokens from t.
template <GgmlType kType, int R, int C>
void LaneGroups(const MatMulArgs& a, const X8Layout& l, const uint8_t* const* rows, int64_t t,
                __m256 (&acc)[R][C]) {
  constexpr bool kQ5 = kType == GgmlType::kQ5_0;
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i low5 = _mm256_set1_epi8(0x1f);
  const __m256i top3 = _mm256_set1_epi8(static_cast<char>(0xe0));
  const __m256i low2 = _mm256_set1_epi8(0x03);
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i levels = LevelTable();
  for (int64_t g = 0; g < l.lane_groups; ++g) {
    const uint8_t* xl[C];
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) {
      xl[j] = a.x + (t + j) * a.x_stride + l.lanes_offset + g * kX8LaneGroupBytes;
    }
    // IQ4_NL, one token: its |x| once per group for all R rows, the levels taking x's sign
    // (saves a vpsignb per weight vector; in prompts |level| once per row serves C tokens).
    constexpr bool kAbsX = !kQ5 && C == 1;
    alignas(32) uint8_t ax[C][kAbsX ? 512 : 32];
    if constexpr (kAbsX) {
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) {
        SWARM_UNROLL
        for (int v = 0; v < 16; ++v) {
          _mm256_store_si256(reinterpret_cast<__m256i*>(ax[j] + 32 * v),
                             _mm256_abs_epi8(Load256(xl[j] + 32 * v)));
        }
      }
    }
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      const uint8_t* group = rows[i] + g * kGroupBytes<kType>;
      // The next tile's group of this row, one of its 5-7 lines per step (see PrefetchLineOf).
      const uint8_t* next = group + R * a.row_bytes;
      SWARM_UNROLL
      for (int h = 0; h < 2; ++h) {
        __m256i s[C];
        if constexpr (kQ5) {
          // 5-bit quants of at most 31: 16-bit pair sums of at most 2 * 31 * 127, four of them
          // (two pieces) stay below 2^15 before widening.
          const __m256i hb = Load256(group + kQ5_0LaneBitsOffset + 32 * h);
          __m256i p[C][2];
          SWARM_UNROLL
          for (int j = 0; j < C; ++j) p[j][0] = p[j][1] = _mm256_setzero_si256();
          SWARM_UNROLL
          for (int c = 0; c < 4; ++c) {
            const __m256i v = Load256(group + kQ5_0LaneQuantsOffset + 64 * c + 32 * h);
            if constexpr (C == 1) PrefetchLineOf(next, kGroupBytes<kType>, 4 * h + c);
            const __m256i lo = _mm256_and_si256(v, low5);
            const __m256i hi =
                _mm256_or_si256(_mm256_srli_epi16(_mm256_and_si256(v, top3), 3),
                                _mm256_and_si256(c == 0 ? hb : _mm256_srli_epi16(hb, 2 * c), low2));
            SWARM_UNROLL
            for (int j = 0; j < C; ++j) {
              p[j][c / 2] = _mm256_add_epi16(
                  p[j][c / 2],
                  _mm256_add_epi16(
                      _mm256_maddubs_epi16(lo, Load256(xl[j] + 64 * c + 32 * h)),
                      _mm256_maddubs_epi16(hi, Load256(xl[j] + 64 * (c + 4) + 32 * h))));
            }
          }
          SWARM_UNROLL
          for (int j = 0; j < C; ++j) {
            // The lane section's correction is -8 * sum(x); Q5_0's quants are w + 16.
            const __m256i corr = _mm256_slli_epi32(Load256(xl[j] + 9 * 64 + 32 * h), 1);
            s[j] = _mm256_add_epi32(corr, _mm256_add_epi32(_mm256_madd_epi16(p[j][0], ones),
                                                           _mm256_madd_epi16(p[j][1], ones)));
          }
        } else {
          SWARM_UNROLL
          for (int j = 0; j < C; ++j) s[j] = _mm256_setzero_si256();
          SWARM_UNROLL
          for (int c = 0; c < 4; ++c) {
            const __m256i q = Load256(group + 32 + 64 * c + 32 * h);
            if constexpr (C == 1) PrefetchLineOf(next, kGroupBytes<kType>, 4 * h + c);
            const __m256i lo = _mm256_shuffle_epi8(levels, _mm256_and_si256(q, low4));
            const __m256i hi =
                _mm256_shuffle_epi8(levels, _mm256_and_si256(_mm256_srli_epi16(q, 4), low4));
            const __m256i alo = _mm256_sign_epi8(lo, lo);
            const __m256i ahi = _mm256_sign_epi8(hi, hi);
            SWARM_UNROLL
            for (int j = 0; j < C; ++j) {
              // |x| against the level with x's sign, or |level| against x with the level's: pair
              // sums of at most 2 * 127 * 127, exact in 16 bits one at a time.
              const __m256i xlo = Load256(xl[j] + 64 * c + 32 * h);
              const __m256i xhi = Load256(xl[j] + 64 * (c + 4) + 32 * h);
              __m256i plo, phi;
              if constexpr (kAbsX) {
                plo = _mm256_maddubs_epi16(Load256(ax[j] + 64 * c + 32 * h),
                                           _mm256_sign_epi8(lo, xlo));
                phi = _mm256_maddubs_epi16(Load256(ax[j] + 64 * (c + 4) + 32 * h),
                                           _mm256_sign_epi8(hi, xhi));
              } else {
                plo = _mm256_maddubs_epi16(alo, _mm256_sign_epi8(xlo, lo));
                phi = _mm256_maddubs_epi16(ahi, _mm256_sign_epi8(xhi, hi));
              }
              s[j] = _mm256_add_epi32(s[j], _mm256_add_epi32(_mm256_madd_epi16(plo, ones),
                                                             _mm256_madd_epi16(phi, ones)));
            }
          }
        }
        const __m256 dw = _mm256_cvtph_ps(Load128(group + 16 * h));
        SWARM_UNROLL
        for (int j = 0; j < C; ++j) {
          const __m256 dx = _mm256_loadu_ps(reinterpret_cast<const float*>(xl[j] + 8 * 64) + 8 * h);
          acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[j]), _mm256_mul_ps(dw, dx), acc[i][j]);
        }
      }
    }
  }
}

// Byte e is 16 where bit e of `bits` is set, else 0.
__m256i FifthBits32(uint32_t bits) {
  const __m256i spread =
      _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                          _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101,
                                             0x0202020202020202, 0x0303030303030303));
  // Set every bit but the one byte e tests; the byte is all ones exactly when that bit was set.
  const __m256i others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
  const __m256i set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi8(-1));
  return _mm256_and_si256(set, _mm256_set1_epi8(16));
}

// R rows from r against C tokens from t: the full groups in lanes, then the GGUF blocks past
// them one at a time.
template <GgmlType kType, int R, int C>
void Tile(const MatMulArgs& a, const X8Layout& l, int64_t r, int64_t t) {
  constexpr bool kQ5 = kType == GgmlType::kQ5_0;
  const uint8_t* rows[R];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) rows[i] = a.w + (r + i) * a.row_bytes;
  __m256 acc[R][C];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  LaneGroups<kType, R, C>(a, l, rows, t, acc);
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i levels = LevelTable();
  const int64_t n_blocks = a.n_in / 32;
  for (int64_t b = 16 * l.lane_groups; b < n_blocks; ++b) {
    __m256i xv[C];
    __m256i corr[C];
    __m256 dx[C];
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) {
      const uint8_t* base = a.x + (t + j) * a.x_stride;
      xv[j] = Load256(base + 32 * b);
      int32_t bsum;
      std::memcpy(&bsum, base + l.bsum32_offset + 4 * b, sizeof bsum);
      // Q5_0 quants are w + 16: lane 0 starts at -16 * sum(x).
      corr[j] = _mm256_setr_epi32(kQ5 ? -16 * bsum : 0, 0, 0, 0, 0, 0, 0, 0);
      float d;
      std::memcpy(&d, base + l.d_offset + 4 * b, sizeof d);
      dx[j] = _mm256_set1_ps(d);
    }
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      const uint8_t* blk = rows[i] + b * kBlockBytes<kType>;
      const __m256 dw = _mm256_set1_ps(HalfToFloat1(LoadU16(blk)));
      const uint8_t* qs = blk + (kQ5 ? offsetof(BlockQ5_0, qs) : offsetof(BlockIQ4_NL, qs));
      const __m128i v = Load128(qs);
      const __m256i nib = _mm256_and_si256(
          _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1), low4);
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) {
        __m256i p;
        if constexpr (kQ5) {
          const __m256i q = _mm256_or_si256(nib, FifthBits32(LoadU32(blk + 2)));
          p = _mm256_add_epi32(corr[j], _mm256_madd_epi16(_mm256_maddubs_epi16(q, xv[j]), ones));
        } else {
          const __m256i w = _mm256_shuffle_epi8(levels, nib);
          p = _mm256_madd_epi16(
              _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xv[j], w)), ones);
        }
        acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw, dx[j]), acc[i][j]);
      }
    }
  }
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) a.y[(t + j) * a.n_out + r + i] = Hsum(acc[i][j]);
  }
}

// One token: 8 rows at once, each group's next tile fetched into L2 (as the Q4_0 lane kernel).
// Prompts: tiles of 3 rows x 3 tokens over panels of 48 tokens, the next row tile spread-fetched.
constexpr int kVecRows = 8;
constexpr int kRows = 3;
constexpr int kCols = 3;
constexpr int64_t kPanel = 48;

template <GgmlType kType, int R>
void TileCols(const MatMulArgs& a, const X8Layout& l, int64_t r, int64_t t, int64_t cols) {
  switch (cols) {
    case 1:
      return Tile<kType, R, 1>(a, l, r, t);
    case 2:
      return Tile<kType, R, 2>(a, l, r, t);
    default:
      return Tile<kType, R, 3>(a, l, r, t);
  }
}

template <GgmlType kType>
void Drive(const MatMulArgs& a, int64_t r0, int64_t r1) {
  const X8Layout& l = a.x8;
  if (a.n_tokens == 1) {
    int64_t r = r0;
    for (; r + kVecRows <= r1; r += kVecRows) Tile<kType, kVecRows, 1>(a, l, r, 0);
    for (; r < r1; ++r) Tile<kType, 1, 1>(a, l, r, 0);
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
        TileCols<kType, kRows>(a, l, r, t, std::min<int64_t>(kCols, tp_end - t));
      }
    }
    for (; r < r1; ++r) {
      for (int64_t t = tp; t < tp_end; t += kCols) {
        TileCols<kType, 1>(a, l, r, t, std::min<int64_t>(kCols, tp_end - t));
      }
    }
  }
}

}  // namespace

void MatMulQ5_0Lanes(const MatMulArgs& a, int64_t r0, int64_t r1) {
  Drive<GgmlType::kQ5_0>(a, r0, r1);
}
void MatMulIQ4_NLLanes(const MatMulArgs& a, int64_t r0, int64_t r1) {
  Drive<GgmlType::kIQ4_NL>(a, r0, r1);
}

}  // namespace swarm::kernels::cpu::avx2
