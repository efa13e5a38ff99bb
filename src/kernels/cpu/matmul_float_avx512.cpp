// AVX-512 matrix products for the float weight types (F32, F16, BF16) against f32 activations.
// Each output y[t, r] is the dot product of weight row r and token t, accumulated in 16 lanes
// (lane i takes the elements k with k % 16 == i, in order of k; a masked step takes the tail) and
// summed by Hsum at the end: the same instructions for every tile shape, so results do not depend
// on threads or batching. Weights are converted in registers, never expanded in memory.
#include <algorithm>

#include "kernels/cpu/kernels_isa.h"
#include "kernels/cpu/row_panels.h"
#include "kernels/cpu/simd_avx512.h"  // first: brings in immintrin.h

namespace swarm::kernels::cpu::avx512 {
namespace {

struct F32Weights {
  static constexpr int64_t kBytes = 4;
  static __m512 Load(const uint8_t* row, int64_t k) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + k);
  }
  static __m512 LoadMasked(const uint8_t* row, int64_t k, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + k);
  }
};

struct F16Weights {
  static constexpr int64_t kBytes = 2;
  static __m512 Load(const uint8_t* row, int64_t k) {
    return LoadF16(reinterpret_cast<const uint16_t*>(row) + k);
  }
  static __m512 LoadMasked(const uint8_t* row, int64_t k, __mmask16 m) {
    return LoadF16Masked(reinterpret_cast<const uint16_t*>(row) + k, m);
  }
};

struct BF16Weights {
  static constexpr int64_t kBytes = 2;
  static __m512 Load(const uint8_t* row, int64_t k) {
    return LoadBF16(reinterpret_cast<const uint16_t*>(row) + k);
  }
  static __m512 LoadMasked(const uint8_t* row, int64_t k, __mmask16 m) {
    return LoadBF16Masked(reinterpret_cast<const uint16_t*>(row) + k, m);
  }
};

// Accumulator classes per output: 16-value chunk c of a row goes to accumulator c % kClasses, so a
// row's FMAs form kClasses independent chains (one chain's latency capped a row at ~1.3 G FMA/s on
// Zen 5, below the memory's rate in f16/bf16). Summed in a fixed order at the end.
constexpr int kClasses = 2;

// acc += w * x for the rows and tokens of a tile, chunk at k (masked by m).
template <class W, int R, int C, bool kMasked>
inline void Chunk(const uint8_t* const* rows, const float* const* xs, int64_t k, __mmask16 m,
                  __m512 (&acc)[R][C]) {
  __m512 xv[C];
  SWARM_UNROLL
  for (int j = 0; j < C; ++j) {
    xv[j] = kMasked ? _mm512_maskz_loadu_ps(m, xs[j] + k) : _mm512_loadu_ps(xs[j] + k);
  }
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    const __m512 wv = kMasked ? W::LoadMasked(rows[i], k, m) : W::Load(rows[i], k);
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) acc[i][j] = _mm512_fmadd_ps(wv, xv[j], acc[i][j]);
  }
}

// y[r] for one row and one token (a vector product, streamed from memory): the classes
// interleaved, chunk by chunk in order of k.
template <class W>
void VectorTile(const MatMulArgs& a, int64_t r) {
  const uint8_t* const rows[1] = {a.w + r * a.row_bytes};
  const float* const xs[1] = {reinterpret_cast<const float*>(a.x)};
  __m512 acc[kClasses][1][1];
  SWARM_UNROLL
  for (int c = 0; c < kClasses; ++c) acc[c][0][0] = _mm512_setzero_ps();
  const int64_t n = a.n_in;
  int64_t k = 0;
  for (; k + 16 * kClasses <= n; k += 16 * kClasses) {
    PrefetchAhead(rows[0] + k * W::kBytes, 16 * kClasses * W::kBytes);
    SWARM_UNROLL
    for (int c = 0; c < kClasses; ++c) Chunk<W, 1, 1, false>(rows, xs, k + 16 * c, 0, acc[c]);
  }
  // Fewer than kClasses chunks remain (the last one maybe partial): classes 0, 1, ... in order.
  SWARM_UNROLL
  for (int c = 0; c < kClasses; ++c) {
    if (k < n) Chunk<W, 1, 1, true>(rows, xs, k, TailMask(n - k), acc[c]);
    k += 16;
  }
  __m512 sum = acc[0][0][0];
  SWARM_UNROLL
  for (int c = 1; c < kClasses; ++c) sum = _mm512_add_ps(sum, acc[c][0][0]);
  a.y[r] = Hsum(sum);
}

// y[t + j, r + i] for i < R, j < C (a matrix-matrix tile): the classes one after the other, each
// class's chunks in order of k, so that the tile needs R x C accumulators rather than
// kClasses x R x C. Every accumulator sees the same FMAs in the same order as in VectorTile, and
// the classes are summed in the same order: the same bits.
template <class W, int R, int C>
void Tile(const MatMulArgs& a, int64_t r, int64_t t) {
  const uint8_t* rows[R];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) rows[i] = a.w + (r + i) * a.row_bytes;
  const float* xs[C];
  SWARM_UNROLL
  for (int j = 0; j < C; ++j) xs[j] = reinterpret_cast<const float*>(a.x + (t + j) * a.x_stride);
  const int64_t n = a.n_in;
  __m512 done[R][C];  // the sum of the classes finished so far
  SWARM_UNROLL
  for (int c = 0; c < kClasses; ++c) {
    __m512 acc[R][C];
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) acc[i][j] = _mm512_setzero_ps();
    }
    int64_t k = 16 * c;
    for (; k + 16 <= n; k += 16 * kClasses) Chunk<W, R, C, false>(rows, xs, k, 0, acc);
    if (k < n) Chunk<W, R, C, true>(rows, xs, k, TailMask(n - k), acc);
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      SWARM_UNROLL
      for (int j = 0; j < C; ++j)
        done[i][j] = c == 0 ? acc[i][j] : _mm512_add_ps(done[i][j], acc[i][j]);
    }
  }
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) a.y[(t + j) * a.n_out + r + i] = Hsum(done[i][j]);
  }
}

// A matrix-vector product (one token) reads one row at a time (VectorTile): a single sequential
// stream is what the memory system serves best. Measured on Zen 5 against a plain read of the same
// weights: f16 82-85% with 8 interleaved rows, 90-104% with one row (2 threads); with 2 rows of 2
// streams, 48% (one thread).
// Register tile of the matrix-matrix product: each weight vector serves kCols tokens, each
// activation vector kRows rows.
constexpr int kRows = 6;
constexpr int kCols = 4;
// Tokens whose activations stay cache-resident while the row tiles stream past them.
constexpr int64_t kPanel = 64;

// Tile<W, R, cols> for a run-time cols in [1, C].
template <class W, int R, int C>
void TileCols(const MatMulArgs& a, int64_t r, int64_t t, int64_t cols) {
  if constexpr (C > 1) {
    if (cols < C) return TileCols<W, R, C - 1>(a, r, t, cols);
  }
  Tile<W, R, C>(a, r, t);
}

template <class W>
void MatMul(const MatMulArgs& a, int64_t r0, int64_t r1) {
  if (a.n_tokens == 1) {
    for (int64_t r = r0; r < r1; ++r) VectorTile<W>(a, r);
    return;
  }
  for (int64_t tp = 0; tp < a.n_tokens; tp += kPanel) {
    const int64_t tp_end = std::min(a.n_tokens, tp + kPanel);
    int64_t r = r0;
    for (; r + kRows <= r1; r += kRows) {
      for (int64_t t = tp; t < tp_end; t += kCols) {
        TileCols<W, kRows, kCols>(a, r, t, std::min<int64_t>(kCols, tp_end - t));
      }
    }
    for (; r < r1; ++r) {
      for (int64_t t = tp; t < tp_end; t += kCols) {
        TileCols<W, 1, kCols>(a, r, t, std::min<int64_t>(kCols, tp_end - t));
      }
    }
  }
}

// ---- Weights in the row-panel layout (row_panels.h) ---------------------------------------------
// Vector v of a panel holds its rows 16v..16v+15 at one k; every output is one FMA chain over k in
// order, whatever the tile, so a token alone, in a batch, or on another thread gets the same bits.
constexpr int kPanelVectors = kPanelRows / 16;

// Prompt tiles: each loaded weight vector serves kPanelCols tokens (4 x 6 accumulators).
constexpr int kPanelCols = 6;
// Tokens whose activations stay cache-resident while a panel's k blocks pass, and the k block: a
// panel's block (64 rows x kPanelK values) and the tokens' block stay in L2. Between k blocks
// the accumulators wait in y, as fp32, which does not change a bit.
constexpr int64_t kPanelTokens = 96;
constexpr int64_t kPanelK = 512;

struct PanelSpan {
  const uint8_t* panel = nullptr;
  int64_t width = 0;  // rows in the panel
  int64_t row0 = 0;   // the panel's first row
  __mmask16 m[kPanelVectors] = {};
};

// Lanes of vector v whose rows lie in [lo, hi) (panel-relative).
inline __mmask16 PanelMask(int64_t lo, int64_t hi, int v) {
  const int64_t a = std::max<int64_t>(lo - 16 * v, 0);
  const int64_t b = std::min<int64_t>(hi - 16 * v, 16);
  if (b <= a) return 0;
  return static_cast<__mmask16>(((1u << (b - a)) - 1u) << a);
}

// y[t + j, panel rows] for j < C, over k in [k0, k1): continues the chains left in y when k0 > 0.
template <class W, int C, bool kMasked>
void PanelTile(const MatMulArgs& a, const PanelSpan& s, int64_t t, int64_t k0, int64_t k1) {
  const float* xs[C];
  float* ys[C];
  SWARM_UNROLL
  for (int j = 0; j < C; ++j) {
    xs[j] = reinterpret_cast<const float*>(a.x + (t + j) * a.x_stride);
    ys[j] = a.y + (t + j) * a.n_out + s.row0;
  }
  __m512 acc[kPanelVectors][C];
  SWARM_UNROLL
  for (int v = 0; v < kPanelVectors; ++v) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) {
      acc[v][j] = k0 == 0   ? _mm512_setzero_ps()
                  : kMasked ? _mm512_maskz_loadu_ps(s.m[v], ys[j] + 16 * v)
                            : _mm512_loadu_ps(ys[j] + 16 * v);
    }
  }
  const int64_t step = s.width * W::kBytes;
  const uint8_t* wk = s.panel + k0 * step;
  for (int64_t k = k0; k < k1; ++k, wk += step) {
    if constexpr (C == 1) PrefetchAhead(wk, step);
    __m512 wv[kPanelVectors];
    SWARM_UNROLL
    for (int v = 0; v < kPanelVectors; ++v) {
      wv[v] = kMasked ? W::LoadMasked(wk, 16 * v, s.m[v]) : W::Load(wk, 16 * v);
    }
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) {
      const __m512 xb = _mm512_set1_ps(xs[j][k]);
      SWARM_UNROLL
      for (int v = 0; v < kPanelVectors; ++v) acc[v][j] = _mm512_fmadd_ps(wv[v], xb, acc[v][j]);
    }
  }
  SWARM_UNROLL
  for (int v = 0; v < kPanelVectors; ++v) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) {
      if (kMasked) {
        _mm512_mask_storeu_ps(ys[j] + 16 * v, s.m[v], acc[v][j]);
      } else {
        _mm512_storeu_ps(ys[j] + 16 * v, acc[v][j]);
      }
    }
  }
}

// PanelTile<W, cols, kMasked> for a run-time cols in [1, C].
template <class W, int C, bool kMasked>
void PanelTileCols(const MatMulArgs& a, const PanelSpan& s, int64_t t, int64_t cols, int64_t k0,
                   int64_t k1) {
  if constexpr (C > 1) {
    if (cols < C) return PanelTileCols<W, C - 1, kMasked>(a, s, t, cols, k0, k1);
  }
  PanelTile<W, C, kMasked>(a, s, t, k0, k1);
}

template <class W, bool kMasked>
void PanelRows(const MatMulArgs& a, const PanelSpan& s, int64_t t0, int64_t t1) {
  if (a.n_tokens == 1) return PanelTile<W, 1, kMasked>(a, s, 0, 0, a.n_in);
  for (int64_t k0 = 0; k0 < a.n_in; k0 += kPanelK) {
    const int64_t k1 = std::min(a.n_in, k0 + kPanelK);
    for (int64_t t = t0; t < t1; t += kPanelCols) {
      PanelTileCols<W, kPanelCols, kMasked>(a, s, t, std::min<int64_t>(kPanelCols, t1 - t), k0, k1);
    }
  }
}

template <class W>
void MatMulPanels(const MatMulArgs& a, int64_t r0, int64_t r1) {
  for (int64_t tp = 0; tp < a.n_tokens; tp += kPanelTokens) {
    const int64_t tp_end = std::min(a.n_tokens, tp + kPanelTokens);
    for (int64_t p = r0 / kPanelRows; p * kPanelRows < r1; ++p) {
      PanelSpan s;
      s.row0 = p * kPanelRows;
      s.width = std::min(kPanelRows, a.n_out - s.row0);
      s.panel = a.w + s.row0 * a.row_bytes;
      const int64_t lo = std::max(r0, s.row0) - s.row0;
      const int64_t hi = std::min(r1, s.row0 + s.width) - s.row0;
      SWARM_UNROLL
      for (int v = 0; v < kPanelVectors; ++v) s.m[v] = PanelMask(lo, hi, v);
      if (lo == 0 && hi == kPanelRows) {
        PanelRows<W, false>(a, s, tp, tp_end);
      } else {
        PanelRows<W, true>(a, s, tp, tp_end);
      }
    }
  }
}

}  // namespace

void MatMulF32(const MatMulArgs& a, int64_t r0, int64_t r1) { MatMul<F32Weights>(a, r0, r1); }
void MatMulF16(const MatMulArgs& a, int64_t r0, int64_t r1) { MatMul<F16Weights>(a, r0, r1); }
void MatMulBF16(const MatMulArgs& a, int64_t r0, int64_t r1) { MatMul<BF16Weights>(a, r0, r1); }
void MatMulF32Panels(const MatMulArgs& a, int64_t r0, int64_t r1) {
  MatMulPanels<F32Weights>(a, r0, r1);
}
void MatMulF16Panels(const MatMulArgs& a, int64_t r0, int64_t r1) {
  MatMulPanels<F16Weights>(a, r0, r1);
}
void MatMulBF16Panels(const MatMulArgs& a, int64_t r0, int64_t r1) {
  MatMulPanels<BF16Weights>(a, r0, r1);
}

}  // namespace swarm::kernels::cpu::avx512
