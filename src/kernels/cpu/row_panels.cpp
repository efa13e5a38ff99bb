#include "kernels/cpu/row_panels.h"

#include <algorithm>
#include <cstring>

namespace swarm::kernels::cpu {
namespace {

size_t ElementBytes(GgmlType type) { return type == GgmlType::kF32 ? 4 : 2; }

int64_t PanelWidth(int64_t n_out, int64_t panel) {
  return std::min(kPanelRows, n_out - panel * kPanelRows);
}

// Panels [panel_begin, panel_end) from rows, elements of type E.
template <class E>
void Transpose(const uint8_t* rows, uint8_t* panels, int64_t n_in, int64_t n_out,
               int64_t panel_begin, int64_t panel_end) {
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int64_t width = PanelWidth(n_out, p);
    const auto* src = reinterpret_cast<const E*>(rows) + p * kPanelRows * n_in;
    auto* dst = reinterpret_cast<E*>(panels) + p * kPanelRows * n_in;
    // Writes in order; the panel's rows are read as width streams whose current lines stay in L1.
    for (int64_t k = 0; k < n_in; ++k) {
      for (int64_t i = 0; i < width; ++i) dst[k * width + i] = src[i * n_in + k];
    }
  }
}

}  // namespace

bool HasRowPanels(GgmlType type) {
  return type == GgmlType::kF32 || type == GgmlType::kF16 || type == GgmlType::kBF16;
}

void RowsToPanels(GgmlType type, const uint8_t* rows, uint8_t* panels, int64_t n_in, int64_t n_out,
                  int64_t panel_begin, int64_t panel_end) {
  if (ElementBytes(type) == 4) {
    Transpose<uint32_t>(rows, panels, n_in, n_out, panel_begin, panel_end);
  } else {
    Transpose<uint16_t>(rows, panels, n_in, n_out, panel_begin, panel_end);
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
