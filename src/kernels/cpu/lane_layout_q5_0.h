// The lane layout of Q5_0 weights (lane_layout.h): one group of 16 blocks rewritten so that an
// AVX2 kernel gets each value's 5-bit quant q (the value is d * (q - 16)) with one mask for half
// of the values and five cheap operations for the other half, instead of merging a nibble with a
// fifth bit for every value. Plain functions; no state.
//
// A full group of 16 blocks (352 bytes, as in GGUF) becomes:
//   uint16 d[16]        the blocks' fp16 scales, lane L holding block BlockOfLane(kX8LanesQ4_0, L)
//   uint8  h[16][4]     that block's low 2 bits of q(16 + 4c + k) in bits 2c, 2c + 1 of h[L][k]
//   uint8  v[4][16][4]  v[c][L][k] = q(4c + k) in bits 0-4, bits 2-4 of q(16 + 4c + k) in 5-7
// so for piece c the quants of values 4c + k are v & 0x1f, those of values 16 + 4c + k
// ((v & 0xe0) >> 3) | ((h >> 2c) & 3) (16-bit shifts suffice: the masks keep other bytes out).
#pragma once

#include <cstdint>

namespace swarm::kernels::cpu {

inline constexpr int64_t kQ5_0LaneGroupBytes = 352;
inline constexpr int64_t kQ5_0LaneBitsOffset = 32;
inline constexpr int64_t kQ5_0LaneQuantsOffset = 96;

// One group of 16 GGUF blocks to the lane layout and back; src and dst must not overlap.
void GroupToLanesQ5_0(const uint8_t* gguf, uint8_t* lanes);
void GroupFromLanesQ5_0(const uint8_t* lanes, uint8_t* gguf);

}  // namespace swarm::kernels::cpu
