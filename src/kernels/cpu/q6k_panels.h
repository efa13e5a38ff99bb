// The optimized CPU backend's row-panel layout of Q6_K weights (row_panels.h names it): rows are
// interleaved 8 at a time, super-block by super-block, so that one AVX2 vector holds one 32-bit
// lane per row and the scales and float step of a super-block serve 8 rows at once.
// Plain functions; no state.
//
// Rows 8g..8g+7 (for 8g + 8 <= n_out) occupy the same 8 * row_bytes as in GGUF, as n_in / 256
// groups of 8 * 210 bytes, the group of super-block b holding that super-block of the 8 rows:
//   uint16 d[8]            row i's fp16 super-scale in lane i
//   int8   scales[4][32]   scales[v][16 * (i / 4) + 4 * (i % 4) + s % 4] = scale s = 4v + s % 4
//                          of row i (each 128-bit half holds 4 rows)
//   uint8  steps[2][8][3][8][4]  steps[n][l][0][i] = GGUF ql bytes 64n + 4l .. + 3 of row i,
//                          [1][i] = ql bytes 64n + 32 + 4l .. + 3, [2][i] = qh bytes 32n + 4l .. +
//                          3
// Rows past the last full group of 8 stay GGUF rows.
#pragma once

#include <cstdint>

namespace swarm::kernels::cpu {

inline constexpr int64_t kQ6KPanelRows = 8;

// Rewrites rows [8 * group_begin, 8 * group_end) (full groups only) between the layouts.
void Q6KRowsToPanels(const uint8_t* rows, uint8_t* panels, int64_t n_in, int64_t group_begin,
                     int64_t group_end);
// Copies row r of a Q6_K matrix in this layout out as one GGUF row.
void Q6KRowFromPanels(const uint8_t* panels, int64_t n_in, int64_t n_out, int64_t r, uint8_t* row);

}  // namespace swarm::kernels::cpu
