// What the AVX2 row-panel kernels (8 rows interleaved per group: matmul_q2k, q3k, q4k, q5k, q6k
// and iq4xs_panels_avx2.cpp) share: where a group's 8 outputs go, and the order in which groups
// and tokens are visited. Internal linkage only, as simd_avx2.h.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/kernels_isa.h"

namespace swarm::kernels::cpu::avx2 {
namespace {

// Rows per group of every panel layout (q4k_panels.h ... iq4xs_panels.h).
inline constexpr int64_t kGroupRows = 8;

// Writes token t's outputs of rows g .. g + 7, held in acc, those in [r0, r1) only.
inline void StoreGroupRows(const MatMulArgs& a, __m256 acc, int64_t t, int64_t g, int64_t r0,
                           int64_t r1) {
  float* y = a.y + t * a.n_out + g;
  if (g >= r0 && g + kGroupRows <= r1) {
    _mm256_storeu_ps(y, acc);
    return;
  }
  alignas(32) float v[kGroupRows];
  _mm256_store_ps(v, acc);
  for (int64_t i = std::max(r0, g); i < std::min(r1, g + kGroupRows); ++i) y[i - g] = v[i - g];
}

// Panels per matrix-vector step: kVecPanels interleaved streams, each with its next group
// prefetched a line per step, keep more lines in flight than one (matvec_bench --isa avx2, one
// thread, 512 MiB: Q4_K 0.70-0.77 of a plain read with one panel at a time, 0.83-0.87 with 4,
// 0.94-1.03 with 4 and the prefetches spread (PrefetchLineOf); 8 measured worse than 4).
inline constexpr int kVecPanels = 4;
// Tokens per panel of a prompt: a group's weights stay in L1 for that many tokens.
inline constexpr int64_t kTokenPanel = 48;

// One token over the full groups [g_begin, g_end): groups.Run<1, kVecPanels>(g, 0) for
// kVecPanels groups at a time, then groups.Run<1>(g, 0) for the rest. Groups is a kernel's
// adaptor, with `template <int C, int P = 1> void Run(int64_t g, int64_t t) const` computing
// the groups g, g + 8, .. (P of them) for tokens t .. t + C - 1.
template <class Groups>
void DriveOneToken(const Groups& groups, int64_t g_begin, int64_t g_end) {
  int64_t g = g_begin;
  for (; g + kVecPanels * kGroupRows <= g_end; g += kVecPanels * kGroupRows) {
    groups.template Run<1, kVecPanels>(g, 0);
  }
  for (; g < g_end; g += kGroupRows) groups.template Run<1>(g, 0);
}

// Tokens [tp, tp_end) of a prompt over the full groups [g_begin, g_end): each group for kCols
// tokens at a time (then one at a time), the next group's bytes prefetched a share per tile.
template <int kCols, class Groups>
void DriveTokenPanel(const MatMulArgs& a, const Groups& groups, int64_t g_begin, int64_t g_end,
                     int64_t tp, int64_t tp_end) {
  for (int64_t g = g_begin; g < g_end; g += kGroupRows) {
    const int64_t next_rows = std::min(kGroupRows, g_end - g - kGroupRows);
    SpreadPrefetch next(a.w + (g + kGroupRows) * a.row_bytes,
                        static_cast<int64_t>(a.row_bytes) * next_rows,
                        (tp_end - tp + kCols - 1) / kCols);
    int64_t t = tp;
    for (; t + kCols <= tp_end; t += kCols) {
      next.Next();
      groups.template Run<kCols>(g, t);
    }
    for (; t < tp_end; ++t) groups.template Run<1>(g, t);
  }
}

// A prompt over the full groups [g_begin, g_end), kTokenPanel tokens at a time.
template <int kCols, class Groups>
void DrivePrompt(const MatMulArgs& a, const Groups& groups, int64_t g_begin, int64_t g_end) {
  for (int64_t tp = 0; tp < a.n_tokens; tp += kTokenPanel) {
    DriveTokenPanel<kCols>(a, groups, g_begin, g_end, tp, std::min(a.n_tokens, tp + kTokenPanel));
  }
}

// A whole product over rows [r0, r1) of a panel layout: the full groups by the kernel (Groups,
// as above), the GGUF rows past the last full group by `gguf`.
template <int kCols, class Groups>
void DrivePanels(const MatMulArgs& a, const Groups& groups, int64_t r0, int64_t r1, MatMulFn gguf) {
  const int64_t full = a.n_out / kGroupRows * kGroupRows;
  const int64_t g_begin = r0 / kGroupRows * kGroupRows;
  const int64_t g_end = std::min(r1, full);
  if (a.n_tokens == 1) {
    DriveOneToken(groups, g_begin, g_end);
  } else {
    DrivePrompt<kCols>(a, groups, g_begin, g_end);
  }
  if (r1 > full) gguf(a, std::max(r0, full), r1);
}

}  // namespace
}  // namespace swarm::kernels::cpu::avx2
