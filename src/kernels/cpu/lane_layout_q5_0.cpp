#include "kernels/cpu/lane_layout_q5_0.h"

#include <cstddef>
#include <cstring>

#include "kernels/cpu/kernels.h"

namespace swarm::kernels::cpu {
namespace {

constexpr int kGroupBlocks = 16;

// Bit (8k + c) of h is bit (4c + k) of qh; bit (8k + 4 + c) of h is bit (16 + 4c + k) of qh.
constexpr int LaneBitOf(int value) {
  const int high = value / 16, c = (value % 16) / 4, k = value % 4;
  return 8 * k + 4 * high + c;
}

uint32_t Load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

void Store32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, sizeof v); }

}  // namespace

uint32_t LaneBitsQ5_0(uint32_t qh) {
  uint32_t h = 0;
  for (int e = 0; e < 32; ++e) h |= ((qh >> e) & 1u) << LaneBitOf(e);
  return h;
}

uint32_t GgufBitsQ5_0(uint32_t h) {
  uint32_t qh = 0;
  for (int e = 0; e < 32; ++e) qh |= ((h >> LaneBitOf(e)) & 1u) << e;
  return qh;
}

void GroupToLanesQ5_0(const uint8_t* gguf, uint8_t* lanes) {
  for (int lane = 0; lane < kGroupBlocks; ++lane) {
    const uint8_t* block = gguf + sizeof(BlockQ5_0) * BlockOfLane(kX8LanesQ4_0, lane);
    std::memcpy(lanes + 2 * lane, block + offsetof(BlockQ5_0, d), 2);
    Store32(lanes + kQ5_0LaneBitsOffset + 4 * lane,
            LaneBitsQ5_0(Load32(block + offsetof(BlockQ5_0, qh))));
    for (int c = 0; c < 4; ++c) {
      std::memcpy(lanes + kQ5_0LaneQuantsOffset + 64 * c + 4 * lane,
                  block + offsetof(BlockQ5_0, qs) + 4 * c, 4);
    }
  }
}

void GroupFromLanesQ5_0(const uint8_t* lanes, uint8_t* gguf) {
  for (int lane = 0; lane < kGroupBlocks; ++lane) {
    uint8_t* block = gguf + sizeof(BlockQ5_0) * BlockOfLane(kX8LanesQ4_0, lane);
    std::memcpy(block + offsetof(BlockQ5_0, d), lanes + 2 * lane, 2);
    Store32(block + offsetof(BlockQ5_0, qh),
            GgufBitsQ5_0(Load32(lanes + kQ5_0LaneBitsOffset + 4 * lane)));
    for (int c = 0; c < 4; ++c) {
      std::memcpy(block + offsetof(BlockQ5_0, qs) + 4 * c,
                  lanes + kQ5_0LaneQuantsOffset + 64 * c + 4 * lane, 4);
    }
  }
}

}  // namespace swarm::kernels::cpu
