// The lane layout of Q5_0 weights (lane_layout.h): one group of 16 blocks rewritten so that an
// AVX2 kernel merges each value's fifth bit into its nibble with one shift and one mask. Plain
// functions; no state.
//
// A full group of 16 blocks (352 bytes, as in GGUF) becomes:
//   uint16 d[16]        the blocks' fp16 scales, lane L holding block BlockOfLane(kX8LanesQ4_0, L)
//   uint32 h[16]        that block's fifth bits, regrouped: byte k of h holds, in bit c (c 0..3),
//                       the fifth bit of value 4c + k and, in bit 4 + c, that of value 16 + 4c + k
//   uint8  q[4][16][4]  q[c][L] = quant bytes 4c..4c+3 of that block, as Q4_0's lanes
// so for piece c, (h << (4 - c)) & 0x10 is the fifth bit of each low nibble of q[c] in place and
// (h >> c) & 0x10 that of each high nibble.
#pragma once

#include <cstdint>

namespace swarm::kernels::cpu {

inline constexpr int64_t kQ5_0LaneGroupBytes = 352;
inline constexpr int64_t kQ5_0LaneBitsOffset = 32;
inline constexpr int64_t kQ5_0LaneQuantsOffset = 96;

// One group of 16 GGUF blocks to the lane layout and back; src and dst must not overlap.
void GroupToLanesQ5_0(const uint8_t* gguf, uint8_t* lanes);
void GroupFromLanesQ5_0(const uint8_t* lanes, uint8_t* gguf);

// The regrouping of one block's fifth bits (h above) and its inverse.
uint32_t LaneBitsQ5_0(uint32_t qh);
uint32_t GgufBitsQ5_0(uint32_t h);

}  // namespace swarm::kernels::cpu
