#include "kernels/cpu/lane_layout.h"

#include <cstring>

#include "kernels/cpu/kernels.h"

namespace swarm::kernels::cpu {
namespace {

constexpr int64_t kGroupBlocks = 16;
constexpr size_t kScaleBytes = sizeof(uint16_t);
constexpr size_t kPieceBytes = 4;

// Byte offsets, within a group in the lane layout, of block `lane`'s scale and of its piece c.
size_t ScaleOffset(int lane) { return kScaleBytes * lane; }
size_t PieceOffset(int c, int lane) {
  return kScaleBytes * kGroupBlocks + kPieceBytes * (kGroupBlocks * c + lane);
}

// Copies each block of a group between the two layouts; to_lanes picks the direction.
void MoveGroup(const uint8_t* src, uint8_t* dst, bool to_lanes) {
  for (int lane = 0; lane < kGroupBlocks; ++lane) {
    const size_t block = sizeof(BlockQ4_0) * BlockOfLane(kX8LanesQ4_0, lane);
    const size_t quants = block + offsetof(BlockQ4_0, qs);
    if (to_lanes) {
      std::memcpy(dst + ScaleOffset(lane), src + block + offsetof(BlockQ4_0, d), kScaleBytes);
    } else {
      std::memcpy(dst + block + offsetof(BlockQ4_0, d), src + ScaleOffset(lane), kScaleBytes);
    }
    for (int c = 0; c < 4; ++c) {
      if (to_lanes) {
        std::memcpy(dst + PieceOffset(c, lane), src + quants + kPieceBytes * c, kPieceBytes);
      } else {
        std::memcpy(dst + quants + kPieceBytes * c, src + PieceOffset(c, lane), kPieceBytes);
      }
    }
  }
}

void MoveRow(const uint8_t* src, uint8_t* dst, int64_t n_in, bool to_lanes) {
  constexpr size_t kGroupBytes = sizeof(BlockQ4_0) * kGroupBlocks;
  static_assert(kGroupBytes == kScaleBytes * kGroupBlocks + kPieceBytes * 4 * kGroupBlocks);
  const int64_t groups = n_in / (kQK4_0 * kGroupBlocks);
  for (int64_t g = 0; g < groups; ++g)
    MoveGroup(src + g * kGroupBytes, dst + g * kGroupBytes, to_lanes);
  const size_t done = groups * kGroupBytes;
  std::memcpy(dst + done, src + done, sizeof(BlockQ4_0) * (n_in / kQK4_0) - done);
}

}  // namespace

bool HasLaneLayout(GgmlType type) { return type == GgmlType::kQ4_0; }

void RowToLanes(GgmlType /*type*/, const uint8_t* gguf, uint8_t* lanes, int64_t n_in) {
  MoveRow(gguf, lanes, n_in, /*to_lanes=*/true);
}

void RowFromLanes(GgmlType /*type*/, const uint8_t* lanes, uint8_t* gguf, int64_t n_in) {
  MoveRow(lanes, gguf, n_in, /*to_lanes=*/false);
}

}  // namespace swarm::kernels::cpu
