// The optimized CPU backend's lane layout of Q4_0 and Q8_0 weights (and, in the files named below,
// of Q4_1, Q5_1, Q5_0 and IQ4_NL): its AVX-512 and AVX2 Q4_0
// and Q8_0 kernels keep one 32-value block per 32-bit lane of a vector, 16 blocks (512 values) at
// a time (AVX2 in two halves of 8). From GGUF's layout they must gather each
// block's scale and 4-byte pieces with shuffles on every pass over the weights (AVX-512), or do
// float work per block (AVX2), which held the matrix-vector products below the memory's rate. The
// backend's PrepareWeight therefore rewrites such a matrix once, at load time, into this layout
// (same size), where its kernel table has a kernel for it.
//
// Per row, each full group of 16 blocks (288 bytes of Q4_0, 544 of Q8_0) becomes:
//   uint16 d[16]        the blocks' fp16 scales, lane L holding block BlockOfLane(order, L)
//                       (order: kX8LanesQ4_0 or kX8LanesQ8_0, kernels.h)
//   uint8  q[P][16][4]  q[c][L] = quant bytes 4c..4c+3 of that block; P = 4 for Q4_0 (low
//                       nibbles: values 4c..4c+3, high nibbles: values 16+4c..16+4c+3), 8 for Q8_0
// IQ4_NL (same block shape as Q4_0) has Q4_0's lane layout; Q5_0's is in lane_layout_q5_0.h, and
// Q4_1's and Q5_1's in lane_layout_min.h, which these functions also handle. Blocks past the last
// full group stay GGUF blocks. Plain functions; no state.
#pragma once

#include <cstdint>

#include "kernels/ggml_type.h"

namespace swarm::kernels::cpu {

// Whether `type` has a lane layout.
bool HasLaneLayout(GgmlType type);

// Rewrites one row of n_in values of a type with a lane layout from GGUF blocks to the lane layout
// and back. The row's size does not change; src and dst must not overlap.
void RowToLanes(GgmlType type, const uint8_t* gguf, uint8_t* lanes, int64_t n_in);
void RowFromLanes(GgmlType type, const uint8_t* lanes, uint8_t* gguf, int64_t n_in);

}  // namespace swarm::kernels::cpu
