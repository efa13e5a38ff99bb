// The optimized CPU backend's lane layout of Q4_0 weights: its AVX-512 and AVX2 kernels keep one
// 32-value block per 32-bit lane of a vector, 16 blocks (512 values) at a time (AVX2 in two halves
// of 8). From GGUF's layout they must gather each block's scale and 4-byte pieces with shuffles on
// every pass over the weights (AVX-512), or do float work per block (AVX2), which held the Q4_0
// matrix-vector product below the memory's rate on Zen 5. The backend's PrepareWeight therefore
// rewrites a Q4_0 matrix once, at load time, into this layout (same size).
//
// Per row, each full group of 16 blocks (288 bytes) becomes:
//   uint16 d[16]        the blocks' fp16 scales, lane L holding block BlockOfLane(kX8LanesQ4_0, L)
//   uint8  q[4][16][4]  q[c][L] = quant bytes 4c..4c+3 of that block (low nibbles: values 4c..4c+3,
//                       high nibbles: values 16+4c..16+4c+3)
// Blocks past the last full group stay GGUF blocks. Plain functions; no state.
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
