// AVX-512 VNNI matrix products for the quantized weight types against X8 activations (kernels.h).
// Weights are unpacked in registers (never expanded in memory) and multiplied with integer dot
// products: vpdpbusd for Q8_0/Q4_0 (unsigned weights, the offset removed by starting the
// accumulator at -offset * sum(x)), vpmaddubsw + vpdpwssd for the K-quants (the 16-bit pair sums
// times the sub-block scales, accumulated in 32 bits over a super-block). Float work happens once
// per 64 values (Q8_0/Q4_0, whose activations have a scale per 32) or per 256 (K-quants).
//
// Every output y[t, r] is accumulated by one fixed sequence of instructions whatever the tile
// (R rows x C tokens) it is computed in, so results do not depend on threads or batching.
#include <algorithm>
#include <cstring>

#include "kernels/cpu/kernels_isa.h"
#include "kernels/cpu/simd_avx512.h"  // first: brings in immintrin.h

namespace swarm::kernels::cpu::avx512 {
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

__m512i Load512(const void* p) { return _mm512_loadu_si512(p); }

// A vector product (one token) streams its weights from memory: fetch ahead of the reads.
template <int C>
inline void PrefetchIfStreaming(const uint8_t* p, int64_t bytes) {
  if constexpr (C == 1) PrefetchAhead(p, bytes);
}
__m256i Load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
__m128i Load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

// ---- Q8_0 and Q4_0: two 32-blocks per step --------------------------------------------------

// The scales of blocks b..b+15 in lane order. (Scalar loads: a gather is slower here, and stalls
// the stream of misses when the weights come from memory.)
struct ScalarLaneScales {
  template <class W>
  __m512 Load(const uint8_t* b) const {
    alignas(32) uint16_t h[16];
    SWARM_UNROLL
    for (int lane = 0; lane < 16; ++lane) {
      h[lane] = LoadU16(b + BlockOfLane(W::kLaneOrder, lane) * W::kBlockBytes);
    }
    return _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(h)));
  }
};

// Q4_0's 16 blocks span 288 bytes: the scales are picked out of the group's vectors with dword
// permutes instead of 16 scalar loads (whose stores to the stack and reload as one vector held
// the kernel at 42-49 GB/s in L2, against 55 without scales; word permutes were no faster).
// Block b's scale is the low (b even) or high (b odd) half of dword 9b / 2 of the group.
class Q4_0LaneScales {
 public:
  Q4_0LaneScales() {
    alignas(64) int32_t lo[16] = {}, hi[16] = {}, shift[16] = {};
    for (int lane = 0; lane < 16; ++lane) {
      const int block = BlockOfLane(kX8LanesQ4_0, lane);
      const int dword = 9 * block / 2;
      shift[lane] = block % 2 == 0 ? 0 : 16;
      if (dword < 32) {
        lo[lane] = dword;
      } else if (dword < 64) {
        hi[lane] = dword - 32;
        from_hi_ |= static_cast<__mmask16>(1u << lane);
      }
    }
    lo_ = _mm512_load_si512(lo);
    hi_ = _mm512_load_si512(hi);
    shift_ = _mm512_load_si512(shift);
  }
  template <class W>
  __m512 Load(const uint8_t* b) const {
    // The one scale past dword 63: block 15's, in lane 15, the high half of dword 67.
    static_assert(BlockOfLane(kX8LanesQ4_0, 15) == 15 && 9 * 15 / 2 == 67);
    const __m512i lo = _mm512_permutex2var_epi32(Load512(b), lo_, Load512(b + 64));
    const __m512i hi = _mm512_permutex2var_epi32(Load512(b + 128), hi_, Load512(b + 192));
    __m512i dwords = _mm512_mask_mov_epi32(lo, from_hi_, hi);
    dwords = _mm512_mask_broadcastd_epi32(dwords, 0x8000, Load128(b + 4 * 67));
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srlv_epi32(dwords, shift_)));
  }

 private:
  __m512i lo_, hi_, shift_;
  __mmask16 from_hi_ = 0;
};

struct Q8_0Weights {
  static constexpr int64_t kBlockBytes = sizeof(BlockQ8_0);
  static constexpr int kOffsetShift = 7;  // stored as w + 128
  // Blocks b and b+1 as 64 unsigned bytes.
  static __m512i LoadPair(const uint8_t* b) {
    const __m512i z =
        _mm512_inserti64x4(_mm512_castsi256_si512(Load256(b + 2)), Load256(b + 36), 1);
    return _mm512_xor_si512(z, _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  // Block b alone in the low half; the high half's bytes meet zero activations.
  static __m512i LoadSingle(const uint8_t* b) {
    return _mm512_xor_si512(_mm512_zextsi256_si512(Load256(b + 2)),
                            _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  // Blocks b..b+15 transposed to one block per 32-bit lane (lane L holds block
  // BlockOfLane(kX8LanesQ8_0, L)): w[c] holds bytes 4c..4c+3 of each block, as unsigned w + 128.
  // A 16 x 8 transpose of 32-bit words in three stages of in-lane unpacks and lane shuffles.
  static void LoadLanes(const uint8_t* b, __m512i w[8]) {
    __m512i z[8];  // z[p]: blocks 2p and 2p+1
    SWARM_UNROLL
    for (int p = 0; p < 8; ++p) {
      z[p] = _mm512_inserti64x4(_mm512_castsi256_si512(Load256(b + 2 * p * kBlockBytes + 2)),
                                Load256(b + (2 * p + 1) * kBlockBytes + 2), 1);
    }
    __m512i v[8];  // v[4h + c]: chunks c and c+4 of blocks 8h..8h+7
    SWARM_UNROLL
    for (int h = 0; h < 2; ++h) {
      const __m512i lo01 = _mm512_unpacklo_epi32(z[4 * h], z[4 * h + 1]);
      const __m512i hi01 = _mm512_unpackhi_epi32(z[4 * h], z[4 * h + 1]);
      const __m512i lo23 = _mm512_unpacklo_epi32(z[4 * h + 2], z[4 * h + 3]);
      const __m512i hi23 = _mm512_unpackhi_epi32(z[4 * h + 2], z[4 * h + 3]);
      v[4 * h + 0] = _mm512_unpacklo_epi64(lo01, lo23);
      v[4 * h + 1] = _mm512_unpackhi_epi64(lo01, lo23);
      v[4 * h + 2] = _mm512_unpacklo_epi64(hi01, hi23);
      v[4 * h + 3] = _mm512_unpackhi_epi64(hi01, hi23);
    }
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
    SWARM_UNROLL
    for (int c = 0; c < 4; ++c) {
      w[c] = _mm512_xor_si512(_mm512_shuffle_i64x2(v[c], v[4 + c], _MM_SHUFFLE(2, 0, 2, 0)), bias);
      w[c + 4] =
          _mm512_xor_si512(_mm512_shuffle_i64x2(v[c], v[4 + c], _MM_SHUFFLE(3, 1, 3, 1)), bias);
    }
  }
  static constexpr int kLaneOrder = kX8LanesQ8_0;
  using LaneScales = ScalarLaneScales;
};

struct Q4_0Weights {
  static constexpr int64_t kBlockBytes = sizeof(BlockQ4_0);
  static constexpr int kOffsetShift = 3;  // nibbles are w + 8
  static __m512i LoadPair(const uint8_t* b) {
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(Load128(b + 2)),
                                              Load128(b + 2 + kBlockBytes), 1);
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
    z = _mm512_and_si512(z, _mm512_set1_epi8(0x0f));
    // [a_lo, b_lo, a_hi, b_hi] -> [a_lo, a_hi, b_lo, b_hi]: elements in order.
    return _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
  }
  static __m512i LoadSingle(const uint8_t* b) {
    const __m128i v = Load128(b + 2);
    const __m256i y = _mm256_and_si256(
        _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1),
        _mm256_set1_epi8(0x0f));
    return _mm512_zextsi256_si512(y);
  }
  // Blocks b..b+15 transposed to one block per 32-bit lane (lane L holds block
  // BlockOfLane(kX8LanesQ4_0, L)): w[c] holds values 4c..4c+3 of each block (c < 4: low nibbles
  // of bytes 4c.., c >= 4: high nibbles of bytes 4(c-4)..). A 16 x 4 transpose of 32-bit words.
  static void LoadLanes(const uint8_t* b, __m512i w[8]) {
    __m512i y[4];  // y[m]: blocks 4m..4m+3, one per 128-bit lane
    SWARM_UNROLL
    for (int m = 0; m < 4; ++m) {
      const uint8_t* q = b + 4 * m * kBlockBytes + 2;
      __m512i v = _mm512_castsi128_si512(Load128(q));
      v = _mm512_inserti32x4(v, Load128(q + kBlockBytes), 1);
      v = _mm512_inserti32x4(v, Load128(q + 2 * kBlockBytes), 2);
      y[m] = _mm512_inserti32x4(v, Load128(q + 3 * kBlockBytes), 3);
    }
    const __m512i lo01 = _mm512_unpacklo_epi32(y[0], y[1]);
    const __m512i hi01 = _mm512_unpackhi_epi32(y[0], y[1]);
    const __m512i lo23 = _mm512_unpacklo_epi32(y[2], y[3]);
    const __m512i hi23 = _mm512_unpackhi_epi32(y[2], y[3]);
    const __m512i d[4] = {_mm512_unpacklo_epi64(lo01, lo23), _mm512_unpackhi_epi64(lo01, lo23),
                          _mm512_unpacklo_epi64(hi01, hi23), _mm512_unpackhi_epi64(hi01, hi23)};
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    SWARM_UNROLL
    for (int c = 0; c < 4; ++c) {
      w[c] = _mm512_and_si512(d[c], low4);
      w[c + 4] = _mm512_and_si512(_mm512_srli_epi16(d[c], 4), low4);
    }
  }
  // Q4_0LaneScales has the order built in; ScalarLaneScales, which reads kLaneOrder, is not used.
  [[maybe_unused]] static constexpr int kLaneOrder = kX8LanesQ4_0;
  using LaneScales = Q4_0LaneScales;
};

// Q4_0 in the CPU backend's lane layout (lane_layout.h): a group's scales and pieces are already in
// lane order, so a group costs four loads and a scale conversion instead of shuffles. Blocks past
// the last full group are GGUF blocks, read as Q4_0Weights reads them.
struct Q4_0LanesWeights : Q4_0Weights {
  static void LoadLanes(const uint8_t* b, __m512i w[8]) {
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    SWARM_UNROLL
    for (int c = 0; c < 4; ++c) {
      const __m512i d = Load512(b + 32 + 64 * c);
      w[c] = _mm512_and_si512(d, low4);
      w[c + 4] = _mm512_and_si512(_mm512_srli_epi16(d, 4), low4);
    }
  }
  struct LaneScales {
    template <class W>
    __m512 Load(const uint8_t* b) const {
      return _mm512_cvtph_ps(Load256(b));
    }
  };
};

// Q8_0 in the lane layout: as Q4_0LanesWeights, eight pieces per block, the same bytes (and so the
// same bits) the transpose of Q8_0Weights::LoadLanes gives.
struct Q8_0LanesWeights : Q8_0Weights {
  static void LoadLanes(const uint8_t* b, __m512i w[8]) {
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
    SWARM_UNROLL
    for (int c = 0; c < 8; ++c) w[c] = _mm512_xor_si512(Load512(b + 32 + 64 * c), bias);
  }
  struct LaneScales {
    template <class W>
    __m512 Load(const uint8_t* b) const {
      return _mm512_cvtph_ps(Load256(b));
    }
  };
};

// Scales of blocks a and b as [da x 8, db x 8].
__m512 PairScale(uint16_t da, uint16_t db) {
  return _mm512_cvtph_ps(_mm256_set_m128i(_mm_set1_epi16(static_cast<short>(db)),
                                          _mm_set1_epi16(static_cast<short>(da))));
}

template <class W, int R, int C>
void TileQ32(const MatMulArgs& a, const X8Layout& l, int64_t r, int64_t t) {
  const uint8_t* rows[R];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) rows[i] = a.w + (r + i) * a.row_bytes;
  X8Token xs[C];
  SWARM_UNROLL
  for (int j = 0; j < C; ++j) xs[j] = ViewToken(a, l, t + j);
  __m512 acc[R][C];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) acc[i][j] = _mm512_setzero_ps();
  }
  const int64_t n_blocks = a.n_in / 32;
  const typename W::LaneScales lane_scales;
  auto step = [&](int64_t b, bool pair) {
    __m512i xv[C];
    __m512i corr[C];
    __m512 dx[C];
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) {
      xv[j] = Load512(xs[j].qs + 32 * b);
      // Lanes 0 and 8 start at -offset * sum(x) of blocks b and b+1 (0 past the end).
      const __m512i sums = _mm512_maskz_expand_epi32(
          0x0101, _mm512_castsi128_si512(
                      _mm_loadl_epi64(reinterpret_cast<const __m128i*>(xs[j].bsum32 + b))));
      corr[j] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sums, W::kOffsetShift));
      // Activation scales of blocks b and b+1 (0 past the end).
      dx[j] = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(xs[j].d[b])),
                                 _mm256_set1_ps(xs[j].d[b + 1]), 1);
    }
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      const uint8_t* blk = rows[i] + b * W::kBlockBytes;
      PrefetchIfStreaming<C>(blk, (pair ? 2 : 1) * W::kBlockBytes);
      const __m512i wv = pair ? W::LoadPair(blk) : W::LoadSingle(blk);
      const __m512 dw = PairScale(LoadU16(blk), pair ? LoadU16(blk + W::kBlockBytes) : uint16_t{0});
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) {
        const __m512i s = _mm512_dpbusd_epi32(corr[j], wv, xv[j]);
        acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, dx[j]), acc[i][j]);
      }
    }
  };
  // Full 512-value groups: one block per 32-bit lane, so one float conversion per 16 blocks.
  for (int64_t g = 0; g < l.lane_groups; ++g) {
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      const uint8_t* blk = rows[i] + 16 * g * W::kBlockBytes;
      PrefetchIfStreaming<C>(blk, 16 * W::kBlockBytes);
      __m512i wv[8];
      W::LoadLanes(blk, wv);
      const __m512 dw = lane_scales.template Load<W>(blk);
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) {
        const uint8_t* xl = a.x + (t + j) * a.x_stride + l.lanes_offset + g * kX8LaneGroupBytes;
        // Two chains of dot products (integer sums: exact in any order); the first starts at
        // -offset * sum(x).
        __m512i s0 = Load512(xl + 9 * 64);
        __m512i s1 = _mm512_setzero_si512();
        SWARM_UNROLL
        for (int c = 0; c < 8; c += 2) {
          s0 = _mm512_dpbusd_epi32(s0, wv[c], Load512(xl + 64 * c));
          s1 = _mm512_dpbusd_epi32(s1, wv[c + 1], Load512(xl + 64 * (c + 1)));
        }
        const __m512i s = _mm512_add_epi32(s0, s1);
        acc[i][j] = _mm512_fmadd_ps(
            _mm512_cvtepi32_ps(s),
            _mm512_mul_ps(dw, _mm512_loadu_ps(reinterpret_cast<const float*>(xl + 8 * 64))),
            acc[i][j]);
      }
    }
  }
  int64_t b = 16 * l.lane_groups;
  for (; b + 2 <= n_blocks; b += 2) step(b, true);
  if (b < n_blocks) step(b, false);
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) a.y[(t + j) * a.n_out + r + i] = Hsum(acc[i][j]);
  }
}

// ---- Q4_K -----------------------------------------------------------------------------------

// The 8 6-bit scales (bytes 0-7) and 8 6-bit mins (bytes 8-15) of a Q4_K super-block, unpacked
// as ggml's utmp does, in vector registers (the scalar unpacking took ~28% of the kernel's time).
// In 32-bit words u0, u1, u2 of the packed 12 bytes: scales = [u0 & 3f.., (u2 & 0f..) | ((u0 >> 2)
// & 30..)], mins = [u1 & 3f.., ((u2 >> 4) & 0f..) | ((u1 >> 2) & 30..)].
__m128i UnpackScalesQ4K(const BlockQ4_K* blk) {
  // 16 bytes from the scales (the 4 past them are quants of the same block).
  const __m128i u = Load128(blk->scales);
  const __m128i low = _mm_and_si128(u, _mm_set1_epi8(0x3f));  // [u0 & 3f, u1 & 3f, ..]
  const __m128i u2 =
      _mm_srlv_epi32(_mm_shuffle_epi32(u, _MM_SHUFFLE(2, 2, 2, 2)), _mm_setr_epi32(0, 4, 0, 0));
  const __m128i high = _mm_or_si128(_mm_and_si128(u2, _mm_set1_epi8(0x0f)),
                                    _mm_and_si128(_mm_srli_epi32(u, 2), _mm_set1_epi8(0x30)));
  return _mm_unpacklo_epi32(low, high);  // [scales lo, scales hi, mins lo, mins hi]
}

// Steps 2h and 2h+1 (64 values each, sub-blocks 4h..4h+3) are packed into one vector of 16-bit
// sums: 128-bit lane q holds 4 sums of step 2h's lane q (sub-block 4h + q / 2), then 4 of step
// 2h+1's (sub-block 4h + 2 + q / 2). A byte shuffle of the 8 scale bytes (broadcast to every
// 128-bit lane) puts each sum's sub-block scale in the low byte of its 16-bit lane.
__m512i PairShuffleQ4K(int h) {
  alignas(64) int8_t ctrl[64];
  for (int i = 0; i < 64; ++i) {
    const int q = i / 16, word = (i % 16) / 2;
    const int sub = 4 * h + (word < 4 ? 0 : 2) + q / 2;
    ctrl[i] = i % 2 == 0 ? static_cast<int8_t>(sub) : static_cast<int8_t>(-128);
  }
  return _mm512_load_si512(ctrl);
}

template <int R, int C>
void TileQ4K(const MatMulArgs& a, const X8Layout& l, int64_t r, int64_t t) {
  const uint8_t* rows[R];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) rows[i] = a.w + (r + i) * a.row_bytes;
  X8Token xs[C];
  SWARM_UNROLL
  for (int j = 0; j < C; ++j) xs[j] = ViewToken(a, l, t + j);
  __m512 acc[R][C];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) acc[i][j] = _mm512_setzero_ps();
  }
  const __m512i pair_idx[2] = {PairShuffleQ4K(0), PairShuffleQ4K(1)};
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  const int64_t n_super = a.n_in / kQK_K;
  for (int64_t sb = 0; sb < n_super; ++sb) {
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      const auto* blk = reinterpret_cast<const BlockQ4_K*>(rows[i]) + sb;
      PrefetchIfStreaming<C>(reinterpret_cast<const uint8_t*>(blk), sizeof(BlockQ4_K));
      const __m128i scales_mins = UnpackScalesQ4K(blk);
      const __m512i sc8v = _mm512_broadcastq_epi64(scales_mins);
      const float d = HalfToFloat1(blk->d);
      const __m256 mins = _mm256_mul_ps(
          _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(scales_mins, scales_mins))),
          _mm256_set1_ps(HalfToFloat1(blk->dmin)));
      __m512i isum[C];
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) isum[j] = _mm512_setzero_si512();
      __m512i wq[4];
      SWARM_UNROLL
      for (int s = 0; s < 4; ++s) {
        const __m256i v = Load256(blk->qs + 32 * s);
        wq[s] = _mm512_and_si512(
            _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1), low4);
      }
      SWARM_UNROLL
      for (int h = 0; h < 2; ++h) {
        const __m512i scs = _mm512_shuffle_epi8(sc8v, pair_idx[h]);
        SWARM_UNROLL
        for (int j = 0; j < C; ++j) {
          // Sums of 4 products (at most 4 * 15 * 128: exact in 16 bits), two steps packed into
          // one vector of 16-bit sums, then times their sub-blocks' scales.
          const __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[2 * h],
                                                 Load512(xs[j].qs + kQK_K * sb + 128 * h));
          const __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[2 * h + 1],
                                                 Load512(xs[j].qs + kQK_K * sb + 128 * h + 64));
          isum[j] = _mm512_dpwssd_epi32(isum[j], _mm512_packs_epi32(p0, p1), scs);
        }
      }
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) {
        acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[j]), _mm512_set1_ps(d * xs[j].d[sb]),
                                    acc[i][j]);
        // The mins term, sum over sub-blocks of dmin * m * d_x * sum(x), in lanes 0-7.
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

// ---- Q6_K -----------------------------------------------------------------------------------

// Step s covers 16-value groups 4s..4s+3: 16-bit lane l takes group 4s + l / 8, that is 128-bit
// lane q takes group 4s + q. A byte shuffle of the 16 int8 scales (broadcast to every 128-bit lane)
// puts scale 4s + q in the high byte of each 16-bit lane; an arithmetic shift right by 8 then
// sign-extends it. (A vpermw per step instead cost ~15% of the kernel's rate in L2 on Zen 5.)
__m512i StepShuffleQ6K(int s) {
  alignas(64) int8_t ctrl[64];
  for (int i = 0; i < 64; ++i) ctrl[i] = static_cast<int8_t>(4 * s + i / 16);
  return _mm512_load_si512(ctrl);
}

template <int R, int C>
void TileQ6K(const MatMulArgs& a, const X8Layout& l, int64_t r, int64_t t) {
  const uint8_t* rows[R];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) rows[i] = a.w + (r + i) * a.row_bytes;
  X8Token xs[C];
  SWARM_UNROLL
  for (int j = 0; j < C; ++j) xs[j] = ViewToken(a, l, t + j);
  __m512 acc[R][C];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) acc[i][j] = _mm512_setzero_ps();
  }
  const __m512i idx[4] = {StepShuffleQ6K(0), StepShuffleQ6K(1), StepShuffleQ6K(2),
                          StepShuffleQ6K(3)};
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  const __m512i low2 = _mm512_set1_epi8(0x03);
  const int64_t n_super = a.n_in / kQK_K;
  for (int64_t sb = 0; sb < n_super; ++sb) {
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      const auto* blk = reinterpret_cast<const BlockQ6_K*>(rows[i]) + sb;
      PrefetchIfStreaming<C>(reinterpret_cast<const uint8_t*>(blk), sizeof(BlockQ6_K));
      const __m256i sc16 = _mm256_cvtepi8_epi16(Load128(blk->scales));
      const __m512i sc8v = _mm512_broadcast_i32x4(Load128(blk->scales));
      // The quants are stored as q + 32: start each sum at -32 * sum over groups of scale * sum(x).
      const __m256i neg32 = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc16, 5));
      const float d = HalfToFloat1(blk->d);
      __m512i isum[C];
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) {
        isum[j] = _mm512_zextsi256_si512(_mm256_madd_epi16(neg32, Load256(xs[j].bsum16 + 16 * sb)));
      }
      SWARM_UNROLL
      for (int h = 0; h < 2; ++h) {
        const __m512i ql = Load512(blk->ql + 64 * h);
        const __m256i qh = Load256(blk->qh + 32 * h);
        const __m512i qhz =
            _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
        const __m512i u[2] = {
            _mm512_or_si512(_mm512_and_si512(ql, low4),
                            _mm512_slli_epi16(_mm512_and_si512(qhz, low2), 4)),
            _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16(ql, 4), low4),
                _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qhz, 4), low2), 4))};
        SWARM_UNROLL
        for (int half = 0; half < 2; ++half) {
          const int s = 2 * h + half;
          const __m512i scs = _mm512_srai_epi16(_mm512_shuffle_epi8(sc8v, idx[s]), 8);
          SWARM_UNROLL
          for (int j = 0; j < C; ++j) {
            const __m512i p =
                _mm512_maddubs_epi16(u[half], Load512(xs[j].qs + kQK_K * sb + 64 * s));
            isum[j] = _mm512_dpwssd_epi32(isum[j], p, scs);
          }
        }
      }
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) {
        acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[j]), _mm512_set1_ps(d * xs[j].d[sb]),
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

// ---- drivers --------------------------------------------------------------------------------

constexpr int64_t kPanel = 48;  // tokens whose activations stay cache-resident

// K::Run<R, cols> for a run-time cols in [1, C].
template <class K, int R, int C>
void TileCols(const MatMulArgs& a, const X8Layout& l, int64_t r, int64_t t, int64_t cols) {
  if constexpr (C > 1) {
    if (cols < C) return TileCols<K, R, C - 1>(a, l, r, t, cols);
  }
  K::template Run<R, C>(a, l, r, t);
}

template <class K>
void Drive(const MatMulArgs& a, int64_t r0, int64_t r1) {
  const X8Layout& l = a.x8;
  if (a.n_tokens == 1) {
    for (int64_t r = r0; r < r1; ++r) K::template Run<1, 1>(a, l, r, 0);
    return;
  }
  constexpr int kRows = K::kRows, kCols = K::kCols;
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
        TileCols<K, kRows, kCols>(a, l, r, t, std::min<int64_t>(kCols, tp_end - t));
      }
    }
    for (; r < r1; ++r) {
      for (int64_t t = tp; t < tp_end; t += kCols) {
        TileCols<K, 1, kCols>(a, l, r, t, std::min<int64_t>(kCols, tp_end - t));
      }
    }
  }
}

// Register tiles of the matrix-matrix products (rows x tokens), measured best on Zen 5.
// A matrix-vector product (Drive, one token) streams one row at a time for every type, a
// single sequential stream that the hardware prefetcher follows best (measured on Zen 5: Q8_0
// 75-80% of a plain read's rate per core against 65% for 8 interleaved rows; Q6_K 85-86% of a
// plain read of the weights against 79-82%, Q4_K 88-90% against 78-88%, 2 threads).
template <class W>
struct Q32Kernel {
  static constexpr int kRows = 3, kCols = 4;
  template <int R, int C>
  static void Run(const MatMulArgs& a, const X8Layout& l, int64_t r, int64_t t) {
    TileQ32<W, R, C>(a, l, r, t);
  }
};
struct Q4KKernel {
  static constexpr int kRows = 6, kCols = 4;
  template <int R, int C>
  static void Run(const MatMulArgs& a, const X8Layout& l, int64_t r, int64_t t) {
    TileQ4K<R, C>(a, l, r, t);
  }
};
struct Q6KKernel {
  static constexpr int kRows = 4, kCols = 4;
  template <int R, int C>
  static void Run(const MatMulArgs& a, const X8Layout& l, int64_t r, int64_t t) {
    TileQ6K<R, C>(a, l, r, t);
  }
};

}  // namespace

void MatMulQ8_0(const MatMulArgs& a, int64_t r0, int64_t r1) {
  Drive<Q32Kernel<Q8_0Weights>>(a, r0, r1);
}
void MatMulQ4_0(const MatMulArgs& a, int64_t r0, int64_t r1) {
  Drive<Q32Kernel<Q4_0Weights>>(a, r0, r1);
}
void MatMulQ4_0Lanes(const MatMulArgs& a, int64_t r0, int64_t r1) {
  Drive<Q32Kernel<Q4_0LanesWeights>>(a, r0, r1);
}
void MatMulQ8_0Lanes(const MatMulArgs& a, int64_t r0, int64_t r1) {
  Drive<Q32Kernel<Q8_0LanesWeights>>(a, r0, r1);
}
void MatMulQ4_K(const MatMulArgs& a, int64_t r0, int64_t r1) { Drive<Q4KKernel>(a, r0, r1); }
void MatMulQ6_K(const MatMulArgs& a, int64_t r0, int64_t r1) { Drive<Q6KKernel>(a, r0, r1); }

}  // namespace swarm::kernels::cpu::avx512
