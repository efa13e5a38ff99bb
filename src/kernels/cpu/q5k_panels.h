// The optimized CPU backend's row-panel layout of Q5_K weights (row_panels.h names it): rows are
// interleaved 8 at a time, super-block by super-block, as Q4_K's (q4k_panels.h), so that one AVX2
// vector holds one 32-bit lane per row; each 5-bit quant is stored so that it comes out of the
// layout with one or two operations per vector. Plain functions; no state.
//
// Rows 8g..8g+7 (for 8g + 8 <= n_out) occupy the same 8 * row_bytes as in GGUF, as n_in / 256
// groups of 8 * 176 bytes, the group of super-block b holding that super-block of the 8 rows:
//   128 bytes             d, dmin, scales and mins of the 8 rows exactly as in q4k_panels.h
//   then for j = 0..3 (64 values 64j .. 64j + 63) and h = 0..1 (steps 4h .. 4h + 3), 160 bytes:
//     uint8 q[32]         two high bits of the odd-half values of the 4 steps, mixed (below)
//     uint8 a[4][32]      a[k][4i + m]: step l = 4h + k, row i, lo = value 64j + 4l + m (5 bits),
//                         hi = value 64j + 32 + 4l + m
// The kernel reads, per step (k = 0..3, shift s_k = 3 - 2k, positive: left), with 16-bit shifts:
//   lo = a[k] & 0x1f,   hi = ((a[k] >> 5) ^ (q << s_k)) & 0x1f
// so a[k] holds lo in bits 0-4, and the layout stores the other bits (hi's low 3 in a[k]'s bits
// 5-7, its top 2 in q's bits 2k, 2k + 1) xor-ed with whatever those shifts bring in next to them.
// Rows past the last full group of 8 stay GGUF rows.
#pragma once

#include <cstdint>

namespace swarm::kernels::cpu {

inline constexpr int64_t kQ5KPanelRows = 8;

// Rewrites rows [8 * group_begin, 8 * group_end) (full groups only) between the layouts.
void Q5KRowsToPanels(const uint8_t* rows, uint8_t* panels, int64_t n_in, int64_t group_begin,
                     int64_t group_end);
// Copies row r of a Q5_K matrix in this layout out as one GGUF row.
void Q5KRowFromPanels(const uint8_t* panels, int64_t n_in, int64_t n_out, int64_t r, uint8_t* row);

}  // namespace swarm::kernels::cpu
