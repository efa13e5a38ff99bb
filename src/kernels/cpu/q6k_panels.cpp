#include "kernels/cpu/q6k_panels.h"

#include <cstddef>
#include <cstring>

#include "kernels/ggml_type.h"

namespace swarm::kernels::cpu {
namespace {

constexpr int kRows = static_cast<int>(kQ6KPanelRows);
constexpr size_t kGroupBytes = kRows * sizeof(BlockQ6_K);
constexpr size_t kScalesOffset = kRows * sizeof(uint16_t);
constexpr size_t kStepsOffset = kScalesOffset + 128;
static_assert(kStepsOffset + 2 * 8 * 3 * kRows * 4 == kGroupBytes);

size_t ScaleOffset(int i, int s) {
  return kScalesOffset + 32 * (s / 4) + 16 * (i / 4) + 4 * (i % 4) + s % 4;
}
// Byte offset of piece p (0: ql, 1: ql + 32, 2: qh) of step (n, l) of row i.
size_t StepOffset(int n, int l, int p, int i) {
  return kStepsOffset + 4 * (kRows * (3 * (8 * n + l) + p) + i);
}
// Offset within a GGUF block of that piece.
size_t GgufOffset(int n, int l, int p) {
  return p == 2 ? offsetof(BlockQ6_K, qh) + 32 * n + 4 * l : 64 * n + 32 * p + 4 * l;
}

// Copies one super-block of row i between GGUF (blk) and its place in a group; to_group picks the
// direction (from blk to group, or back).
void Move(const uint8_t* from, uint8_t* to, int i, bool to_group) {
  auto move = [&](size_t gguf, size_t panel, size_t n) {
    if (to_group) {
      std::memcpy(to + panel, from + gguf, n);
    } else {
      std::memcpy(to + gguf, from + panel, n);
    }
  };
  move(offsetof(BlockQ6_K, d), 2 * i, 2);
  for (int s = 0; s < 16; ++s) move(offsetof(BlockQ6_K, scales) + s, ScaleOffset(i, s), 1);
  for (int n = 0; n < 2; ++n) {
    for (int l = 0; l < 8; ++l) {
      for (int p = 0; p < 3; ++p) move(GgufOffset(n, l, p), StepOffset(n, l, p, i), 4);
    }
  }
}

}  // namespace

void Q6KRowsToPanels(const uint8_t* rows, uint8_t* panels, int64_t n_in, int64_t group_begin,
                     int64_t group_end) {
  const int64_t n_super = n_in / kQK_K;
  const size_t row_bytes = static_cast<size_t>(n_super) * sizeof(BlockQ6_K);
  for (int64_t g = group_begin; g < group_end; ++g) {
    const size_t start = static_cast<size_t>(g) * kRows * row_bytes;
    for (int64_t b = 0; b < n_super; ++b) {
      for (int i = 0; i < kRows; ++i) {
        Move(rows + start + i * row_bytes + b * sizeof(BlockQ6_K), panels + start + b * kGroupBytes,
             i, /*to_group=*/true);
      }
    }
  }
}

void Q6KRowFromPanels(const uint8_t* panels, int64_t n_in, int64_t n_out, int64_t r, uint8_t* row) {
  const int64_t n_super = n_in / kQK_K;
  const size_t row_bytes = static_cast<size_t>(n_super) * sizeof(BlockQ6_K);
  if (r >= n_out / kRows * kRows) {
    std::memcpy(row, panels + r * row_bytes, row_bytes);
    return;
  }
  const int i = static_cast<int>(r % kRows);
  const uint8_t* start = panels + (r - i) * row_bytes;
  for (int64_t b = 0; b < n_super; ++b) {
    Move(start + b * kGroupBytes, row + b * sizeof(BlockQ6_K), i, /*to_group=*/false);
  }
}

}  // namespace swarm::kernels::cpu
