// AVX2 Q3_K products over weights in the row-panel layout (q3k_panels.h): one 32-bit lane per row,
// 8 rows per vector. Each step of a super-block builds, from 3 vectors (12 bytes per row), the
// 3-bit quants of 8 quant groups of two sub-blocks (2j, 2j + 1) for 8 rows with 19 shifts and
// masks, and multiplies each by 4 broadcast activation bytes; the activations are first rearranged
// once per call so that those 4 bytes are the group's 2 + 2 positions. A quant group's 16-bit pair
// sums then hold one sub-block each, 8 groups add up exactly in 16 bits (at most 8 * 2 * 7 * 128
// = 14336, less 4 times the activations' 16-value sums for the offset of 4, at most 8128), and one
// vpmaddwd applies both sub-blocks' scales of 8 rows. The float step (one FMA) serves 8 rows per
// super-block. Every output is one float lane whose instruction sequence does not depend on the
// tile or the token count (the integer sums are exact, so their order does not matter).
#include <algorithm>
#include <cstring>
#include <memory>

#include "kernels/block_lowbit.h"
#include "kernels/cpu/kernels_isa.h"
#include "kernels/cpu/matmul_lowbit.h"
#include "kernels/cpu/panel_driver_avx2.h"
#include "kernels/cpu/q3k_panels.h"
#include "kernels/cpu/simd_avx2.h"

namespace swarm::kernels::cpu::avx2 {
namespace {

static_assert(kQ3KPanelRows == kGroupRows);

constexpr int64_t kGroupBytes = kQ3KPanelRows * int64_t{sizeof(BlockQ3_K)};
constexpr int64_t kScalesOffset = 2 * kQ3KPanelRows;
constexpr int64_t kQuantsOffset = kScalesOffset + 3 * 32;

__m256i Load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
__m128i Load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
__m256i Broadcast32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm256_set1_epi32(v);
}

// One token's activations as the kernel reads them: xp[32j + 4e + k] = x[32j + 2e + (k & 1) +
// 16 * (k >> 1)] (quant group e of pair j, q3k_panels.h), b4[s] = 4 * (sum of sub-block s's 16
// values), and the per-super-block d of the X8 layout.
struct Token {
  const int8_t* xp;
  const int16_t* b4;
  const float* d;
};

// Bytes per token of the rearranged activations: n_in int8 and n_in / 16 int16.
int64_t TokenBytes(int64_t n_in) { return n_in + n_in / 8; }

Token Rearrange(const MatMulArgs& a, int64_t t, uint8_t* dst) {
  const uint8_t* x = a.x + t * a.x_stride;
  auto* xp = reinterpret_cast<int8_t*>(dst);
  auto* b4 = reinterpret_cast<int16_t*>(dst + a.n_in);
  for (int64_t c = 0; c < a.n_in; c += 32) {
    const __m128i lo = Load128(x + c);
    const __m128i hi = Load128(x + c + 16);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(xp + c), _mm_unpacklo_epi16(lo, hi));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(xp + c + 16), _mm_unpackhi_epi16(lo, hi));
  }
  const uint8_t* bsum16 = x + a.x8.bsum16_offset;
  for (int64_t s = 0; s < a.n_in / 16; s += 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(b4 + s),
                        _mm256_slli_epi16(Load256(bsum16 + 2 * s), 2));
  }
  return {xp, b4, reinterpret_cast<const float*>(x + a.x8.d_offset)};
}

// Pair j's scales of 8 rows, (scale 2j, scale 2j + 1) in each 32-bit lane, from the 3 vectors of
// scale words at s. Always inlined, so that j is a constant once the caller's loop is unrolled.
__attribute__((always_inline)) inline __m256i PairScales(const uint8_t* s, int j) {
  const __m256i low4 = _mm256_set1_epi16(0x3c00);
  if (j < 6) {
    const __m256i v = Load256(s + 32 * (j / 2));
    return _mm256_srai_epi16(j % 2 == 0 ? v : _mm256_slli_epi16(v, 6), 10);
  }
  const __m256i v2 = Load256(s + 64);
  const __m256i high2 = j == 6 ? _mm256_slli_epi16(v2, 14)
                               : _mm256_and_si256(_mm256_slli_epi16(v2, 12),
                                                  _mm256_set1_epi16(static_cast<int16_t>(0xc000)));
  return _mm256_srai_epi16(
      _mm256_or_si256(high2,
                      _mm256_and_si256(_mm256_slli_epi16(Load256(s + 32 * (j - 6)), 10), low4)),
      10);
}

// Quant group e (0..7) of a pair of 8 rows, as bytes 0..7, from the pair's 3 vectors at q.
__attribute__((always_inline)) inline __m256i Quants(const uint8_t* q, int e, __m256i m7,
                                                     __m256i m3, __m256i m4) {
  if (e < 6) {
    const __m256i v = Load256(q + 32 * (e / 2));
    return _mm256_and_si256(e % 2 == 0 ? v : _mm256_srli_epi16(v, 3), m7);
  }
  const __m256i low2 = _mm256_and_si256(_mm256_srli_epi16(Load256(q + 32 * (e - 6)), 6), m3);
  const __m256i high = _mm256_and_si256(_mm256_srli_epi16(Load256(q + 64), e == 6 ? 4 : 5), m4);
  return _mm256_or_si256(low2, high);
}

// The 8 rows from g0 (a full group) for tokens xs[0 .. C - 1] (outputs at token t ..), and with
// P > 1 (one token only) those of the P - 1 panels after it, their super-blocks interleaved (see
// kVecPanels). Writes the rows in [r0, r1).
template <int C, int P = 1>
void GroupQ3K(const MatMulArgs& a, const Token* xs, int64_t g0, int64_t t, int64_t r0, int64_t r1) {
  static_assert(P == 1 || C == 1);
  // Computed as blocks of 2 panels (matvec_bench --isa avx2, in L2: 4 panels at once spill,
  // 25-26 GB/s; blocks of 2, 26.6-27.3; 2 streams only, 27-28 in L2 but 0.84-0.94 of a plain
  // read from memory against 0.93-0.97).
  constexpr int kBlock = P < 2 ? P : 2;
  static_assert(P % kBlock == 0);
  const uint8_t* bases[P];
  SWARM_UNROLL
  for (int panel = 0; panel < P; ++panel)
    bases[panel] = a.w + (g0 + panel * kQ3KPanelRows) * a.row_bytes;
  const int64_t panel_bytes = kQ3KPanelRows * static_cast<int64_t>(a.row_bytes);
  __m256 acc[P][C];
  SWARM_UNROLL
  for (int panel = 0; panel < P; ++panel) {
    SWARM_UNROLL
    for (int c = 0; c < C; ++c) acc[panel][c] = _mm256_setzero_ps();
  }
  const __m256i m7 = _mm256_set1_epi8(7);
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m256i m4 = _mm256_set1_epi8(4);
  const int64_t n_super = a.n_in / kQK_K;
  for (int64_t sb = 0; sb < n_super; ++sb) {
    const uint8_t* groups[P];
    SWARM_UNROLL
    for (int panel = 0; panel < P; ++panel) {
      groups[panel] = bases[panel] + sb * kGroupBytes;
    }
    // Panels in blocks of kBlock, each block's panels innermost: each broadcast activation serves
    // kBlock panels (and C tokens) at once, and a block's sums stay in registers.
    SWARM_UNROLL
    for (int p0 = 0; p0 < P; p0 += kBlock) {
      // Hidden from the optimizer, so that it loads a block's broadcasts again rather than keeping
      // (spilling) the previous block's.
      const int8_t* xp[C];
      SWARM_UNROLL
      for (int c = 0; c < C; ++c) {
        xp[c] = xs[c].xp;
        asm("" : "+r"(xp[c]));
      }
      __m256i isum[kBlock][C];
      SWARM_UNROLL
      for (int j = 0; j < 8; ++j) {
        __m256i p[kBlock][C];
        SWARM_UNROLL
        for (int e = 0; e < 8; ++e) {
          __m256i xb[C];
          SWARM_UNROLL
          for (int c = 0; c < C; ++c) {
            xb[c] = Broadcast32(xp[c] + kQK_K * sb + 32 * j + 4 * e);
          }
          SWARM_UNROLL
          for (int k = 0; k < kBlock; ++k) {
            const uint8_t* q = groups[p0 + k] + kQuantsOffset + 96 * j;
            if constexpr (C == 1) {
              // The next tile's group, 2 of its 14-15 lines per pair (see PrefetchLineOf).
              if (e < 2) PrefetchLineOf(groups[p0 + k] + P * panel_bytes, kGroupBytes, 2 * j + e);
            }
            const __m256i w = Quants(q, e, m7, m3, m4);
            SWARM_UNROLL
            for (int c = 0; c < C; ++c) {
              const __m256i prod = _mm256_maddubs_epi16(w, xb[c]);
              p[k][c] = e == 0 ? prod : _mm256_add_epi16(p[k][c], prod);
            }
          }
        }
        __m256i b4[C];
        SWARM_UNROLL
        for (int c = 0; c < C; ++c) b4[c] = Broadcast32(xs[c].b4 + 16 * sb + 2 * j);
        SWARM_UNROLL
        for (int k = 0; k < kBlock; ++k) {
          const __m256i sc = PairScales(groups[p0 + k] + kScalesOffset, j);
          SWARM_UNROLL
          for (int c = 0; c < C; ++c) {
            // The quants are w - 4: less 4 times each sub-block's activation sum.
            const __m256i prod = _mm256_madd_epi16(_mm256_sub_epi16(p[k][c], b4[c]), sc);
            isum[k][c] = j == 0 ? prod : _mm256_add_epi32(isum[k][c], prod);
          }
        }
      }
      SWARM_UNROLL
      for (int k = 0; k < kBlock; ++k) {
        const __m256 d = _mm256_cvtph_ps(Load128(groups[p0 + k]));
        SWARM_UNROLL
        for (int c = 0; c < C; ++c) {
          acc[p0 + k][c] =
              _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[k][c]),
                              _mm256_mul_ps(d, _mm256_set1_ps(xs[c].d[sb])), acc[p0 + k][c]);
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
constexpr int kCols = 3;

// The kernel over the rows in [r0, r1) for the tokens from tp, rearranged in xs, as the drivers
// call it (panel_driver_avx2.h).
struct Q3KGroups {
  const MatMulArgs& a;
  const Token* xs;
  int64_t tp, r0, r1;
  template <int C, int P = 1>
  void Run(int64_t g, int64_t t) const {
    GroupQ3K<C, P>(a, xs + (t - tp), g, t, r0, r1);
  }
};

}  // namespace

void MatMulQ3_KPanels(const MatMulArgs& a, int64_t r0, int64_t r1) {
  const int64_t full = a.n_out / kGroupRows * kGroupRows;
  const int64_t g_begin = r0 / kGroupRows * kGroupRows;
  const int64_t g_end = std::min(r1, full);
  if (g_begin < g_end) {
    // The tokens of one token panel, rearranged once for all the groups.
    const int64_t token_bytes = TokenBytes(a.n_in);
    const int64_t panel_tokens = std::min(a.n_tokens, kTokenPanel);
    const std::unique_ptr<uint8_t[]> buffer(new uint8_t[panel_tokens * token_bytes]);
    Token xs[kTokenPanel];
    for (int64_t tp = 0; tp < a.n_tokens; tp += kTokenPanel) {
      const int64_t tp_end = std::min(a.n_tokens, tp + kTokenPanel);
      for (int64_t t = tp; t < tp_end; ++t) {
        xs[t - tp] = Rearrange(a, t, buffer.get() + (t - tp) * token_bytes);
      }
      const Q3KGroups groups{a, xs, tp, r0, r1};
      if (a.n_tokens == 1) {
        DriveOneToken(groups, g_begin, g_end);
      } else {
        DriveTokenPanel<kCols>(a, groups, g_begin, g_end, tp, tp_end);
      }
    }
  }
  // Rows past the last full group are GGUF rows.
  if (r1 > full) LowBitMatMulAvx2(GgmlType::kQ3_K)(a, std::max(r0, full), r1);
}

}  // namespace swarm::kernels::cpu::avx2
