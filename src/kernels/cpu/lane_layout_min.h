// The lane layout of Q4_1 and Q5_1 weights (blocks of 32 values with a scale d and a min m), the
// counterpart of Q4_0's in lane_layout.h: the AVX2 kernels keep one block per 32-bit lane, 16
// blocks (512 values) a group, so that the scales and the mins take one float FMA per 8 blocks.
// Plain functions; no state. lane_layout.h dispatches to them.
//
// Per row, each full group of 16 blocks (320 bytes of Q4_1, 384 of Q5_1) becomes, lane L holding
// block BlockOfLane(kX8LanesQ4_0, L) (kernels.h):
//   uint16 d[16]        the blocks' fp16 scales
//   uint16 m[16]        their fp16 mins
//   uint32 qh[16]       Q5_1 only: the fifth bits, bit 8k + j = the fifth bit of value 4j + k,
//                       so byte k of piece c's fifth bits is bit c (low nibbles) or bit 4 + c
//                       (high nibbles) of byte k
//   uint8  q[4][16][4]  q[c][L] = quant bytes 4c..4c+3 of that block (low nibbles: values
//                       4c..4c+3, high nibbles: values 16+4c..16+4c+3)
// Blocks past the last full group stay GGUF blocks.
#pragma once

#include <cstdint>

#include "kernels/ggml_type.h"

namespace swarm::kernels::cpu {

// Byte offsets within a group in this layout.
inline constexpr int64_t kMinLanesMOffset = 32;
inline constexpr int64_t kMinLanesQhOffset = 64;

// Where a group's quant pieces start: after the mins (Q4_1) or the fifth bits (Q5_1).
constexpr int64_t MinLanesQsOffset(GgmlType type) { return type == GgmlType::kQ5_1 ? 128 : 64; }

bool HasMinLaneLayout(GgmlType type);

// As RowToLanes / RowFromLanes (lane_layout.h) for Q4_1 and Q5_1.
void RowToMinLanes(GgmlType type, const uint8_t* gguf, uint8_t* lanes, int64_t n_in);
void RowFromMinLanes(GgmlType type, const uint8_t* lanes, uint8_t* gguf, int64_t n_in);

}  // namespace swarm::kernels::cpu
