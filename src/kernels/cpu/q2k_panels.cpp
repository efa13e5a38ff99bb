#include "kernels/cpu/q2k_panels.h"

#include <cstddef>
#include <cstring>

#include "kernels/block_lowbit.h"
#include "kernels/ggml_type.h"

namespace swarm::kernels::cpu {
namespace {

constexpr int kRows = static_cast<int>(kQ2KPanelRows);
constexpr size_t kGroupBytes = kRows * sizeof(BlockQ2_K);
constexpr size_t kScOffset = 2 * kRows * sizeof(uint16_t);
constexpr size_t kQsOffset = kScOffset + kRows * kQK_K / 16;
static_assert(kQsOffset + kRows * kQK_K / 4 == kGroupBytes);

// Byte offsets, within a group, of GGUF scale bytes 4v .. + 3 and quant bytes 32h + 4l .. + 3 of
// row i.
size_t ScaleOffset(int v, int i) { return kScOffset + 4 * (kRows * v + i); }
size_t QuantOffset(int h, int l, int i) { return kQsOffset + 4 * (kRows * (8 * h + l) + i); }

// Calls copy(panel bytes, row bytes, n) for each piece of row i's super-block `blk` in `group`.
template <class Blk, class Group, class Copy>
void ForEachPiece(Blk* blk, Group* group, int i, Copy copy) {
  copy(group + 2 * i, &blk->d, 2);
  copy(group + 2 * (kRows + i), &blk->dmin, 2);
  for (int v = 0; v < 4; ++v) copy(group + ScaleOffset(v, i), blk->scales + 4 * v, 4);
  for (int h = 0; h < 2; ++h) {
    for (int l = 0; l < 8; ++l) copy(group + QuantOffset(h, l, i), blk->qs + 32 * h + 4 * l, 4);
  }
}

}  // namespace

void Q2KRowsToPanels(const uint8_t* rows, uint8_t* panels, int64_t n_in, int64_t group_begin,
                     int64_t group_end) {
  const int64_t n_super = n_in / kQK_K;
  const size_t row_bytes = static_cast<size_t>(n_super) * sizeof(BlockQ2_K);
  for (int64_t g = group_begin; g < group_end; ++g) {
    const size_t start = static_cast<size_t>(g) * kRows * row_bytes;
    for (int64_t b = 0; b < n_super; ++b) {
      for (int i = 0; i < kRows; ++i) {
        const auto* blk = reinterpret_cast<const BlockQ2_K*>(rows + start + i * row_bytes) + b;
        ForEachPiece(blk, panels + start + b * kGroupBytes, i,
                     [](uint8_t* panel, const void* row, size_t n) { std::memcpy(panel, row, n); });
      }
    }
  }
}

void Q2KRowFromPanels(const uint8_t* panels, int64_t n_in, int64_t n_out, int64_t r, uint8_t* row) {
  const int64_t n_super = n_in / kQK_K;
  const size_t row_bytes = static_cast<size_t>(n_super) * sizeof(BlockQ2_K);
  if (r >= n_out / kRows * kRows) {
    std::memcpy(row, panels + r * row_bytes, row_bytes);
    return;
  }
  const int i = static_cast<int>(r % kRows);
  const uint8_t* start = panels + (r - i) * row_bytes;
  for (int64_t b = 0; b < n_super; ++b) {
    ForEachPiece(reinterpret_cast<BlockQ2_K*>(row) + b, start + b * kGroupBytes, i,
                 [](const uint8_t* panel, void* row, size_t n) { std::memcpy(row, panel, n); });
  }
}

}  // namespace swarm::kernels::cpu
