// The optimized CPU backend's row-panel layout of Q3_K weights (row_panels.h names it): rows are
// interleaved 8 at a time, super-block by super-block, so that one AVX2 vector holds one 32-bit
// lane per row and the scales and float step of a super-block serve 8 rows at once.
// Plain functions; no state.
//
// Rows 8g..8g+7 (for 8g + 8 <= n_out) occupy the same 8 * row_bytes as in GGUF, as n_in / 256
// groups of 8 * 110 bytes, the group of super-block b holding that super-block of the 8 rows. A
// quant is w = (2 low bits) | (high bit) << 2, in 0..7 (its value is w - 4); a scale is its 6-bit
// value - 32 as 6-bit two's complement, t. Pair j (0..7) is sub-blocks 2j and 2j + 1.
//   uint16 d[8]           row i's fp16 super-scale in lane i
//   uint16 s[3][8][2]     s[v][i][h]: the scale words of row i, h = 0 for sub-block 2j, 1 for
//                         2j + 1: pair j = 2v at bits 10-15, j = 2v + 1 at bits 4-9; bits 0-3 of
//                         s[0] hold bits 0-3 of pair 6, of s[1] those of pair 7, and bits 0-1 of
//                         s[2] bits 4-5 of pair 6, bits 2-3 bits 4-5 of pair 7
//   uint8  q[8][3][8][4]  q[j][p][i][k]: 3 bytes (p = 0, 1, 2: A, B, C) per byte k of 8 quant
//                         groups e of row i, each group e the 4 quants at 32j + 2e + {0, 1, 16,
//                         17}: e = 0 at A bits 0-2, 1 at A 3-5, 2 at B 0-2, 3 at B 3-5, 4 at C 0-2,
//                         5 at C 3-5, 6: A bits 6-7 and C bit 6 as its bit 2, 7: B bits 6-7 and C
//                         bit 7
// Rows past the last full group of 8 stay GGUF rows.
#pragma once

#include <cstdint>

namespace swarm::kernels::cpu {

inline constexpr int64_t kQ3KPanelRows = 8;

// Rewrites rows [8 * group_begin, 8 * group_end) (full groups only) between the layouts.
void Q3KRowsToPanels(const uint8_t* rows, uint8_t* panels, int64_t n_in, int64_t group_begin,
                     int64_t group_end);
// Copies row r of a Q3_K matrix in this layout out as one GGUF row.
void Q3KRowFromPanels(const uint8_t* panels, int64_t n_in, int64_t n_out, int64_t r, uint8_t* row);

}  // namespace swarm::kernels::cpu
