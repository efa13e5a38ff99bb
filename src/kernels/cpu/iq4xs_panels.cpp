#include "kernels/cpu/iq4xs_panels.h"

#include <cstddef>
#include <cstring>

#include "kernels/block_lowbit.h"
#include "kernels/ggml_type.h"

namespace swarm::kernels::cpu {
namespace {

constexpr int kRows = static_cast<int>(kIQ4XSPanelRows);
constexpr size_t kGroupBytes = kRows * sizeof(BlockIQ4_XS);
constexpr size_t kHighOffset = 2 * kRows;
constexpr size_t kNibOffset = kHighOffset + 16;
constexpr size_t kQsOffset = kNibOffset + 32;
static_assert(kQsOffset + kRows * kQK_K / 2 == kGroupBytes);

// Where the bits of S(i, s) go (iq4xs_panels.h): the nib byte and its nibble, the high byte and
// the bit position of its top 2 bits.
struct ScalePlace {
  size_t nib_byte;
  int nib_shift;
  size_t high_byte;
  int high_shift;
};

ScalePlace PlaceOf(int i, int s) {
  const int r = i % 4, half = i / 4, s4 = s % 4, upper = s / 4;
  return {static_cast<size_t>(16 * half + 4 * r + s4), 4 * upper, static_cast<size_t>(4 * r + s4),
          2 * upper + 4 * half};
}

void ScalesToGroup(const BlockIQ4_XS& blk, int i, uint8_t* group) {
  for (int s = 0; s < 8; ++s) {
    const int v = IQ4_XSScale(blk, s);
    const ScalePlace p = PlaceOf(i, s);
    group[kNibOffset + p.nib_byte] |= static_cast<uint8_t>((v & 0x0f) << p.nib_shift);
    group[kHighOffset + p.high_byte] |= static_cast<uint8_t>((v >> 4) << p.high_shift);
  }
}

void ScalesFromGroup(const uint8_t* group, int i, BlockIQ4_XS* blk) {
  std::memset(blk->scales_l, 0, sizeof blk->scales_l);
  int scales_h = 0;
  for (int s = 0; s < 8; ++s) {
    const ScalePlace p = PlaceOf(i, s);
    const int low = (group[kNibOffset + p.nib_byte] >> p.nib_shift) & 0x0f;
    const int high = (group[kHighOffset + p.high_byte] >> p.high_shift) & 3;
    blk->scales_l[s / 2] |= static_cast<uint8_t>(low << (4 * (s % 2)));
    scales_h |= high << (2 * s);
  }
  blk->scales_h = static_cast<uint16_t>(scales_h);
}

}  // namespace

void IQ4XSRowsToPanels(const uint8_t* rows, uint8_t* panels, int64_t n_in, int64_t group_begin,
                       int64_t group_end) {
  const int64_t n_super = n_in / kQK_K;
  const size_t row_bytes = static_cast<size_t>(n_super) * sizeof(BlockIQ4_XS);
  for (int64_t g = group_begin; g < group_end; ++g) {
    const size_t start = static_cast<size_t>(g) * kRows * row_bytes;
    for (int64_t b = 0; b < n_super; ++b) {
      uint8_t* group = panels + start + b * kGroupBytes;
      std::memset(group + kHighOffset, 0, kQsOffset - kHighOffset);
      for (int i = 0; i < kRows; ++i) {
        const auto* blk = reinterpret_cast<const BlockIQ4_XS*>(rows + start + i * row_bytes) + b;
        std::memcpy(group + 2 * i, &blk->d, 2);
        ScalesToGroup(*blk, i, group);
        for (int l = 0; l < 32; ++l) {
          std::memcpy(group + kQsOffset + 4 * (kRows * l + i), blk->qs + 4 * l, 4);
        }
      }
    }
  }
}

void IQ4XSRowFromPanels(const uint8_t* panels, int64_t n_in, int64_t n_out, int64_t r,
                        uint8_t* row) {
  const int64_t n_super = n_in / kQK_K;
  const size_t row_bytes = static_cast<size_t>(n_super) * sizeof(BlockIQ4_XS);
  if (r >= n_out / kRows * kRows) {
    std::memcpy(row, panels + r * row_bytes, row_bytes);
    return;
  }
  const int i = static_cast<int>(r % kRows);
  const uint8_t* start = panels + (r - i) * row_bytes;
  for (int64_t b = 0; b < n_super; ++b) {
    const uint8_t* group = start + b * kGroupBytes;
    auto* blk = reinterpret_cast<BlockIQ4_XS*>(row) + b;
    std::memcpy(&blk->d, group + 2 * i, 2);
    ScalesFromGroup(group, i, blk);
    for (int l = 0; l < 32; ++l) {
      std::memcpy(blk->qs + 4 * l, group + kQsOffset + 4 * (kRows * l + i), 4);
    }
  }
}

}  // namespace swarm::kernels::cpu
