#include "kernels/cpu/lane_layout.h"

#include <cstddef>
#include <cstring>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/lane_layout_min.h"
#include "kernels/cpu/lane_layout_q5_0.h"

namespace swarm::kernels::cpu {
namespace {

constexpr int64_t kGroupBlocks = 16;
constexpr size_t kScaleBytes = sizeof(uint16_t);
constexpr size_t kPieceBytes = 4;

// What a type's lane layout moves: blocks of 32 values, an fp16 scale at offset 0 and `pieces`
// 4-byte pieces of quants at quants_offset, in lane order `order` (kernels.h).
struct BlockShape {
  size_t block_bytes;
  size_t quants_offset;
  int pieces;
  int order;
};

BlockShape ShapeOf(GgmlType type) {
  if (type == GgmlType::kQ8_0) {
    return {sizeof(BlockQ8_0), offsetof(BlockQ8_0, qs), kQK8_0 / 4, kX8LanesQ8_0};
  }
  if (type == GgmlType::kQ5_0) return {sizeof(BlockQ5_0), 0, 0, kX8LanesQ4_0};  // own mover
  // IQ4_NL blocks have Q4_0's shape: an fp16 scale, then 16 bytes of nibbles.
  static_assert(sizeof(BlockIQ4_NL) == sizeof(BlockQ4_0) && offsetof(BlockIQ4_NL, qs) == 2);
  return {sizeof(BlockQ4_0), offsetof(BlockQ4_0, qs), kQK4_0 / 8, kX8LanesQ4_0};
}

// Byte offsets, within a group in the lane layout, of block `lane`'s scale and of its piece c.
size_t ScaleOffset(int lane) { return kScaleBytes * lane; }
size_t PieceOffset(int c, int lane) {
  return kScaleBytes * kGroupBlocks + kPieceBytes * (kGroupBlocks * c + lane);
}

// Copies each block of a group between the two layouts; to_lanes picks the direction.
void MoveGroup(const BlockShape& shape, const uint8_t* src, uint8_t* dst, bool to_lanes) {
  for (int lane = 0; lane < kGroupBlocks; ++lane) {
    const size_t block = shape.block_bytes * BlockOfLane(shape.order, lane);
    const size_t quants = block + shape.quants_offset;
    if (to_lanes) {
      std::memcpy(dst + ScaleOffset(lane), src + block, kScaleBytes);
    } else {
      std::memcpy(dst + block, src + ScaleOffset(lane), kScaleBytes);
    }
    for (int c = 0; c < shape.pieces; ++c) {
      if (to_lanes) {
        std::memcpy(dst + PieceOffset(c, lane), src + quants + kPieceBytes * c, kPieceBytes);
      } else {
        std::memcpy(dst + quants + kPieceBytes * c, src + PieceOffset(c, lane), kPieceBytes);
      }
    }
  }
}

void MoveRow(GgmlType type, const uint8_t* src, uint8_t* dst, int64_t n_in, bool to_lanes) {
  static_assert(offsetof(BlockQ4_0, d) == 0 && offsetof(BlockQ8_0, d) == 0);
  const BlockShape shape = ShapeOf(type);
  const size_t group_bytes = shape.block_bytes * kGroupBlocks;
  const int64_t groups = n_in / (32 * kGroupBlocks);
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* from = src + g * group_bytes;
    uint8_t* to = dst + g * group_bytes;
    if (type != GgmlType::kQ5_0) {
      MoveGroup(shape, from, to, to_lanes);
    } else if (to_lanes) {
      GroupToLanesQ5_0(from, to);
    } else {
      GroupFromLanesQ5_0(from, to);
    }
  }
  const size_t done = groups * group_bytes;
  std::memcpy(dst + done, src + done, shape.block_bytes * static_cast<size_t>(n_in / 32) - done);
}

}  // namespace

bool HasLaneLayout(GgmlType type) {
  return type == GgmlType::kQ4_0 || type == GgmlType::kQ8_0 || type == GgmlType::kQ5_0 ||
         type == GgmlType::kIQ4_NL || HasMinLaneLayout(type);
}

void RowToLanes(GgmlType type, const uint8_t* gguf, uint8_t* lanes, int64_t n_in) {
  if (HasMinLaneLayout(type)) return RowToMinLanes(type, gguf, lanes, n_in);
  MoveRow(type, gguf, lanes, n_in, /*to_lanes=*/true);
}

void RowFromLanes(GgmlType type, const uint8_t* lanes, uint8_t* gguf, int64_t n_in) {
  if (HasMinLaneLayout(type)) return RowFromMinLanes(type, lanes, gguf, n_in);
  MoveRow(type, lanes, gguf, n_in, /*to_lanes=*/false);
}

}  // namespace swarm::kernels::cpu
