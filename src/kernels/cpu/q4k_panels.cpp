#include "kernels/cpu/q4k_panels.h"

#include <cstddef>
#include <cstring>

#include "kernels/ggml_type.h"
#include "kernels/quant_reference_internal.h"

namespace swarm::kernels::cpu {
namespace {

constexpr int kRows = static_cast<int>(kQ4KPanelRows);
constexpr size_t kGroupBytes = kRows * sizeof(BlockQ4_K);
constexpr size_t kNibOffset = 2 * kRows * sizeof(uint16_t);
constexpr size_t kHighOffset = kNibOffset + 64;
constexpr size_t kQsOffset = kHighOffset + 32;
static_assert(kQsOffset + kRows * kQK_K / 2 == kGroupBytes);

// The byte k (0..31) of the nibble and high-bit vectors holding sub-blocks s and 4 + s of row i.
int ByteOf(int i, int s) { return 16 * (i / 4) + 4 * (i % 4) + s; }
// Byte offset, within a group's qs, of GGUF quant bytes 32j + 4l .. + 3 of row i.
size_t QuantOffset(int j, int l, int i) { return kQsOffset + 4 * (kRows * (8 * j + l) + i); }

// The inverse of GetScaleMinK4: the 12 GGUF bytes of 8 6-bit scales and mins.
void PackK4(const uint8_t* sc, const uint8_t* m, uint8_t* q) {
  for (int j = 0; j < 4; ++j) {
    q[j] = static_cast<uint8_t>(sc[j] | (sc[j + 4] >> 4) << 6);
    q[j + 4] = static_cast<uint8_t>(m[j] | (m[j + 4] >> 4) << 6);
    q[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0x0f) | (m[j + 4] & 0x0f) << 4);
  }
}

// Moves super-block b of the 8 rows at `rows` (GGUF, row_bytes apart) into `group`.
void ToGroup(const uint8_t* rows, size_t row_bytes, int64_t b, uint8_t* group) {
  std::memset(group + kNibOffset, 0, kQsOffset - kNibOffset);
  for (int i = 0; i < kRows; ++i) {
    const auto* blk = reinterpret_cast<const BlockQ4_K*>(rows + i * row_bytes) + b;
    std::memcpy(group + 2 * i, &blk->d, 2);
    std::memcpy(group + 2 * (kRows + i), &blk->dmin, 2);
    for (int s = 0; s < 8; ++s) {
      uint8_t sc, m;
      quant_internal::GetScaleMinK4(s, blk->scales, &sc, &m);
      const int k = ByteOf(i, s % 4);
      const int half = s / 4;  // low or high nibble; high-bit pair 0/1 (scales), 2/3 (mins)
      group[kNibOffset + k] |= static_cast<uint8_t>((sc & 0x0f) << (4 * half));
      group[kNibOffset + 32 + k] |= static_cast<uint8_t>((m & 0x0f) << (4 * half));
      group[kHighOffset + k] |= static_cast<uint8_t>((sc >> 4) << (2 * half));
      group[kHighOffset + k] |= static_cast<uint8_t>((m >> 4) << (4 + 2 * half));
    }
    for (int j = 0; j < 4; ++j) {
      for (int l = 0; l < 8; ++l)
        std::memcpy(group + QuantOffset(j, l, i), blk->qs + 32 * j + 4 * l, 4);
    }
  }
}

}  // namespace

void Q4KRowsToPanels(const uint8_t* rows, uint8_t* panels, int64_t n_in, int64_t group_begin,
                     int64_t group_end) {
  const int64_t n_super = n_in / kQK_K;
  const size_t row_bytes = static_cast<size_t>(n_super) * sizeof(BlockQ4_K);
  for (int64_t g = group_begin; g < group_end; ++g) {
    const size_t start = static_cast<size_t>(g) * kRows * row_bytes;
    for (int64_t b = 0; b < n_super; ++b) {
      ToGroup(rows + start, row_bytes, b, panels + start + b * kGroupBytes);
    }
  }
}

void Q4KRowFromPanels(const uint8_t* panels, int64_t n_in, int64_t n_out, int64_t r, uint8_t* row) {
  const int64_t n_super = n_in / kQK_K;
  const size_t row_bytes = static_cast<size_t>(n_super) * sizeof(BlockQ4_K);
  if (r >= n_out / kRows * kRows) {
    std::memcpy(row, panels + r * row_bytes, row_bytes);
    return;
  }
  const int i = static_cast<int>(r % kRows);
  const uint8_t* start = panels + (r - i) * row_bytes;
  for (int64_t b = 0; b < n_super; ++b) {
    const uint8_t* group = start + b * kGroupBytes;
    auto* blk = reinterpret_cast<BlockQ4_K*>(row) + b;
    std::memcpy(&blk->d, group + 2 * i, 2);
    std::memcpy(&blk->dmin, group + 2 * (kRows + i), 2);
    uint8_t sc[8], m[8];
    for (int s = 0; s < 8; ++s) {
      const int k = ByteOf(i, s % 4);
      const int half = s / 4;
      const uint8_t high = group[kHighOffset + k];
      sc[s] = static_cast<uint8_t>(((group[kNibOffset + k] >> (4 * half)) & 0x0f) |
                                   ((high >> (2 * half)) & 3) << 4);
      m[s] = static_cast<uint8_t>(((group[kNibOffset + 32 + k] >> (4 * half)) & 0x0f) |
                                  ((high >> (4 + 2 * half)) & 3) << 4);
    }
    PackK4(sc, m, blk->scales);
    for (int j = 0; j < 4; ++j) {
      for (int l = 0; l < 8; ++l)
        std::memcpy(blk->qs + 32 * j + 4 * l, group + QuantOffset(j, l, i), 4);
    }
  }
}

}  // namespace swarm::kernels::cpu
