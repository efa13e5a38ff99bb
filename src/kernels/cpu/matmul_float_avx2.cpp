// AVX2 matrix products for the float weight types (F32, F16, BF16) against f32 activations. As the
// AVX-512 version (matmul_float_avx512.cpp) with 8 lanes: y[t, r] is accumulated lane-wise in order
// of k (lane i takes k % 8 == i; the tail is one zero-padded step) and summed by Hsum, the same
// instructions for every tile shape.
#include <algorithm>

#include "kernels/cpu/kernels_isa.h"
#include "kernels/cpu/simd_avx2.h"

namespace swarm::kernels::cpu::avx2 {
namespace {

struct F32Weights {
  static constexpr int64_t kBytes = 4;
  static __m256 Load(const uint8_t* row, int64_t k) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + k);
  }
  static float At(const uint8_t* row, int64_t k) { return reinterpret_cast<const float*>(row)[k]; }
};

struct F16Weights {
  static constexpr int64_t kBytes = 2;
  static __m256 Load(const uint8_t* row, int64_t k) {
    return LoadF16(reinterpret_cast<const uint16_t*>(row) + k);
  }
  static float At(const uint8_t* row, int64_t k) {
    return HalfToFloat1(reinterpret_cast<const uint16_t*>(row)[k]);
  }
};

struct BF16Weights {
  static constexpr int64_t kBytes = 2;
  static __m256 Load(const uint8_t* row, int64_t k) {
    return LoadBF16(reinterpret_cast<const uint16_t*>(row) + k);
  }
  static float At(const uint8_t* row, int64_t k) {
    const uint32_t bits = uint32_t{reinterpret_cast<const uint16_t*>(row)[k]} << 16;
    return _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(static_cast<int>(bits))));
  }
};

template <class W, int R, int C>
void Tile(const MatMulArgs& a, int64_t r, int64_t t) {
  const uint8_t* rows[R];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) rows[i] = a.w + (r + i) * a.row_bytes;
  const float* xs[C];
  SWARM_UNROLL
  for (int j = 0; j < C; ++j) xs[j] = reinterpret_cast<const float*>(a.x + (t + j) * a.x_stride);
  __m256 acc[R][C];
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  const int64_t n = a.n_in;
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    __m256 xv[C];
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) xv[j] = _mm256_loadu_ps(xs[j] + k);
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      if constexpr (C == 1) {
        // A vector product streams R rows at once: fetch the next tile's rows into L2.
        _mm_prefetch(reinterpret_cast<const char*>(rows[i] + R * a.row_bytes) + k * W::kBytes,
                     _MM_HINT_T1);
      }
      const __m256 wv = W::Load(rows[i], k);
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);
    }
  }
  if (k < n) {
    const __m256i m = TailMask(n - k);
    __m256 xv[C];
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) xv[j] = _mm256_maskload_ps(xs[j] + k, m);
    SWARM_UNROLL
    for (int i = 0; i < R; ++i) {
      alignas(32) float tail[8] = {};
      for (int64_t e = k; e < n; ++e) tail[e - k] = W::At(rows[i], e);
      const __m256 wv = _mm256_load_ps(tail);
      SWARM_UNROLL
      for (int j = 0; j < C; ++j) acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);
    }
  }
  SWARM_UNROLL
  for (int i = 0; i < R; ++i) {
    SWARM_UNROLL
    for (int j = 0; j < C; ++j) a.y[(t + j) * a.n_out + r + i] = Hsum(acc[i][j]);
  }
}

constexpr int kVecRows = 8;
constexpr int kRows = 4;
constexpr int kCols = 3;
constexpr int64_t kPanel = 48;

template <class W, int R>
void TileCols(const MatMulArgs& a, int64_t r, int64_t t, int64_t cols) {
  switch (cols) {
    case 1:
      return Tile<W, R, 1>(a, r, t);
    case 2:
      return Tile<W, R, 2>(a, r, t);
    default:
      return Tile<W, R, 3>(a, r, t);
  }
}

template <class W>
void MatMul(const MatMulArgs& a, int64_t r0, int64_t r1) {
  if (a.n_tokens == 1) {
    int64_t r = r0;
    for (; r + kVecRows <= r1; r += kVecRows) Tile<W, kVecRows, 1>(a, r, 0);
    for (; r < r1; ++r) Tile<W, 1, 1>(a, r, 0);
    return;
  }
  for (int64_t tp = 0; tp < a.n_tokens; tp += kPanel) {
    const int64_t tp_end = std::min(a.n_tokens, tp + kPanel);
    int64_t r = r0;
    for (; r + kRows <= r1; r += kRows) {
      for (int64_t t = tp; t < tp_end; t += kCols) {
        TileCols<W, kRows>(a, r, t, std::min<int64_t>(kCols, tp_end - t));
      }
    }
    for (; r < r1; ++r) {
      for (int64_t t = tp; t < tp_end; t += kCols) {
        TileCols<W, 1>(a, r, t, std::min<int64_t>(kCols, tp_end - t));
      }
    }
  }
}

}  // namespace

void MatMulF32(const MatMulArgs& a, int64_t r0, int64_t r1) { MatMul<F32Weights>(a, r0, r1); }
void MatMulF16(const MatMulArgs& a, int64_t r0, int64_t r1) { MatMul<F16Weights>(a, r0, r1); }
void MatMulBF16(const MatMulArgs& a, int64_t r0, int64_t r1) { MatMul<BF16Weights>(a, r0, r1); }

}  // namespace swarm::kernels::cpu::avx2
