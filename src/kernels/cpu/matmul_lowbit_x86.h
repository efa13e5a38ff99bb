// The x86 bodies of the Q2_K, Q3_K and IQ4_XS products (256-bit integer SIMD), included by
// matmul_lowbit_avx2.cpp and matmul_lowbit_avx512.cpp so that each compiles them with its own
// flags. Internal linkage only: include from exactly those files.
//
// Tiles of R rows x C tokens: a row's unpacked quants and scales serve every token of the tile,
// a token's activations every row (one token: 4 rows, which also gives 4 independent chains;
// several tokens: 3 x 3 tiles over panels of 48 tokens). Each output is accumulated by the same
// instructions whatever its tile (the determinism contract of kernels.h). The 16-bit scales of a
// super-block are widened once and picked per 32 values by one in-lane byte shuffle.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "kernels/block_lowbit.h"
#include "kernels/cpu/kernels_isa.h"
#include "kernels/cpu/matmul_lowbit.h"

namespace swarm::kernels::cpu {
namespace {

struct X8Token {
  const int8_t* qs;
  const float* d;
  const int16_t* bsum16;
};

inline X8Token ViewToken(const MatMulArgs& a, int64_t t) {
  const uint8_t* base = a.x + t * a.x_stride;
  const X8Layout& l = a.x8;
  return {reinterpret_cast<const int8_t*>(base), reinterpret_cast<const float*>(base + l.d_offset),
          reinterpret_cast<const int16_t*>(base + l.bsum16_offset)};
}

inline __m256i Load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m128i Load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

inline float HorizontalSum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

inline float Half(uint16_t h) { return _cvtsh_ss(h); }

// Byte shuffles over 8 int16 scales held in both 128-bit lanes: kPick[m] puts scale 2m in every
// 16-bit lane of the low half and scale 2m + 1 in every lane of the high half (the two 16-value
// halves of a 32-value maddubs, or the two 32-value sub-blocks IQ4_XS pairs).
alignas(32) constexpr int8_t kPick[4][32] = {
    {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
     2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3},
    {4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5,
     6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7},
    {8,  9,  8,  9,  8,  9,  8,  9,  8,  9,  8,  9,  8,  9,  8,  9,
     10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11},
    {12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13,
     14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15}};

inline __m256i Pick(__m256i scales8x2, int m) {
  return _mm256_shuffle_epi8(scales8x2,
                             _mm256_load_si256(reinterpret_cast<const __m256i*>(kPick[m])));
}

// The 16 signed Q3_K scales (6-bit value - 32) as bytes: low nibbles from bytes 0-7 (sub-blocks
// 0-7 the low nibble, 8-15 the high one), high bit pairs from bytes 8-11 (sub-block 4k + i: bits
// 2k..2k+1 of byte 8 + i).
inline __m128i Q3_KScales(const uint8_t* s) {
  uint64_t low_bytes;
  uint32_t high_bytes;
  std::memcpy(&low_bytes, s, 8);
  std::memcpy(&high_bytes, s + 8, 4);
  const __m128i v = _mm_cvtsi64_si128(static_cast<long long>(low_bytes));
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const __m128i low =
      _mm_unpacklo_epi64(_mm_and_si128(v, m4), _mm_and_si128(_mm_srli_epi16(v, 4), m4));
  const __m128i high = _mm_and_si128(
      _mm_srlv_epi32(_mm_set1_epi32(static_cast<int>(high_bytes)), _mm_setr_epi32(0, 2, 4, 6)),
      _mm_set1_epi8(3));
  return _mm_sub_epi8(_mm_or_si128(low, _mm_slli_epi16(high, 4)), _mm_set1_epi8(32));
}

// Bit `kBit` of every byte of h as the value 4 (bit 2). 16-bit shifts carry bits across the byte
// boundary only into bits the mask drops.
template <int kBit>
inline __m256i HighBitAs4(__m256i h) {
  const __m256i four = _mm256_set1_epi8(4);
  if constexpr (kBit < 2) return _mm256_and_si256(_mm256_slli_epi16(h, 2 - kBit), four);
  if constexpr (kBit == 2) return _mm256_and_si256(h, four);
  if constexpr (kBit > 2) return _mm256_and_si256(_mm256_srli_epi16(h, kBit - 2), four);
}

template <int R>
inline void PrefetchRows(const MatMulArgs& a, const uint8_t* blk, size_t bytes) {
  // One token: the rows after this tile are the next stream of weights.
  if constexpr (R > 1) {
    const char* next = reinterpret_cast<const char*>(blk) + R * a.row_bytes;
    for (size_t off = 0; off < bytes; off += 64) _mm_prefetch(next + off, _MM_HINT_T1);
  }
}

// Prompts: the rows of a tile unpacked once per token panel (rows up to kMaxUnpackedIn values;
// longer ones unpack per tile). The products are the same instructions on
// the same values either way.
constexpr int64_t kMaxUnpackedIn = 8192;

// ---- Q2_K ---------------------------------------------------------------------------------------

// A Q2_K super-block unpacked for prompts: its 8 chunks of 32 quants with their picked scales,
// its mins as int16 and its d, dmin as floats (lanes 0 and 1).
struct Q2KUnpacked {
  __m256i w[8], s[8];
  __m256i mins16;
  __m128 dd;
};

template <int R>
struct UnpackedRowsQ2K {
  Q2KUnpacked blocks[R][kMaxUnpackedIn / kQK_K];
};

inline __m128 Q2KScales(const BlockQ2_K* b) {
  // d and dmin (adjacent fp16) converted together: lanes 0 and 1.
  uint32_t d_dmin;
  std::memcpy(&d_dmin, &b->d, sizeof d_dmin);
  static_assert(offsetof(BlockQ2_K, dmin) == offsetof(BlockQ2_K, d) + 2);
  return _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(d_dmin)));
}

template <int R>
void UnpackRowsQ2K(const MatMulArgs& a, int64_t r, UnpackedRowsQ2K<R>* u) {
  const __m256i mask2 = _mm256_set1_epi8(3);
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const int64_t n_super = a.n_in / kQK_K;
  for (int i = 0; i < R; ++i) {
    const auto* row = reinterpret_cast<const BlockQ2_K*>(a.w + (r + i) * a.row_bytes);
    for (int64_t sb = 0; sb < n_super; ++sb) {
      const BlockQ2_K* b = row + sb;
      Q2KUnpacked& o = u->blocks[i][sb];
      const __m128i raw = Load128(b->scales);
      const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, m4));
      o.mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
      const __m256i sc_half[2] = {_mm256_permute2x128_si256(sc16, sc16, 0x00),
                                  _mm256_permute2x128_si256(sc16, sc16, 0x11)};
      SWARM_UNROLL
      for (int h = 0; h < 2; ++h) {
        const __m256i q = Load256(b->qs + 32 * h);
        SWARM_UNROLL
        for (int k = 0; k < 4; ++k) {
          o.w[4 * h + k] = _mm256_and_si256(k == 0 ? q : _mm256_srli_epi16(q, 2 * k), mask2);
          o.s[4 * h + k] = Pick(sc_half[h], k);
        }
      }
      o.dd = Q2KScales(b);
    }
  }
}

// kUnpacked: the rows come from u (UnpackRowsQ2K) rather than the weights.
template <int R, int C, bool kUnpacked = false>
void TileQ2K(const MatMulArgs& a, int64_t r, int64_t t,
             const UnpackedRowsQ2K<R>* rows_u = nullptr) {
  const uint8_t* rows[R];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) rows[i] = a.w + (r + i) * a.row_bytes;
  X8Token xs[C];
  SWARM_UNROLL
  for (int j = 0; j < C; ++j) xs[j] = ViewToken(a, t + j);
  __m256 acc[R][C];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  const __m256i mask2 = _mm256_set1_epi8(3);
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const int64_t n_super = a.n_in / kQK_K;
  for (int64_t sb = 0; sb < n_super; ++sb) {
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      const auto* b = reinterpret_cast<const BlockQ2_K*>(rows[i]) + sb;
      __m256i mins16;
      __m256i sc_half[2] = {};
      if constexpr (kUnpacked) {
        mins16 = rows_u->blocks[i][sb].mins16;
      } else {
        if constexpr (C == 1) PrefetchRows<R>(a, reinterpret_cast<const uint8_t*>(b), sizeof(*b));
        const __m128i raw = Load128(b->scales);
        const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, m4));
        mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
        sc_half[0] = _mm256_permute2x128_si256(sc16, sc16, 0x00);
        sc_half[1] = _mm256_permute2x128_si256(sc16, sc16, 0x11);
      }
      __m256i isum[C];
      __m256i msum[C];
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) {
        isum[j] = _mm256_setzero_si256();
        msum[j] = _mm256_madd_epi16(mins16, Load256(xs[j].bsum16 + 16 * sb));
      }
      SWARM_UNROLL
      for (int h = 0; h < 2; ++h) {
        const __m256i q = kUnpacked ? _mm256_setzero_si256() : Load256(b->qs + 32 * h);
        SWARM_UNROLL
        for (int k = 0; k < 4; ++k) {
          __m256i w, s;
          if constexpr (kUnpacked) {
            w = rows_u->blocks[i][sb].w[4 * h + k];
            s = rows_u->blocks[i][sb].s[4 * h + k];
          } else {
            w = _mm256_and_si256(k == 0 ? q : _mm256_srli_epi16(q, 2 * k), mask2);
            s = Pick(sc_half[h], k);
          }
          SWARM_UNROLL
          for (int j = 0; j < C; ++j) {
            const __m256i xv = Load256(xs[j].qs + kQK_K * sb + 128 * h + 32 * k);
            isum[j] = _mm256_add_epi32(isum[j], _mm256_madd_epi16(_mm256_maddubs_epi16(w, xv), s));
          }
        }
      }
      const __m128 dd = kUnpacked ? rows_u->blocks[i][sb].dd : Q2KScales(b);
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) {
        const __m128 scaled = _mm_mul_ps(dd, _mm_broadcast_ss(xs[j].d + sb));
        const __m256 both = _mm256_castps128_ps256(scaled);
        acc[i][j] =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[j]),
                            _mm256_permutevar8x32_ps(both, _mm256_set1_epi32(0)), acc[i][j]);
        acc[i][j] =
            _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum[j]),
                             _mm256_permutevar8x32_ps(both, _mm256_set1_epi32(1)), acc[i][j]);
      }
    }
  }
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) a.y[(t + j) * a.n_out + r + i] = HorizontalSum(acc[i][j]);
  }
}

// ---- Q3_K ---------------------------------------------------------------------------------------

// Chunk c (32 values: sub-blocks 2c and 2c + 1) of a Q3_K super-block: its quants (w + 4, the
// high bit or-ed in as 4) from q (the 32 quant bytes of its half) and hm, and its picked scales.
struct Q3KChunk {
  __m256i w, s;
};

template <int kC>
inline Q3KChunk Q3KChunkOf(__m256i q, __m256i hm, const __m256i (&sc_half)[2]) {
  constexpr int k = kC % 4;
  const __m256i mask2 = _mm256_set1_epi8(3);
  const __m256i low = _mm256_and_si256(k == 0 ? q : _mm256_srli_epi16(q, 2 * k), mask2);
  return {_mm256_or_si256(low, HighBitAs4<kC>(hm)), Pick(sc_half[kC / 4], k)};
}

// A Q3_K super-block unpacked for prompts: its 8 chunks, its scales as int16 and its d.
struct Q3KUnpacked {
  __m256i w[8], s[8];
  __m256i sc16;
  float d;
};

template <int R>
struct UnpackedRowsQ3K {
  Q3KUnpacked blocks[R][kMaxUnpackedIn / kQK_K];
};

template <int R>
void UnpackRowsQ3K(const MatMulArgs& a, int64_t r, UnpackedRowsQ3K<R>* u) {
  const int64_t n_super = a.n_in / kQK_K;
  for (int i = 0; i < R; ++i) {
    const auto* row = reinterpret_cast<const BlockQ3_K*>(a.w + (r + i) * a.row_bytes);
    for (int64_t sb = 0; sb < n_super; ++sb) {
      const BlockQ3_K* b = row + sb;
      Q3KUnpacked& o = u->blocks[i][sb];
      o.sc16 = _mm256_cvtepi8_epi16(Q3_KScales(b->scales));
      const __m256i sc_half[2] = {_mm256_permute2x128_si256(o.sc16, o.sc16, 0x00),
                                  _mm256_permute2x128_si256(o.sc16, o.sc16, 0x11)};
      const __m256i hm = Load256(b->hmask);
      const __m256i q0 = Load256(b->qs);
      const __m256i q1 = Load256(b->qs + 32);
      const Q3KChunk c[8] = {Q3KChunkOf<0>(q0, hm, sc_half), Q3KChunkOf<1>(q0, hm, sc_half),
                             Q3KChunkOf<2>(q0, hm, sc_half), Q3KChunkOf<3>(q0, hm, sc_half),
                             Q3KChunkOf<4>(q1, hm, sc_half), Q3KChunkOf<5>(q1, hm, sc_half),
                             Q3KChunkOf<6>(q1, hm, sc_half), Q3KChunkOf<7>(q1, hm, sc_half)};
      for (int k = 0; k < 8; ++k) {
        o.w[k] = c[k].w;
        o.s[k] = c[k].s;
      }
      o.d = Half(b->d);
    }
  }
}

// kUnpacked: the rows come from u (UnpackRowsQ3K) rather than the weights.
template <int R, int C, bool kUnpacked = false>
void TileQ3K(const MatMulArgs& a, int64_t r, int64_t t,
             const UnpackedRowsQ3K<R>* rows_u = nullptr) {
  const uint8_t* rows[R];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) rows[i] = a.w + (r + i) * a.row_bytes;
  X8Token xs[C];
  SWARM_UNROLL
  for (int j = 0; j < C; ++j) xs[j] = ViewToken(a, t + j);
  __m256 acc[R][C];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  const int64_t n_super = a.n_in / kQK_K;
  for (int64_t sb = 0; sb < n_super; ++sb) {
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      const auto* b = reinterpret_cast<const BlockQ3_K*>(rows[i]) + sb;
      __m256i sc16;
      __m256i sc_half[2] = {};
      __m256i hm = _mm256_setzero_si256();
      float d;
      if constexpr (kUnpacked) {
        sc16 = rows_u->blocks[i][sb].sc16;
        d = rows_u->blocks[i][sb].d;
      } else {
        if constexpr (C == 1) PrefetchRows<R>(a, reinterpret_cast<const uint8_t*>(b), sizeof(*b));
        sc16 = _mm256_cvtepi8_epi16(Q3_KScales(b->scales));
        sc_half[0] = _mm256_permute2x128_si256(sc16, sc16, 0x00);
        sc_half[1] = _mm256_permute2x128_si256(sc16, sc16, 0x11);
        hm = Load256(b->hmask);
        d = Half(b->d);
      }
      // The quants are w + 4 where an element's high bit is clear: their dot product starts at
      // -4 * scale * (sum of each 16 activations).
      __m256i isum[C];
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) {
        isum[j] = _mm256_sub_epi32(
            _mm256_setzero_si256(),
            _mm256_slli_epi32(_mm256_madd_epi16(sc16, Load256(xs[j].bsum16 + 16 * sb)), 2));
      }
      auto chunk = [&](auto c_tag, __m256i q) {
        constexpr int c = decltype(c_tag)::value;
        Q3KChunk ch;
        if constexpr (kUnpacked) {
          ch = {rows_u->blocks[i][sb].w[c], rows_u->blocks[i][sb].s[c]};
        } else {
          ch = Q3KChunkOf<c>(q, hm, sc_half);
        }
        SWARM_UNROLL
        for (int j = 0; j < C; ++j) {
          const __m256i xv = Load256(xs[j].qs + kQK_K * sb + 32 * c);
          isum[j] =
              _mm256_add_epi32(isum[j], _mm256_madd_epi16(_mm256_maddubs_epi16(ch.w, xv), ch.s));
        }
      };
      const __m256i q0 = kUnpacked ? _mm256_setzero_si256() : Load256(b->qs);
      chunk(std::integral_constant<int, 0>{}, q0);
      chunk(std::integral_constant<int, 1>{}, q0);
      chunk(std::integral_constant<int, 2>{}, q0);
      chunk(std::integral_constant<int, 3>{}, q0);
      const __m256i q1 = kUnpacked ? _mm256_setzero_si256() : Load256(b->qs + 32);
      chunk(std::integral_constant<int, 4>{}, q1);
      chunk(std::integral_constant<int, 5>{}, q1);
      chunk(std::integral_constant<int, 6>{}, q1);
      chunk(std::integral_constant<int, 7>{}, q1);
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
    for (int j = 0; j < C; ++j) a.y[(t + j) * a.n_out + r + i] = HorizontalSum(acc[i][j]);
  }
}

// ---- IQ4_XS -------------------------------------------------------------------------------------

// The 8 signed scales (6-bit value - 32) of an IQ4_XS super-block as int16, in both 128-bit lanes.
inline __m256i IQ4_XSScales(const BlockIQ4_XS* b) {
  uint32_t low_bytes;
  std::memcpy(&low_bytes, b->scales_l, 4);
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const __m128i v = _mm_cvtsi32_si128(static_cast<int>(low_bytes));
  // Bytes 2j, 2j + 1 of scales_l's nibbles: sub-block j's low 4 bits, in order.
  const __m128i low = _mm_cvtepu8_epi16(
      _mm_unpacklo_epi8(_mm_and_si128(v, m4), _mm_and_si128(_mm_srli_epi16(v, 4), m4)));
  // Lane j: scales_h shifted left by 14 - 2j (a multiply by 2^(14-2j)), then right by 14.
  const __m128i high = _mm_srli_epi16(
      _mm_mullo_epi16(_mm_set1_epi16(static_cast<short>(b->scales_h)),
                      _mm_setr_epi16(1 << 14, 1 << 12, 1 << 10, 1 << 8, 1 << 6, 1 << 4, 1 << 2, 1)),
      14);
  const __m128i s = _mm_sub_epi16(_mm_or_si128(low, _mm_slli_epi16(high, 4)), _mm_set1_epi16(32));
  return _mm256_broadcastsi128_si256(s);
}

// |kKValuesIq4Nl| as unsigned bytes, for vpmaddubsw.
alignas(16) constexpr uint8_t kIq4Magnitudes[16] = {127, 104, 83, 65, 49, 35, 22, 10,
                                                    1,   13,  25, 38, 53, 69, 89, 113};

// Tokens' activations of one super-block rearranged for 256-bit loads of the weights: for each
// pair of sub-blocks (2p, 2p + 1), 32 bytes holding values 0-15 of both, then 32 holding values
// 16-31 of both (the low and high nibbles of the pair's 32 weight bytes).
template <int C>
inline void PairActivations(const X8Token (&xs)[C], int64_t sb, int8_t (*xp)[kQK_K]) {
  SWARM_UNROLL
  for (int j = 0; j < C; ++j) {
    SWARM_UNROLL
    for (int p = 0; p < 4; ++p) {
      const __m256i x0 = Load256(xs[j].qs + kQK_K * sb + 64 * p);
      const __m256i x1 = Load256(xs[j].qs + kQK_K * sb + 64 * p + 32);
      _mm256_store_si256(reinterpret_cast<__m256i*>(xp[j] + 64 * p),
                         _mm256_permute2x128_si256(x0, x1, 0x20));
      _mm256_store_si256(reinterpret_cast<__m256i*>(xp[j] + 64 * p + 32),
                         _mm256_permute2x128_si256(x0, x1, 0x31));
    }
  }
}

// An IQ4_XS super-block's values as the tile multiplies them: for each pair p of sub-blocks, the
// signed values and magnitudes of their low-nibble elements (values 0-15 of both) and of their
// high-nibble ones (16-31), and the pair's picked scales.
struct IQ4Unpacked {
  __m256i lo[4], hi[4], alo[4], ahi[4], s[4];
};

// Pair p of a super-block (its scales sc from IQ4_XSScales).
struct IQ4Pair {
  __m256i lo, hi, alo, ahi, s;
};

inline IQ4Pair UnpackIQ4Pair(const BlockIQ4_XS* b, __m256i sc, int p) {
  const __m256i values = _mm256_broadcastsi128_si256(Load128(kKValuesIq4Nl));
  const __m256i magnitudes = _mm256_broadcastsi128_si256(Load128(kIq4Magnitudes));
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i v = Load256(b->qs + 32 * p);
  const __m256i idx_lo = _mm256_and_si256(v, m4);
  const __m256i idx_hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
  // The values carry the signs; their magnitudes come from a second lookup rather than
  // vpsignb, which competes with the multiplies for the same ports.
  return {_mm256_shuffle_epi8(values, idx_lo), _mm256_shuffle_epi8(values, idx_hi),
          _mm256_shuffle_epi8(magnitudes, idx_lo), _mm256_shuffle_epi8(magnitudes, idx_hi),
          Pick(sc, p)};
}

inline void UnpackIQ4XS(const BlockIQ4_XS* b, IQ4Unpacked* u) {
  const __m256i sc = IQ4_XSScales(b);
  SWARM_UNROLL
  for (int p = 0; p < 4; ++p) {
    const IQ4Pair q = UnpackIQ4Pair(b, sc, p);
    u->lo[p] = q.lo;
    u->hi[p] = q.hi;
    u->alo[p] = q.alo;
    u->ahi[p] = q.ahi;
    u->s[p] = q.s;
  }
}

template <int R>
struct UnpackedRowsIQ4 {
  IQ4Unpacked blocks[R][kMaxUnpackedIn / kQK_K];
  float d[R][kMaxUnpackedIn / kQK_K];
};

template <int R>
void UnpackRowsIQ4(const MatMulArgs& a, int64_t r, UnpackedRowsIQ4<R>* u) {
  const int64_t n_super = a.n_in / kQK_K;
  for (int i = 0; i < R; ++i) {
    const auto* row = reinterpret_cast<const BlockIQ4_XS*>(a.w + (r + i) * a.row_bytes);
    for (int64_t sb = 0; sb < n_super; ++sb) {
      UnpackIQ4XS(row + sb, &u->blocks[i][sb]);
      u->d[i][sb] = Half(row[sb].d);
    }
  }
}

// kUnpacked: the rows come from u (UnpackRowsIQ4) rather than the weights.
template <int R, int C, bool kUnpacked = false>
void TileIQ4XS(const MatMulArgs& a, int64_t r, int64_t t,
               const UnpackedRowsIQ4<R>* rows_u = nullptr) {
  const uint8_t* rows[R];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) rows[i] = a.w + (r + i) * a.row_bytes;
  X8Token xs[C];
  SWARM_UNROLL
  for (int j = 0; j < C; ++j) xs[j] = ViewToken(a, t + j);
  __m256 acc[R][C];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  alignas(32) int8_t xp[C][kQK_K];
  const int64_t n_super = a.n_in / kQK_K;
  for (int64_t sb = 0; sb < n_super; ++sb) {
    PairActivations<C>(xs, sb, xp);
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      const auto* b = reinterpret_cast<const BlockIQ4_XS*>(rows[i]) + sb;
      __m256i sc = _mm256_setzero_si256();
      float d;
      if constexpr (kUnpacked) {
        d = rows_u->d[i][sb];
      } else {
        if constexpr (C == 1) PrefetchRows<R>(a, reinterpret_cast<const uint8_t*>(b), sizeof(*b));
        sc = IQ4_XSScales(b);
        d = Half(b->d);
      }
      __m256i isum[C];
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) isum[j] = _mm256_setzero_si256();
      SWARM_UNROLL
      for (int p = 0; p < 4; ++p) {
        IQ4Pair q;
        if constexpr (kUnpacked) {
          const IQ4Unpacked& u = rows_u->blocks[i][sb];
          q = {u.lo[p], u.hi[p], u.alo[p], u.ahi[p], u.s[p]};
        } else {
          q = UnpackIQ4Pair(b, sc, p);
        }
        SWARM_UNROLL
        for (int j = 0; j < C; ++j) {
          // Signed by signed: |w| (unsigned) times x carrying w's sign.
          const __m256i x_lo = _mm256_load_si256(reinterpret_cast<const __m256i*>(xp[j] + 64 * p));
          const __m256i x_hi =
              _mm256_load_si256(reinterpret_cast<const __m256i*>(xp[j] + 64 * p + 32));
          const __m256i p_lo =
              _mm256_madd_epi16(_mm256_maddubs_epi16(q.alo, _mm256_sign_epi8(x_lo, q.lo)), q.s);
          const __m256i p_hi =
              _mm256_madd_epi16(_mm256_maddubs_epi16(q.ahi, _mm256_sign_epi8(x_hi, q.hi)), q.s);
          isum[j] = _mm256_add_epi32(isum[j], _mm256_add_epi32(p_lo, p_hi));
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
    for (int j = 0; j < C; ++j) a.y[(t + j) * a.n_out + r + i] = HorizontalSum(acc[i][j]);
  }
}

// ---- driver -------------------------------------------------------------------------------------

constexpr int kVecRows = 4;
constexpr int kRows = 3;
constexpr int kCols = 3;
constexpr int64_t kPanel = 48;

template <template <int, int> class K, int R>
void TileCols(const MatMulArgs& a, int64_t r, int64_t t, int64_t cols) {
  switch (cols) {
    case 1:
      return K<R, 1>::Run(a, r, t);
    case 2:
      return K<R, 2>::Run(a, r, t);
    default:
      return K<R, 3>::Run(a, r, t);
  }
}

template <template <int, int> class K>
void Drive(const MatMulArgs& a, int64_t r0, int64_t r1) {
  if (a.n_tokens == 1) {
    int64_t r = r0;
    for (; r + kVecRows <= r1; r += kVecRows) K<kVecRows, 1>::Run(a, r, 0);
    for (; r < r1; ++r) K<1, 1>::Run(a, r, 0);
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
        TileCols<K, kRows>(a, r, t, std::min<int64_t>(kCols, tp_end - t));
      }
    }
    for (; r < r1; ++r) {
      for (int64_t t = tp; t < tp_end; t += kCols) {
        TileCols<K, 1>(a, r, t, std::min<int64_t>(kCols, tp_end - t));
      }
    }
  }
}

// Prompts of rows up to kMaxUnpackedIn values: each row tile unpacked once per
// token panel by U::Unpack, then U::Tile<C> over it (Drive's order otherwise); the rest is Drive.
template <template <int, int> class K, class U>
void DriveUnpacked(const MatMulArgs& a, int64_t r0, int64_t r1) {
  if (a.n_tokens == 1 || a.n_in > kMaxUnpackedIn) return Drive<K>(a, r0, r1);
  typename U::Rows u;
  for (int64_t tp = 0; tp < a.n_tokens; tp += kPanel) {
    const int64_t tp_end = std::min(a.n_tokens, tp + kPanel);
    int64_t r = r0;
    for (; r + kRows <= r1; r += kRows) {
      SpreadPrefetch next(
          a.w + (r + kRows) * a.row_bytes,
          static_cast<int64_t>(a.row_bytes) * std::min<int64_t>(kRows, r1 - r - kRows),
          (tp_end - tp + kCols - 1) / kCols);
      U::Unpack(a, r, &u);
      for (int64_t t = tp; t < tp_end; t += kCols) {
        next.Next();
        static_assert(kCols == 3);
        switch (std::min<int64_t>(kCols, tp_end - t)) {
          case 1:
            U::template Tile<1>(a, r, t, &u);
            break;
          case 2:
            U::template Tile<2>(a, r, t, &u);
            break;
          default:
            U::template Tile<3>(a, r, t, &u);
        }
      }
    }
    for (; r < r1; ++r) {
      for (int64_t t = tp; t < tp_end; t += kCols) {
        TileCols<K, 1>(a, r, t, std::min<int64_t>(kCols, tp_end - t));
      }
    }
  }
}

struct Q2KUnpack {
  using Rows = UnpackedRowsQ2K<kRows>;
  static void Unpack(const MatMulArgs& a, int64_t r, Rows* u) { UnpackRowsQ2K<kRows>(a, r, u); }
  template <int C>
  static void Tile(const MatMulArgs& a, int64_t r, int64_t t, const Rows* u) {
    TileQ2K<kRows, C, true>(a, r, t, u);
  }
};
struct Q3KUnpack {
  using Rows = UnpackedRowsQ3K<kRows>;
  static void Unpack(const MatMulArgs& a, int64_t r, Rows* u) { UnpackRowsQ3K<kRows>(a, r, u); }
  template <int C>
  static void Tile(const MatMulArgs& a, int64_t r, int64_t t, const Rows* u) {
    TileQ3K<kRows, C, true>(a, r, t, u);
  }
};
struct IQ4XSUnpack {
  using Rows = UnpackedRowsIQ4<kRows>;
  static void Unpack(const MatMulArgs& a, int64_t r, Rows* u) { UnpackRowsIQ4<kRows>(a, r, u); }
  template <int C>
  static void Tile(const MatMulArgs& a, int64_t r, int64_t t, const Rows* u) {
    TileIQ4XS<kRows, C, true>(a, r, t, u);
  }
};

template <int R, int C>
struct Q2KKernel {
  static void Run(const MatMulArgs& a, int64_t r, int64_t t) { TileQ2K<R, C>(a, r, t); }
};
template <int R, int C>
struct Q3KKernel {
  static void Run(const MatMulArgs& a, int64_t r, int64_t t) { TileQ3K<R, C>(a, r, t); }
};
template <int R, int C>
struct IQ4XSKernel {
  static void Run(const MatMulArgs& a, int64_t r, int64_t t) { TileIQ4XS<R, C>(a, r, t); }
};

inline MatMulFn LowBitMatMulX86(GgmlType type) {
  switch (type) {
    case GgmlType::kQ2_K:
      return DriveUnpacked<Q2KKernel, Q2KUnpack>;
    case GgmlType::kQ3_K:
      return DriveUnpacked<Q3KKernel, Q3KUnpack>;
    case GgmlType::kIQ4_XS:
      return DriveUnpacked<IQ4XSKernel, IQ4XSUnpack>;
    default:
      return nullptr;
  }
}

}  // namespace
}  // namespace swarm::kernels::cpu
