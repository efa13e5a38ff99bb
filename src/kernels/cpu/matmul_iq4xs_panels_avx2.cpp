// AVX2 IQ4_XS products over weights in the row-panel layout (iq4xs_panels.h): one 32-bit lane per
// row, 8 rows per vector. Each step looks up the levels of 4 quant bytes (8 values) of each of 8
// rows and multiplies them by the same 4 + 4 activation bytes (broadcast): one token takes |x|
// against the levels carrying x's sign, prompts |level| against x carrying the level's sign (the
// same products either way). The 16-bit pair sums (at most 2 * 127 * 128) cannot add up in 16
// bits, so each goes through one vpmaddwd with its sub-block's scale of 8 rows; the 6-bit scales
// are unpacked once per super-block for 8 rows, and the float step (one FMA) serves 8 rows. Every
// output is one float lane whose instruction sequence does not depend on the tile or the token
// count (the integer sums are exact, so their order does not matter).
#include <algorithm>
#include <cstring>

#include "kernels/block_lowbit.h"
#include "kernels/cpu/iq4xs_panels.h"
#include "kernels/cpu/kernels_isa.h"
#include "kernels/cpu/matmul_lowbit.h"
#include "kernels/cpu/panel_driver_avx2.h"
#include "kernels/cpu/simd_avx2.h"

namespace swarm::kernels::cpu::avx2 {
namespace {

static_assert(kIQ4XSPanelRows == kGroupRows);

constexpr int64_t kRows = kIQ4XSPanelRows;
constexpr int64_t kGroupBytes = kRows * int64_t{sizeof(BlockIQ4_XS)};
constexpr int64_t kHighOffset = 2 * kRows;
constexpr int64_t kNibOffset = kHighOffset + 16;
constexpr int64_t kQsOffset = kNibOffset + 32;

__m256i Load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
__m128i Load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
__m256i Broadcast32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm256_set1_epi32(v);
}

// The shuffle that spreads byte 4r + s of each 128-bit half (row 4h + r's scale of sub-block s)
// over both 16-bit halves of 32-bit lane r, as (value, value).
__m256i SpreadSubBlock(int s) {
  auto lane = [s](int r) {
    const uint32_t b = static_cast<uint32_t>(4 * r + s);
    return static_cast<int>(b | 0x80u << 8 | b << 16 | 0x80u << 24);
  };
  return _mm256_setr_epi32(lane(0), lane(1), lane(2), lane(3), lane(0), lane(1), lane(2), lane(3));
}

// A group's 6-bit scales as bytes: [0] byte 4r + s of half h = S(4h + r, s), [1] = S(4h + r,
// 4 + s) (iq4xs_panels.h).
struct Scales {
  __m256i s[2];
};

Scales UnpackScales(const uint8_t* group) {
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i bits45 = _mm256_set1_epi8(0x30);
  const __m256i nib = Load256(group + kNibOffset);
  // The upper half's bytes take bits 4-7 of the high bytes (rows 4..7).
  const __m256i high = _mm256_srlv_epi32(_mm256_broadcastsi128_si256(Load128(group + kHighOffset)),
                                         _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
  return {{_mm256_or_si256(_mm256_and_si256(nib, low4),
                           _mm256_and_si256(_mm256_slli_epi16(high, 4), bits45)),
           _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(nib, 4), low4),
                           _mm256_and_si256(_mm256_slli_epi16(high, 2), bits45))}};
}

struct Token {
  const int8_t* qs;
  const float* d;
};

// The 8 rows from g0 (a full group) for tokens t .. t + C - 1, and with P > 1 (one token only)
// those of the P - 1 panels after it, their super-blocks interleaved and each panel's next group
// prefetched a line per step. Writes the rows in [r0, r1).
template <int C, int P = 1>
void GroupIQ4XS(const MatMulArgs& a, int64_t g0, int64_t t, int64_t r0, int64_t r1) {
  static_assert(P == 1 || C == 1);
  // One token: |x| once per super-block for all P panels (one vpsignb per weight vector rather
  // than a magnitude lookup per vector and a vpsignb per token).
  constexpr bool kAbsX = C == 1;
  // Panels in blocks of kBlock, each block's panels innermost: each broadcast activation serves
  // kBlock panels.
  constexpr int kBlock = P < 2 ? P : 2;
  static_assert(P % kBlock == 0);
  const uint8_t* bases[P];
  SWARM_UNROLL
  for (int p = 0; p < P; ++p) bases[p] = a.w + (g0 + p * kRows) * a.row_bytes;
  const int64_t panel_bytes = kRows * static_cast<int64_t>(a.row_bytes);
  Token xs[C];
  SWARM_UNROLL
  for (int c = 0; c < C; ++c) {
    const uint8_t* x = a.x + (t + c) * a.x_stride;
    xs[c] = {reinterpret_cast<const int8_t*>(x), reinterpret_cast<const float*>(x + a.x8.d_offset)};
  }
  __m256 acc[P][C];
  SWARM_UNROLL
  for (int p = 0; p < P; ++p) {
    SWARM_UNROLL
    for (int c = 0; c < C; ++c) acc[p][c] = _mm256_setzero_ps();
  }
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i offset = _mm256_set1_epi16(32);
  const __m256i levels = _mm256_broadcastsi128_si256(Load128(kKValuesIq4Nl));
  const __m256i magnitudes = _mm256_abs_epi8(levels);
  __m256i spread[4];
  SWARM_UNROLL
  for (int s = 0; s < 4; ++s) spread[s] = SpreadSubBlock(s);
  const int64_t n_super = a.n_in / kQK_K;
  for (int64_t sb = 0; sb < n_super; ++sb) {
    const uint8_t* groups[P];
    SWARM_UNROLL
    for (int p = 0; p < P; ++p) groups[p] = bases[p] + sb * kGroupBytes;
    alignas(32) uint8_t ax[kAbsX ? kQK_K : 32];
    if constexpr (kAbsX) {
      SWARM_UNROLL
      for (int v = 0; v < kQK_K / 32; ++v) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(ax + 32 * v),
                           _mm256_abs_epi8(Load256(xs[0].qs + kQK_K * sb + 32 * v)));
      }
    }
    SWARM_UNROLL
    for (int p0 = 0; p0 < P; p0 += kBlock) {
      Scales scales[kBlock];
      __m256i isum[kBlock][C];
      SWARM_UNROLL
      for (int k = 0; k < kBlock; ++k) {
        scales[k] = UnpackScales(groups[p0 + k]);
        SWARM_UNROLL
        for (int c = 0; c < C; ++c) isum[k][c] = _mm256_setzero_si256();
      }
      for (int j = 0; j < 8; ++j) {
        __m256i sc[kBlock];
        SWARM_UNROLL
        for (int k = 0; k < kBlock; ++k) {
          sc[k] = _mm256_sub_epi16(_mm256_shuffle_epi8(scales[k].s[j / 4], spread[j % 4]), offset);
        }
        SWARM_UNROLL
        for (int step = 0; step < 4; ++step) {
          const int l = 4 * j + step;
          // Sub-block j's values 4 step .. + 3 (low nibbles) and 16 + 4 step .. + 3 (high).
          const int64_t x_lo = kQK_K * sb + 32 * j + 4 * step;
          __m256i xlo[C], xhi[C];
          SWARM_UNROLL
          for (int c = 0; c < C; ++c) {
            xlo[c] = Broadcast32(xs[c].qs + x_lo);
            xhi[c] = Broadcast32(xs[c].qs + x_lo + 16);
          }
          SWARM_UNROLL
          for (int k = 0; k < kBlock; ++k) {
            const uint8_t* group = groups[p0 + k];
            const __m256i v = Load256(group + kQsOffset + 32 * l);
            if constexpr (C == 1) {
              // The next tile's group, one of its 17-18 lines per step (see PrefetchLineOf).
              PrefetchLineOf(group + P * panel_bytes, kGroupBytes, l);
            }
            const __m256i ilo = _mm256_and_si256(v, low4);
            const __m256i ihi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
            const __m256i wlo = _mm256_shuffle_epi8(levels, ilo);
            const __m256i whi = _mm256_shuffle_epi8(levels, ihi);
            if constexpr (kAbsX) {
              const int64_t a_lo = 32 * j + 4 * step;
              const __m256i plo =
                  _mm256_maddubs_epi16(Broadcast32(ax + a_lo), _mm256_sign_epi8(wlo, xlo[0]));
              const __m256i phi =
                  _mm256_maddubs_epi16(Broadcast32(ax + a_lo + 16), _mm256_sign_epi8(whi, xhi[0]));
              isum[k][0] = _mm256_add_epi32(
                  isum[k][0],
                  _mm256_add_epi32(_mm256_madd_epi16(plo, sc[k]), _mm256_madd_epi16(phi, sc[k])));
            } else {
              const __m256i mlo = _mm256_shuffle_epi8(magnitudes, ilo);
              const __m256i mhi = _mm256_shuffle_epi8(magnitudes, ihi);
              SWARM_UNROLL
              for (int c = 0; c < C; ++c) {
                const __m256i plo = _mm256_maddubs_epi16(mlo, _mm256_sign_epi8(xlo[c], wlo));
                const __m256i phi = _mm256_maddubs_epi16(mhi, _mm256_sign_epi8(xhi[c], whi));
                isum[k][c] = _mm256_add_epi32(
                    isum[k][c],
                    _mm256_add_epi32(_mm256_madd_epi16(plo, sc[k]), _mm256_madd_epi16(phi, sc[k])));
              }
            }
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

// Tokens per tile of a prompt (matmat_bench --isa avx2: 99-106 GFLOP/s with 2, 118-119 with 3).
constexpr int kCols = 3;

// The kernel over the rows in [r0, r1), as DrivePanels calls it (panel_driver_avx2.h).
struct IQ4XSGroups {
  const MatMulArgs& a;
  int64_t r0, r1;
  template <int C, int P = 1>
  void Run(int64_t g, int64_t t) const {
    GroupIQ4XS<C, P>(a, g, t, r0, r1);
  }
};

}  // namespace

void MatMulIQ4_XSPanels(const MatMulArgs& a, int64_t r0, int64_t r1) {
  DrivePanels<kCols>(a, IQ4XSGroups{a, r0, r1}, r0, r1, LowBitMatMulAvx2(GgmlType::kIQ4_XS));
}

}  // namespace swarm::kernels::cpu::avx2
