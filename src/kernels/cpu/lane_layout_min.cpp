#include "kernels/cpu/lane_layout_min.h"

#include <cstddef>
#include <cstring>

#include "kernels/cpu/kernels.h"

namespace swarm::kernels::cpu {
namespace {

constexpr int kGroupBlocks = 16;

// Q5_1's qh word (bit v = fifth bit of value v) in the lane layout's bit order and back.
uint32_t SpreadQh(uint32_t qh) {
  uint32_t out = 0;
  for (int k = 0; k < 4; ++k) {
    for (int j = 0; j < 8; ++j) out |= ((qh >> (4 * j + k)) & 1u) << (8 * k + j);
  }
  return out;
}
uint32_t GatherQh(uint32_t spread) {
  uint32_t out = 0;
  for (int k = 0; k < 4; ++k) {
    for (int j = 0; j < 8; ++j) out |= ((spread >> (8 * k + j)) & 1u) << (4 * j + k);
  }
  return out;
}

// Byte offsets of block `lane`'s parts within a group in the lane layout, and of the same parts
// within its GGUF block: d, m, then the 4 quant pieces; Q5_1's qh is moved apart (its bits are
// reordered).
struct Part {
  size_t gguf;
  size_t lanes;
  size_t bytes;
};

void Parts(GgmlType type, int lane, Part (&parts)[6]) {
  const size_t qs = type == GgmlType::kQ5_1 ? offsetof(BlockQ5_1, qs) : offsetof(BlockQ4_1, qs);
  const size_t pieces = static_cast<size_t>(MinLanesQsOffset(type));
  parts[0] = {0, 2 * static_cast<size_t>(lane), 2};
  parts[1] = {2, kMinLanesMOffset + 2 * static_cast<size_t>(lane), 2};
  for (int c = 0; c < 4; ++c) {
    parts[2 + c] = {qs + 4 * c, pieces + 4 * (16 * static_cast<size_t>(c) + lane), 4};
  }
}

void MoveRow(GgmlType type, const uint8_t* src, uint8_t* dst, int64_t n_in, bool to_lanes) {
  static_assert(offsetof(BlockQ4_1, m) == 2 && offsetof(BlockQ5_1, m) == 2);
  const bool q5 = type == GgmlType::kQ5_1;
  const size_t block_bytes = q5 ? sizeof(BlockQ5_1) : sizeof(BlockQ4_1);
  const size_t group_bytes = block_bytes * kGroupBlocks;
  const int64_t groups = n_in / (32 * kGroupBlocks);
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* in = src + g * group_bytes;
    uint8_t* out = dst + g * group_bytes;
    for (int lane = 0; lane < kGroupBlocks; ++lane) {
      const size_t block = block_bytes * BlockOfLane(kX8LanesQ4_0, lane);
      Part parts[6];
      Parts(type, lane, parts);
      for (const Part& part : parts) {
        if (to_lanes) {
          std::memcpy(out + part.lanes, in + block + part.gguf, part.bytes);
        } else {
          std::memcpy(out + block + part.gguf, in + part.lanes, part.bytes);
        }
      }
      if (q5) {
        const size_t gguf_qh = block + offsetof(BlockQ5_1, qh);
        const size_t lanes_qh = kMinLanesQhOffset + 4 * static_cast<size_t>(lane);
        uint32_t v;
        std::memcpy(&v, in + (to_lanes ? gguf_qh : lanes_qh), sizeof v);
        v = to_lanes ? SpreadQh(v) : GatherQh(v);
        std::memcpy(out + (to_lanes ? lanes_qh : gguf_qh), &v, sizeof v);
      }
    }
  }
  const size_t done = groups * group_bytes;
  std::memcpy(dst + done, src + done, block_bytes * static_cast<size_t>(n_in / 32) - done);
}

}  // namespace

bool HasMinLaneLayout(GgmlType type) { return type == GgmlType::kQ4_1 || type == GgmlType::kQ5_1; }

void RowToMinLanes(GgmlType type, const uint8_t* gguf, uint8_t* lanes, int64_t n_in) {
  MoveRow(type, gguf, lanes, n_in, /*to_lanes=*/true);
}

void RowFromMinLanes(GgmlType type, const uint8_t* lanes, uint8_t* gguf, int64_t n_in) {
  MoveRow(type, lanes, gguf, n_in, /*to_lanes=*/false);
}

}  // namespace swarm::kernels::cpu
