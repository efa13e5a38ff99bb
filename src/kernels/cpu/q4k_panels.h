// The optimized CPU backend's row-panel layout of Q4_K weights (row_panels.h names it): rows are
// interleaved 8 at a time, super-block by super-block, so that one AVX2 vector holds one 32-bit
// lane per row and the scales, mins and float step of a super-block serve 8 rows at once.
// Plain functions; no state.
//
// Rows 8g..8g+7 (for 8g + 8 <= n_out) occupy the same 8 * row_bytes as in GGUF, as n_in / 256
// groups of 8 * 144 bytes, the group of super-block b holding that super-block of the 8 rows:
//   uint16 d[8], dmin[8]  row i's fp16 super-scales in lane i
//   uint8  nib[2][32]     low 4 bits of the 6-bit scales (nib[0]) and mins (nib[1]): byte k holds
//                         value S(k, s) of sub-block s = k % 4 in its low nibble and of s = 4 + k %
//                         4 in its high nibble, for row 4 * (k / 16) + (k % 16) / 4
//   uint8  high[32]       their top 2 bits: bits 0-1 scale s = k % 4, 2-3 scale 4 + k % 4,
//                         4-5 min k % 4, 6-7 min 4 + k % 4
//   uint8  qs[4][8][8][4] qs[j][l][i] = GGUF quant bytes 32j + 4l .. 32j + 4l + 3 of row i
// Rows past the last full group of 8 stay GGUF rows.
#pragma once

#include <cstdint>

namespace swarm::kernels::cpu {

inline constexpr int64_t kQ4KPanelRows = 8;

// Rewrites rows [8 * group_begin, 8 * group_end) (full groups only) between the layouts.
void Q4KRowsToPanels(const uint8_t* rows, uint8_t* panels, int64_t n_in, int64_t group_begin,
                     int64_t group_end);
// Copies row r of a Q4_K matrix in this layout out as one GGUF row.
void Q4KRowFromPanels(const uint8_t* panels, int64_t n_in, int64_t n_out, int64_t r, uint8_t* row);

}  // namespace swarm::kernels::cpu
