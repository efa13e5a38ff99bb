// The optimized CPU backend's row-panel layout of float weights (F32, F16, BF16). Its AVX-512
// kernels compute 16 rows per vector, one row per lane, each output one FMA chain over k in order:
//   y[r] = fma(w[r][n-1], x[n-1], ... fma(w[r][1], x[1], w[r][0] * x[0] + 0))
// so that a vector of weights must hold 16 rows' values at the same k. A matrix in this layout is a
// sequence of panels of kPanelRows rows (the last panel may be narrower: width = the rows left),
// each panel stored k-major: the element (row p * kPanelRows + i, column k) of a panel of width w
// is at panel_start + (k * w + i) * element_bytes, where panel_start = p * kPanelRows * row bytes.
// The matrix keeps its size. Reading a panel is one sequential stream, and a prompt's register
// tile multiplies each loaded weight vector by several tokens with every output keeping the FMA
// chain it has alone, so a token's result never depends on its batch or on the thread count.
// The backend's PrepareWeight rewrites float matrices into this layout once, at load time.
// The K-quants' and IQ4_XS's row panels are their own (q2k_panels.h, q3k_panels.h, q4k_panels.h,
// q5k_panels.h, q6k_panels.h, iq4xs_panels.h): rows interleaved 8 at a time, super-block by
// super-block, which the same functions below make and read.
#pragma once

#include <cstdint>

#include "kernels/ggml_type.h"

namespace swarm::kernels::cpu {

inline constexpr int64_t kPanelRows = 64;

// Whether `type` has a row-panel layout.
bool HasRowPanels(GgmlType type);

// Rewrites panels [panel_begin, panel_end) of an n_out x n_in matrix from GGUF rows at `rows` to
// the row-panel layout at `panels` (the same offsets). src and dst must not overlap.
void RowsToPanels(GgmlType type, const uint8_t* rows, uint8_t* panels, int64_t n_in, int64_t n_out,
                  int64_t panel_begin, int64_t panel_end);

// Copies row r of a matrix in the row-panel layout out as one GGUF row (RowBytes(type, n_in)).
void RowFromPanels(GgmlType type, const uint8_t* panels, int64_t n_in, int64_t n_out, int64_t r,
                   uint8_t* row);

}  // namespace swarm::kernels::cpu
