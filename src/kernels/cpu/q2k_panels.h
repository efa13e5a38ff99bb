// The optimized CPU backend's row-panel layout of Q2_K weights (row_panels.h names it): rows are
// interleaved 8 at a time, super-block by super-block, so that one AVX2 vector holds one 32-bit
// lane per row and the scales, mins and float steps of a super-block serve 8 rows at once.
// Plain functions; no state.
//
// Rows 8g..8g+7 (for 8g + 8 <= n_out) occupy the same 8 * row_bytes as in GGUF, as n_in / 256
// groups of 8 * 84 bytes, the group of super-block b holding that super-block of the 8 rows:
//   uint16 d[8], dmin[8]  row i's fp16 super-scales in lane i
//   uint8  sc[4][8][4]    sc[v][i] = GGUF scale bytes 4v .. 4v + 3 of row i (scale in the low
//                         nibble, min in the high one, of sub-blocks 4v .. 4v + 3)
//   uint8  qs[2][8][8][4] qs[h][l][i] = GGUF quant bytes 32h + 4l .. 32h + 4l + 3 of row i
// Rows past the last full group of 8 stay GGUF rows.
#pragma once

#include <cstdint>

namespace swarm::kernels::cpu {

inline constexpr int64_t kQ2KPanelRows = 8;

// Rewrites rows [8 * group_begin, 8 * group_end) (full groups only) between the layouts.
void Q2KRowsToPanels(const uint8_t* rows, uint8_t* panels, int64_t n_in, int64_t group_begin,
                     int64_t group_end);
// Copies row r of a Q2_K matrix in this layout out as one GGUF row.
void Q2KRowFromPanels(const uint8_t* panels, int64_t n_in, int64_t n_out, int64_t r, uint8_t* row);

}  // namespace swarm::kernels::cpu
