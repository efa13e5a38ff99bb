// AVX2 Q5_K products over weights in the row-panel layout (q5k_panels.h): one 32-bit lane per row,
// 8 rows per vector, as Q4_K's (matmul_q4k_panels_avx2.cpp). Each step takes the 5-bit values of
// 8 rows from one vector of the layout and a quarter of another (lo: one and; hi: two shifts, an
// xor and an and) and multiplies them by the same 4 activation bytes (broadcast). The 16-bit pair
// sums of 4 steps add up exactly in 16 bits (at most 4 * 2 * 31 * 127 = 31496), so one vpmaddwd per
// half sub-block applies 8 rows' scales. The 6-bit scales and mins are unpacked, and the fp16
// super-scales converted, once per super-block for 8 rows; the mins term is an integer sum against
// the activations' 16-value sums. Prompts decode a group's values once per panel of tokens
// (DecodeGroup) and run their tiles over them. Every output is one float lane whose instruction
// sequence does not depend on the tile or the token count (the integer sums are exact, so their
// order does not matter).
#include <algorithm>
#include <cstring>

#include "kernels/cpu/kernels_isa.h"
#include "kernels/cpu/panel_driver_avx2.h"
#include "kernels/cpu/q5k_panels.h"
#include "kernels/cpu/simd_avx2.h"

namespace swarm::kernels::cpu::avx2 {
namespace {

static_assert(kQ5KPanelRows == kGroupRows);

constexpr int64_t kGroupBytes = kQ5KPanelRows * int64_t{sizeof(BlockQ5_K)};

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

// The 5-bit values of step k of a half (q5k_panels.h): lo and hi, from the step's vector v and the
// half's q shifted for that step.
inline void StepValues(__m256i v, __m256i q_step, __m256i low5, __m256i* lo, __m256i* hi) {
  *lo = _mm256_and_si256(v, low5);
  *hi = _mm256_and_si256(_mm256_xor_si256(_mm256_srli_epi16(v, 5), q_step), low5);
}

// q of a half shifted for each of its 4 steps.
inline void QSteps(const uint8_t* half, __m256i q_steps[4]) {
  const __m256i q = Load256(half);
  q_steps[0] = _mm256_slli_epi16(q, 3);
  q_steps[1] = _mm256_slli_epi16(q, 1);
  q_steps[2] = _mm256_srli_epi16(q, 1);
  q_steps[3] = _mm256_srli_epi16(q, 3);
}

// Prompts: a group's values decoded once per token panel into lo, hi vectors of each step (64
// bytes per step, 2 KiB per super-block), for rows up to kMaxDecodedIn values; longer ones decode
// per tile. The products are the same instructions on the same values either way.
constexpr int64_t kMaxDecodedIn = 8192;
constexpr int64_t kDecodedBytes = 32 * 64;  // per super-block

void DecodeGroup(const MatMulArgs& a, int64_t g0, uint8_t* out) {
  const __m256i low5 = _mm256_set1_epi8(0x1f);
  const int64_t n_super = a.n_in / kQK_K;
  for (int64_t sb = 0; sb < n_super; ++sb) {
    const uint8_t* q = a.w + g0 * a.row_bytes + sb * kGroupBytes + 128;
    for (int half = 0; half < 8; ++half) {
      __m256i q_steps[4];
      QSteps(q + 160 * half, q_steps);
      for (int k = 0; k < 4; ++k) {
        __m256i lo, hi;
        StepValues(Load256(q + 160 * half + 32 * (1 + k)), q_steps[k], low5, &lo, &hi);
        uint8_t* o = out + sb * kDecodedBytes + 64 * (4 * half + k);
        _mm256_store_si256(reinterpret_cast<__m256i*>(o), lo);
        _mm256_store_si256(reinterpret_cast<__m256i*>(o + 32), hi);
      }
    }
  }
}

struct Token {
  const int8_t* qs;
  const float* d;
  const int16_t* bsum16;
};

// The 8 rows from g0 (a full group) for tokens t .. t + C - 1, and with P > 1 (one token only)
// those of the P - 1 panels after it, their super-blocks interleaved: several streams from memory
// at once keep more lines in flight than one (see the vector-product note in
// matmul_quant_avx2.cpp). Writes the rows in [r0, r1). With `decoded` (DecodeGroup of g0), the
// values come from there rather than the weights.
template <int C, int P = 1, bool kDecoded = false>
void GroupQ5K(const MatMulArgs& a, int64_t g0, int64_t t, int64_t r0, int64_t r1,
              const uint8_t* decoded = nullptr) {
  static_assert(P == 1 || C == 1);
  const uint8_t* bases[P];
  SWARM_UNROLL
  for (int p = 0; p < P; ++p) bases[p] = a.w + (g0 + p * kQ5KPanelRows) * a.row_bytes;
  const int64_t panel_bytes = kQ5KPanelRows * static_cast<int64_t>(a.row_bytes);
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
  const __m256i low5 = _mm256_set1_epi8(0x1f);
  const __m256i bits45 = _mm256_set1_epi8(0x30);
  __m256i spread[4];
  SWARM_UNROLL
  for (int s = 0; s < 4; ++s) spread[s] = SpreadSubBlock(s);
  const int64_t n_super = a.n_in / kQK_K;
  for (int64_t sb = 0; sb < n_super; ++sb) {
    SWARM_UNROLL
    for (int p = 0; p < P; ++p) {
      const uint8_t* group = bases[p] + sb * kGroupBytes;
      const __m256 d = _mm256_cvtph_ps(Load128(group));
      const __m256 dmin = _mm256_cvtph_ps(Load128(group + 16));
      const __m256i nib_sc = Load256(group + 32);
      const __m256i nib_m = Load256(group + 64);
      const __m256i high = Load256(group + 96);
      const __m256i scales[2] = {
          _mm256_or_si256(_mm256_and_si256(nib_sc, low4),
                          _mm256_and_si256(_mm256_slli_epi16(high, 4), bits45)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(nib_sc, 4), low4),
                          _mm256_and_si256(_mm256_slli_epi16(high, 2), bits45))};
      const uint8_t* q = group + 128;
      __m256i isum[C];
      SWARM_UNROLL
      for (int c = 0; c < C; ++c) isum[c] = _mm256_setzero_si256();
      for (int j = 0; j < 4; ++j) {
        const int s_lo = 2 * j, s_hi = 2 * j + 1;
        const __m256i sc_lo = _mm256_shuffle_epi8(scales[s_lo / 4], spread[s_lo % 4]);
        const __m256i sc_hi = _mm256_shuffle_epi8(scales[s_hi / 4], spread[s_hi % 4]);
        SWARM_UNROLL
        for (int h = 0; h < 2; ++h) {
          const uint8_t* half = q + 160 * (2 * j + h);
          __m256i q_steps[4];
          if constexpr (!kDecoded) QSteps(half, q_steps);
          __m256i sum_lo[C], sum_hi[C];
          SWARM_UNROLL
          for (int c = 0; c < C; ++c) sum_lo[c] = sum_hi[c] = _mm256_setzero_si256();
          SWARM_UNROLL
          for (int k = 0; k < 4; ++k) {
            if constexpr (C == 1) {
              // The next tile's group, one of its 22-23 lines per step (see PrefetchLineOf).
              PrefetchLineOf(group + P * panel_bytes, kGroupBytes, 4 * (2 * j + h) + k);
            }
            __m256i lo, hi;
            if constexpr (kDecoded) {
              const uint8_t* dec = decoded + sb * kDecodedBytes + 64 * (4 * (2 * j + h) + k);
              lo = Load256(dec);
              hi = Load256(dec + 32);
            } else {
              StepValues(Load256(half + 32 * (1 + k)), q_steps[k], low5, &lo, &hi);
            }
            SWARM_UNROLL
            for (int c = 0; c < C; ++c) {
              const int8_t* xq = xs[c].qs + kQK_K * sb + 64 * j + 4 * (4 * h + k);
              sum_lo[c] = _mm256_add_epi16(sum_lo[c], _mm256_maddubs_epi16(lo, Broadcast32(xq)));
              sum_hi[c] =
                  _mm256_add_epi16(sum_hi[c], _mm256_maddubs_epi16(hi, Broadcast32(xq + 32)));
            }
          }
          SWARM_UNROLL
          for (int c = 0; c < C; ++c) {
            isum[c] =
                _mm256_add_epi32(isum[c], _mm256_add_epi32(_mm256_madd_epi16(sum_lo[c], sc_lo),
                                                           _mm256_madd_epi16(sum_hi[c], sc_hi)));
          }
        }
      }
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
        acc[p][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[c]), _mm256_mul_ps(d, dx), acc[p][c]);
        acc[p][c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(imin), _mm256_mul_ps(dmin, dx), acc[p][c]);
      }
    }
  }
  SWARM_UNROLL
  for (int p = 0; p < P; ++p) {
    SWARM_UNROLL
    for (int c = 0; c < C; ++c) StoreGroupRows(a, acc[p][c], t + c, g0 + p * kGroupRows, r0, r1);
  }
}

// Tokens per tile of a prompt (over decoded values 2 and 4 measured the same, within noise).
constexpr int kCols = 3;

// One token over the rows in [r0, r1), as DriveOneToken calls it (panel_driver_avx2.h).
struct Q5KGroups {
  const MatMulArgs& a;
  int64_t r0, r1;
  template <int C, int P = 1>
  void Run(int64_t g, int64_t t) const {
    GroupQ5K<C, P>(a, g, t, r0, r1);
  }
};

// Prompts over the full groups in [g_begin, g_end). Its own function, not inlined: with its
// decoded values (64 KiB of stack) in its frame, the vector product ran at 28 GB/s, not 36.7.
__attribute__((noinline)) void PromptQ5K(const MatMulArgs& a, int64_t g_begin, int64_t g_end,
                                         int64_t r0, int64_t r1) {
  alignas(32) uint8_t decoded[kMaxDecodedIn / kQK_K * kDecodedBytes];
  for (int64_t tp = 0; tp < a.n_tokens; tp += kTokenPanel) {
    const int64_t tp_end = std::min(a.n_tokens, tp + kTokenPanel);
    for (int64_t g = g_begin; g < g_end; g += kQ5KPanelRows) {
      const int64_t next_rows = std::min(kQ5KPanelRows, g_end - g - kQ5KPanelRows);
      SpreadPrefetch next(a.w + (g + kQ5KPanelRows) * a.row_bytes,
                          static_cast<int64_t>(a.row_bytes) * next_rows,
                          (tp_end - tp + kCols - 1) / kCols);
      const bool decode = a.n_in <= kMaxDecodedIn;
      if (decode) DecodeGroup(a, g, decoded);
      int64_t t = tp;
      for (; t + kCols <= tp_end; t += kCols) {
        next.Next();
        if (decode) {
          GroupQ5K<kCols, 1, true>(a, g, t, r0, r1, decoded);
        } else {
          GroupQ5K<kCols>(a, g, t, r0, r1);
        }
      }
      for (; t < tp_end; ++t) {
        if (decode) {
          GroupQ5K<1, 1, true>(a, g, t, r0, r1, decoded);
        } else {
          GroupQ5K<1>(a, g, t, r0, r1);
        }
      }
    }
  }
}

}  // namespace

void MatMulQ5_KPanels(const MatMulArgs& a, int64_t r0, int64_t r1) {
  const int64_t full = a.n_out / kGroupRows * kGroupRows;
  const int64_t g_begin = r0 / kGroupRows * kGroupRows;
  const int64_t g_end = std::min(r1, full);
  if (a.n_tokens == 1) {
    DriveOneToken(Q5KGroups{a, r0, r1}, g_begin, g_end);
  } else {
    PromptQ5K(a, g_begin, g_end, r0, r1);
  }
  // Rows past the last full group are GGUF rows.
  if (r1 > full) MatMulQ5_K(a, std::max(r0, full), r1);
}

}  // namespace swarm::kernels::cpu::avx2
