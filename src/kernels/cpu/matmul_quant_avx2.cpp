// AVX2 matrix products for the quantized weight types against X8 activations (kernels.h). Integer
// dot products with vpmaddubsw (unsigned x signed bytes to 16-bit pair sums) and vpmaddwd (pairs
// to 32 bits, times the K-quant sub-block scales); Q8_0 weights, being signed, meet
// sign(x, w) against |w|. One 32-value block per step. As in the AVX-512 kernels, every output is
// accumulated by a fixed instruction sequence whatever its tile.
#include <algorithm>
#include <cstring>

#include "kernels/cpu/kernels_isa.h"
#include "kernels/cpu/simd_avx2.h"

namespace swarm::kernels::cpu::avx2 {
namespace {

struct X8Token {
  const int8_t* qs;
  const float* d;
  const int16_t* bsum16;
  const int32_t* bsum32;
  const float* fsum32;
};

X8Token ViewToken(const MatMulArgs& a, const X8Layout& l, int64_t t) {
  const uint8_t* base = a.x + t * a.x_stride;
  return {reinterpret_cast<const int8_t*>(base), reinterpret_cast<const float*>(base + l.d_offset),
          reinterpret_cast<const int16_t*>(base + l.bsum16_offset),
          reinterpret_cast<const int32_t*>(base + l.bsum32_offset),
          reinterpret_cast<const float*>(base + l.fsum32_offset)};
}

uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

__m256i Load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// A vector product (one token) streams R rows at once, R short streams the hardware prefetcher
// ramps up slowly on: fetch the bytes the next row tile will need at this point into L2.
template <int R, int C>
inline void PrefetchNextTile(const uint8_t* p, size_t row_bytes, size_t bytes) {
  if constexpr (C == 1) {
    const char* q = reinterpret_cast<const char*>(p + R * row_bytes);
    for (size_t off = 0; off < bytes; off += 64) _mm_prefetch(q + off, _MM_HINT_T1);
  }
}
__m128i Load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

// ---- Q8_0 and Q4_0 ----------------------------------------------------------------------------

// Q4_0 in the lane layout (lane_layout.h), the full 512-value groups of a row: each group is two
// halves of 8 lanes (lanes 0-7, then 8-15, of the weights' group and of the X8 lane section), one
// block per 32-bit lane: integer sums over each block's 32 values, then one float conversion and
// FMA per half instead of one per block.
template <int R, int C>
void LaneGroupsQ4_0(const MatMulArgs& a, const X8Layout& l, const uint8_t* const* rows, int64_t t,
                    __m256 (&acc)[R][C]) {
  constexpr int64_t kGroupBytes = 16 * int64_t{sizeof(BlockQ4_0)};
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t g = 0; g < l.lane_groups; ++g) {
    const uint8_t* xl[C];
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) {
      xl[j] = a.x + (t + j) * a.x_stride + l.lanes_offset + g * kX8LaneGroupBytes;
    }
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      const uint8_t* group = rows[i] + g * kGroupBytes;
      SWARM_UNROLL
      for (int h = 0; h < 2; ++h) {
        // The 16-bit pair sums of all 4 pieces, each at most 2 * 2 * 15 * 127 in magnitude: their
        // sum stays within 4 * 7620 < 2^15, so one widening per half gives the exact integers.
        __m256i p[C];
        SWARM_UNROLL
        for (int j = 0; j < C; ++j) p[j] = _mm256_setzero_si256();
        SWARM_UNROLL
        for (int c = 0; c < 4; ++c) {
          const __m256i q = Load256(group + 32 + 64 * c + 32 * h);
          if constexpr (C == 1) {
            // The next tile's group of this row, one of its 5-6 lines per step (see
            // PrefetchLineOf).
            PrefetchLineOf(group + R * a.row_bytes, kGroupBytes, 4 * h + c);
          }
          const __m256i lo = _mm256_and_si256(q, low4);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
          SWARM_UNROLL
          for (int j = 0; j < C; ++j) {
            p[j] = _mm256_add_epi16(
                p[j],
                _mm256_add_epi16(_mm256_maddubs_epi16(lo, Load256(xl[j] + 64 * c + 32 * h)),
                                 _mm256_maddubs_epi16(hi, Load256(xl[j] + 64 * (c + 4) + 32 * h))));
          }
        }
        __m256i s[C];
        SWARM_UNROLL
        for (int j = 0; j < C; ++j) {
          s[j] = _mm256_add_epi32(Load256(xl[j] + 9 * 64 + 32 * h),  // -8 * sum(x)
                                  _mm256_madd_epi16(p[j], ones));
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

// Q8_0 in the lane layout: as LaneGroupsQ4_0, with 8 pieces of signed bytes per block, met as
// |w| against sign(x, w) (the lane section's offset correction is not used).
template <int R, int C>
void LaneGroupsQ8_0(const MatMulArgs& a, const X8Layout& l, const uint8_t* const* rows, int64_t t,
                    __m256 (&acc)[R][C]) {
  constexpr int64_t kGroupBytes = 16 * int64_t{sizeof(BlockQ8_0)};
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t g = 0; g < l.lane_groups; ++g) {
    const uint8_t* xl[C];
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) {
      xl[j] = a.x + (t + j) * a.x_stride + l.lanes_offset + g * kX8LaneGroupBytes;
    }
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      const uint8_t* group = rows[i] + g * kGroupBytes;
      SWARM_UNROLL
      for (int h = 0; h < 2; ++h) {
        __m256i s[C];
        SWARM_UNROLL
        for (int j = 0; j < C; ++j) s[j] = _mm256_setzero_si256();
        SWARM_UNROLL
        for (int c = 0; c < 8; ++c) {
          const __m256i w = Load256(group + 32 + 64 * c + 32 * h);
          if constexpr (C == 1) {
            // The next tile's group of this row, one of its 9-10 lines per step (see
            // PrefetchLineOf).
            PrefetchLineOf(group + R * a.row_bytes, kGroupBytes, 8 * h + c);
          }
          const __m256i aw = _mm256_sign_epi8(w, w);
          SWARM_UNROLL
          for (int j = 0; j < C; ++j) {
            // Pair sums of at most 2 * 128 * 127: exact in 16 bits.
            const __m256i p =
                _mm256_maddubs_epi16(aw, _mm256_sign_epi8(Load256(xl[j] + 64 * c + 32 * h), w));
            s[j] = _mm256_add_epi32(s[j], _mm256_madd_epi16(p, ones));
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

// kLanes: Q4_0 or Q8_0 weights in the lane layout, whose full groups LaneGroupsQ4_0/Q8_0 take;
// the blocks past them are GGUF blocks either way.
template <GgmlType kType, bool kLanes, int R, int C>
void TileQ32(const MatMulArgs& a, const X8Layout& l, int64_t r, int64_t t) {
  const uint8_t* rows[R];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) rows[i] = a.w + (r + i) * a.row_bytes;
  X8Token xs[C];
  SWARM_UNROLL
  for (int j = 0; j < C; ++j) xs[j] = ViewToken(a, l, t + j);
  __m256 acc[R][C];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t n_blocks = a.n_in / 32;
  constexpr int64_t kBlockBytes =
      kType == GgmlType::kQ8_0 ? int64_t{sizeof(BlockQ8_0)} : int64_t{sizeof(BlockQ4_0)};
  int64_t first_block = 0;
  if constexpr (kLanes) {
    if constexpr (kType == GgmlType::kQ8_0) {
      LaneGroupsQ8_0<R, C>(a, l, rows, t, acc);
    } else {
      LaneGroupsQ4_0<R, C>(a, l, rows, t, acc);
    }
    first_block = 16 * l.lane_groups;
  }
  for (int64_t b = first_block; b < n_blocks; ++b) {
    __m256i xv[C];
    __m256i corr[C];
    __m256 dx[C];
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) {
      xv[j] = Load256(xs[j].qs + 32 * b);
      // Q4_0 nibbles are w + 8: lane 0 starts at -8 * sum(x).
      corr[j] = _mm256_setr_epi32(-8 * xs[j].bsum32[b], 0, 0, 0, 0, 0, 0, 0);
      dx[j] = _mm256_set1_ps(xs[j].d[b]);
    }
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      const uint8_t* blk = rows[i] + b * kBlockBytes;
      PrefetchNextTile<R, C>(blk, a.row_bytes, kBlockBytes);
      const __m256 dw = _mm256_set1_ps(HalfToFloat1(LoadU16(blk)));
      if constexpr (kType == GgmlType::kQ8_0) {
        const __m256i w = Load256(blk + 2);
        const __m256i aw = _mm256_sign_epi8(w, w);
        SWARM_UNROLL
        for (int j = 0; j < C; ++j) {
          const __m256i p =
              _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv[j], w)), ones);
          acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw, dx[j]), acc[i][j]);
        }
      } else {
        const __m128i v = Load128(blk + 2);
        const __m256i q = _mm256_and_si256(
            _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1),
            _mm256_set1_epi8(0x0f));
        SWARM_UNROLL
        for (int j = 0; j < C; ++j) {
          const __m256i p =
              _mm256_add_epi32(corr[j], _mm256_madd_epi16(_mm256_maddubs_epi16(q, xv[j]), ones));
          acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw, dx[j]), acc[i][j]);
        }
      }
    }
  }
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) a.y[(t + j) * a.n_out + r + i] = Hsum(acc[i][j]);
  }
}

// ---- Q4_K -------------------------------------------------------------------------------------

// The 8 6-bit scales (bytes 0-7) and 8 6-bit mins (bytes 8-15) of a Q4_K super-block, unpacked
// as ggml's utmp does, in vector registers (see matmul_quant_avx512.cpp).
__m128i UnpackScalesQ4K(const BlockQ4_K* blk) {
  const __m128i u = Load128(blk->scales);  // the 4 bytes past the scales are the block's quants
  const __m128i low = _mm_and_si128(u, _mm_set1_epi8(0x3f));
  const __m128i u2 =
      _mm_srlv_epi32(_mm_shuffle_epi32(u, _MM_SHUFFLE(2, 2, 2, 2)), _mm_setr_epi32(0, 4, 0, 0));
  const __m128i high = _mm_or_si128(_mm_and_si128(u2, _mm_set1_epi8(0x0f)),
                                    _mm_and_si128(_mm_srli_epi32(u, 2), _mm_set1_epi8(0x30)));
  return _mm_unpacklo_epi32(low, high);
}

// A byte shuffle that spreads byte `index` of each 128-bit lane over its 16-bit lanes, as the low
// byte (high byte zero).
__m256i SpreadByte(int index) { return _mm256_set1_epi16(static_cast<short>(0x8000 | index)); }

template <int R, int C>
void TileQ4K(const MatMulArgs& a, const X8Layout& l, int64_t r, int64_t t) {
  const uint8_t* rows[R];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) rows[i] = a.w + (r + i) * a.row_bytes;
  X8Token xs[C];
  SWARM_UNROLL
  for (int j = 0; j < C; ++j) xs[j] = ViewToken(a, l, t + j);
  __m256 acc[R][C];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  __m256i spread[8];
  SWARM_UNROLL
  for (int k = 0; k < 8; ++k) spread[k] = SpreadByte(k);
  const int64_t n_super = a.n_in / kQK_K;
  for (int64_t sb = 0; sb < n_super; ++sb) {
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      const auto* blk = reinterpret_cast<const BlockQ4_K*>(rows[i]) + sb;
      PrefetchNextTile<R, C>(reinterpret_cast<const uint8_t*>(blk), a.row_bytes, sizeof(BlockQ4_K));
      const __m128i scales_mins = UnpackScalesQ4K(blk);
      const __m256i sc = _mm256_broadcastsi128_si256(scales_mins);
      const float d = HalfToFloat1(blk->d);
      const __m256 mins = _mm256_mul_ps(
          _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(scales_mins, scales_mins))),
          _mm256_set1_ps(HalfToFloat1(blk->dmin)));
      __m256i isum[C];
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) isum[j] = _mm256_setzero_si256();
      SWARM_UNROLL
      for (int s = 0; s < 4; ++s) {
        const __m256i v = Load256(blk->qs + 32 * s);
        const __m256i lo = _mm256_and_si256(v, low4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
        const __m256i sc_lo = _mm256_shuffle_epi8(sc, spread[2 * s]);
        const __m256i sc_hi = _mm256_shuffle_epi8(sc, spread[2 * s + 1]);
        SWARM_UNROLL
        for (int j = 0; j < C; ++j) {
          const int8_t* xq = xs[j].qs + kQK_K * sb + 64 * s;
          const __m256i p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, Load256(xq)), sc_lo);
          const __m256i p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, Load256(xq + 32)), sc_hi);
          isum[j] = _mm256_add_epi32(isum[j], _mm256_add_epi32(p_lo, p_hi));
        }
      }
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) {
        acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[j]), _mm256_set1_ps(d * xs[j].d[sb]),
                                    acc[i][j]);
        acc[i][j] = _mm256_fnmadd_ps(mins, _mm256_loadu_ps(xs[j].fsum32 + 8 * sb), acc[i][j]);
      }
    }
  }
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) a.y[(t + j) * a.n_out + r + i] = Hsum(acc[i][j]);
  }
}

// ---- Q6_K -------------------------------------------------------------------------------------

template <int R, int C>
void TileQ6K(const MatMulArgs& a, const X8Layout& l, int64_t r, int64_t t) {
  const uint8_t* rows[R];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) rows[i] = a.w + (r + i) * a.row_bytes;
  X8Token xs[C];
  SWARM_UNROLL
  for (int j = 0; j < C; ++j) xs[j] = ViewToken(a, l, t + j);
  __m256 acc[R][C];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i bits45 = _mm256_set1_epi8(0x30);
  // Scales 0, 2, ..., 14 then 1, 3, ..., 15: widened to 16 bits, word k of the low 128 bits is
  // scale 2k and of the high 128 bits scale 2k + 1.
  const __m128i even_odd = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  __m256i word[8];  // word[k]: a byte shuffle spreading 16-bit word k over its 128-bit lane
  SWARM_UNROLL
  for (int k = 0; k < 8; ++k)
    word[k] = _mm256_set1_epi16(static_cast<short>(0x0100 * (2 * k + 1) + 2 * k));
  const int64_t n_super = a.n_in / kQK_K;
  for (int64_t sb = 0; sb < n_super; ++sb) {
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      const auto* blk = reinterpret_cast<const BlockQ6_K*>(rows[i]) + sb;
      PrefetchNextTile<R, C>(reinterpret_cast<const uint8_t*>(blk), a.row_bytes, sizeof(BlockQ6_K));
      const __m128i sc = Load128(blk->scales);
      const __m256i sc_pairs = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc, even_odd));
      const __m256i sc16 = _mm256_cvtepi8_epi16(sc);
      const __m256i neg32 = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc16, 5));
      const float d = HalfToFloat1(blk->d);
      __m256i isum[C];
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) {
        isum[j] = _mm256_madd_epi16(neg32, Load256(xs[j].bsum16 + 16 * sb));
      }
      SWARM_UNROLL
      for (int h = 0; h < 2; ++h) {
        const __m256i ql0 = Load256(blk->ql + 64 * h);
        const __m256i ql1 = Load256(blk->ql + 64 * h + 32);
        const __m256i qh = Load256(blk->qh + 32 * h);
        // The four 32-value quarters of this half, in order of the values: low 4 bits from ql,
        // bits 4-5 from bit pair 2 * quarter of qh (16-bit shifts; the bits they carry across
        // bytes are masked off).
        const __m256i q[4] = {_mm256_or_si256(_mm256_and_si256(ql0, low4),
                                              _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45)),
                              _mm256_or_si256(_mm256_and_si256(ql1, low4),
                                              _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45)),
                              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                                              _mm256_and_si256(qh, bits45)),
                              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                                              _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45))};
        SWARM_UNROLL
        for (int quarter = 0; quarter < 4; ++quarter) {
          // 16-value groups g = 8h + 2 * quarter (low 128 bits) and g + 1 (high): scale words
          // 4h + quarter of sc_pairs.
          const __m256i scs = _mm256_shuffle_epi8(sc_pairs, word[4 * h + quarter]);
          SWARM_UNROLL
          for (int j = 0; j < C; ++j) {
            const __m256i xq = Load256(xs[j].qs + kQK_K * sb + 128 * h + 32 * quarter);
            isum[j] = _mm256_add_epi32(
                isum[j], _mm256_madd_epi16(_mm256_maddubs_epi16(q[quarter], xq), scs));
          }
        }
      }
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) {
        acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[j]), _mm256_set1_ps(d * xs[j].d[sb]),
                                    acc[i][j]);
      }
    }
  }
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) a.y[(t + j) * a.n_out + r + i] = Hsum(acc[i][j]);
  }
}

// ---- drivers ----------------------------------------------------------------------------------

// Rows per matrix-vector tile: several interleaved rows give the per-block kernels independent
// chains. A lane kernel has enough chains within one row, but streams from memory best over 8
// rows at once with the next tile prefetched (one thread, 512 MiB of Q8_0 lanes: 0.73-0.78 of a
// plain read with one row and lines 4 KiB ahead, 0.89-0.92 with 8; Q4_0 lanes 0.73 -> 0.86-0.89).
constexpr int kVecRowsBlocks = 4;
constexpr int kRows = 3;
constexpr int kCols = 3;
constexpr int64_t kPanel = 48;

template <class K, int R>
void TileCols(const MatMulArgs& a, const X8Layout& l, int64_t r, int64_t t, int64_t cols) {
  switch (cols) {
    case 1:
      return K::template Run<R, 1>(a, l, r, t);
    case 2:
      return K::template Run<R, 2>(a, l, r, t);
    default:
      return K::template Run<R, 3>(a, l, r, t);
  }
}

template <class K>
void Drive(const MatMulArgs& a, int64_t r0, int64_t r1) {
  const X8Layout& l = a.x8;
  if (a.n_tokens == 1) {
    int64_t r = r0;
    constexpr int kVecRows = K::kVecRows;
    for (; r + kVecRows <= r1; r += kVecRows) K::template Run<kVecRows, 1>(a, l, r, 0);
    for (; r < r1; ++r) K::template Run<1, 1>(a, l, r, 0);
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
        TileCols<K, kRows>(a, l, r, t, std::min<int64_t>(kCols, tp_end - t));
      }
    }
    for (; r < r1; ++r) {
      for (int64_t t = tp; t < tp_end; t += kCols) {
        TileCols<K, 1>(a, l, r, t, std::min<int64_t>(kCols, tp_end - t));
      }
    }
  }
}

template <GgmlType kType, bool kLanes = false>
struct Q32Kernel {
  static constexpr int kVecRows = kLanes ? 8 : kVecRowsBlocks;
  template <int R, int C>
  static void Run(const MatMulArgs& a, const X8Layout& l, int64_t r, int64_t t) {
    TileQ32<kType, kLanes, R, C>(a, l, r, t);
  }
};
struct Q4KKernel {
  static constexpr int kVecRows = kVecRowsBlocks;
  template <int R, int C>
  static void Run(const MatMulArgs& a, const X8Layout& l, int64_t r, int64_t t) {
    TileQ4K<R, C>(a, l, r, t);
  }
};
struct Q6KKernel {
  // Two rows per matrix-vector tile: 23.2-23.4 GB/s in L2 against 19.7-21.4 with four (one
  // thread); Q4_K measured the same with two or four.
  static constexpr int kVecRows = 2;
  template <int R, int C>
  static void Run(const MatMulArgs& a, const X8Layout& l, int64_t r, int64_t t) {
    TileQ6K<R, C>(a, l, r, t);
  }
};

}  // namespace

void MatMulQ8_0(const MatMulArgs& a, int64_t r0, int64_t r1) {
  Drive<Q32Kernel<GgmlType::kQ8_0>>(a, r0, r1);
}
void MatMulQ4_0(const MatMulArgs& a, int64_t r0, int64_t r1) {
  Drive<Q32Kernel<GgmlType::kQ4_0>>(a, r0, r1);
}
void MatMulQ8_0Lanes(const MatMulArgs& a, int64_t r0, int64_t r1) {
  Drive<Q32Kernel<GgmlType::kQ8_0, /*kLanes=*/true>>(a, r0, r1);
}
void MatMulQ4_0Lanes(const MatMulArgs& a, int64_t r0, int64_t r1) {
  Drive<Q32Kernel<GgmlType::kQ4_0, /*kLanes=*/true>>(a, r0, r1);
}
void MatMulQ4_K(const MatMulArgs& a, int64_t r0, int64_t r1) { Drive<Q4KKernel>(a, r0, r1); }
void MatMulQ6_K(const MatMulArgs& a, int64_t r0, int64_t r1) { Drive<Q6KKernel>(a, r0, r1); }

}  // namespace swarm::kernels::cpu::avx2
