#include "kernels/cpu/row_panels.h"

#include <algorithm>
#include <cstring>

namespace swarm::kernels::cpu {
namespace {

size_t ElementBytes(GgmlType type) { return type == GgmlType::kF32 ? 4 : 2; }

int64_t PanelWidth(int64_t n_out, int64_t panel) {
  return std::min(kPanelRows, n_out - panel * kPanelRows);
}

}  // namespace

bool HasRowPanels(GgmlType type) {
  return type == GgmlType::kF32 || type == GgmlType::kF16 || type == GgmlType::kBF16;
}

void RowsToPanels(GgmlType type, const uint8_t* rows, uint8_t* panels, int64_t n_in, int64_t n_out,
                  int64_t panel_begin, int64_t panel_end) {
  const size_t e = ElementBytes(type);
  const size_t row_bytes = e * static_cast<size_t>(n_in);
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int64_t width = PanelWidth(n_out, p);
    const size_t start = static_cast<size_t>(p * kPanelRows) * row_bytes;
    for (int64_t i = 0; i < width; ++i) {
      const uint8_t* src = rows + start + i * row_bytes;
      uint8_t* dst = panels + start + i * e;
      for (int64_t k = 0; k < n_in; ++k) std::memcpy(dst + k * width * e, src + k * e, e);
    }
  }
}

void RowFromPanels(GgmlType type, const uint8_t* panels, int64_t n_in, int64_t n_out, int64_t r,
                   uint8_t* row) {
  const size_t e = ElementBytes(type);
  const int64_t p = r / kPanelRows;
  const int64_t width = PanelWidth(n_out, p);
  const uint8_t* src =
      panels + static_cast<size_t>(p * kPanelRows) * e * n_in + (r % kPanelRows) * e;
  for (int64_t k = 0; k < n_in; ++k) std::memcpy(row + k * e, src + k * width * e, e);
}

}  // namespace swarm::kernels::cpu
