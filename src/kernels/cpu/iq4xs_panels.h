// The optimized CPU backend's row-panel layout of IQ4_XS weights (row_panels.h names it): rows
// are interleaved 8 at a time, super-block by super-block, so that one AVX2 vector holds one
// 32-bit lane per row and the scales and float step of a super-block serve 8 rows at once.
// Plain functions; no state.
//
// Rows 8g..8g+7 (for 8g + 8 <= n_out) occupy the same 8 * row_bytes as in GGUF, as n_in / 256
// groups of 8 * 136 bytes, the group of super-block b holding that super-block of the 8 rows.
// S(i, s) below is row i's 6-bit scale of sub-block s (0..63, before the -32 offset):
//   uint16 d[8]        row i's fp16 super-scale in lane i
//   uint8  high[16]    the top 2 bits of the scales: byte m, for r = m / 4 and s = m % 4, holds
//                      those of S(r, s) in bits 0-1, S(r, 4 + s) in 2-3, S(4 + r, s) in 4-5 and
//                      S(4 + r, 4 + s) in 6-7
//   uint8  nib[32]     their low 4 bits: byte k, for row i = 4 * (k / 16) + (k % 16) / 4 and
//                      s = k % 4, holds S(i, s) in its low nibble and S(i, 4 + s) in its high one
//   uint8  qs[32][8][4] qs[l][i] = GGUF quant bytes 4l .. 4l + 3 of row i (sub-block l / 4)
// Rows past the last full group of 8 stay GGUF rows.
#pragma once

#include <cstdint>

namespace swarm::kernels::cpu {

inline constexpr int64_t kIQ4XSPanelRows = 8;

// Rewrites rows [8 * group_begin, 8 * group_end) (full groups only) between the layouts.
void IQ4XSRowsToPanels(const uint8_t* rows, uint8_t* panels, int64_t n_in, int64_t group_begin,
                       int64_t group_end);
// Copies row r of an IQ4_XS matrix in this layout out as one GGUF row.
void IQ4XSRowFromPanels(const uint8_t* panels, int64_t n_in, int64_t n_out, int64_t r,
                        uint8_t* row);

}  // namespace swarm::kernels::cpu
