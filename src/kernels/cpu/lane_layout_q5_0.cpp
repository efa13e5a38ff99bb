#include "kernels/cpu/lane_layout_q5_0.h"

#include <cstddef>
#include <cstring>

#include "kernels/cpu/kernels.h"

namespace swarm::kernels::cpu {
namespace {

constexpr int kGroupBlocks = 16;

// Byte offsets, within a group, of block `lane`'s h (4 bytes) and of its v piece c (4 bytes).
size_t BitsAt(int lane) { return kQ5_0LaneBitsOffset + 4 * lane; }
size_t PieceAt(int c, int lane) { return kQ5_0LaneQuantsOffset + 64 * c + 4 * lane; }

// A GGUF block's 32 quants (0..31) and back.
void QuantsOf(const uint8_t* block, uint8_t (&q)[32]) {
  uint32_t qh;
  std::memcpy(&qh, block + offsetof(BlockQ5_0, qh), sizeof qh);
  const uint8_t* qs = block + offsetof(BlockQ5_0, qs);
  for (int e = 0; e < 16; ++e) {
    q[e] = static_cast<uint8_t>((qs[e] & 0x0f) | (((qh >> e) & 1u) << 4));
    q[e + 16] = static_cast<uint8_t>((qs[e] >> 4) | (((qh >> (e + 16)) & 1u) << 4));
  }
}

void BlockFrom(const uint8_t (&q)[32], uint8_t* block) {
  uint32_t qh = 0;
  uint8_t* qs = block + offsetof(BlockQ5_0, qs);
  for (int e = 0; e < 16; ++e) {
    qs[e] = static_cast<uint8_t>((q[e] & 0x0f) | ((q[e + 16] & 0x0f) << 4));
    qh |= static_cast<uint32_t>(q[e] >> 4) << e | static_cast<uint32_t>(q[e + 16] >> 4) << (e + 16);
  }
  std::memcpy(block + offsetof(BlockQ5_0, qh), &qh, sizeof qh);
}

}  // namespace

void GroupToLanesQ5_0(const uint8_t* gguf, uint8_t* lanes) {
  for (int lane = 0; lane < kGroupBlocks; ++lane) {
    const uint8_t* block = gguf + sizeof(BlockQ5_0) * BlockOfLane(kX8LanesQ4_0, lane);
    std::memcpy(lanes + 2 * lane, block + offsetof(BlockQ5_0, d), 2);
    uint8_t q[32];
    QuantsOf(block, q);
    uint8_t* h = lanes + BitsAt(lane);
    std::memset(h, 0, 4);
    for (int c = 0; c < 4; ++c) {
      uint8_t* v = lanes + PieceAt(c, lane);
      for (int k = 0; k < 4; ++k) {
        const uint8_t a = q[4 * c + k], b = q[16 + 4 * c + k];
        v[k] = static_cast<uint8_t>(a | (b >> 2) << 5);
        h[k] = static_cast<uint8_t>(h[k] | (b & 3) << (2 * c));
      }
    }
  }
}

void GroupFromLanesQ5_0(const uint8_t* lanes, uint8_t* gguf) {
  for (int lane = 0; lane < kGroupBlocks; ++lane) {
    uint8_t* block = gguf + sizeof(BlockQ5_0) * BlockOfLane(kX8LanesQ4_0, lane);
    std::memcpy(block + offsetof(BlockQ5_0, d), lanes + 2 * lane, 2);
    uint8_t q[32];
    const uint8_t* h = lanes + BitsAt(lane);
    for (int c = 0; c < 4; ++c) {
      const uint8_t* v = lanes + PieceAt(c, lane);
      for (int k = 0; k < 4; ++k) {
        q[4 * c + k] = v[k] & 0x1f;
        q[16 + 4 * c + k] = static_cast<uint8_t>((v[k] >> 5) << 2 | ((h[k] >> (2 * c)) & 3));
      }
    }
    BlockFrom(q, block);
  }
}

}  // namespace swarm::kernels::cpu
