#include "kernels/cpu/row_panels.h"

#include <algorithm>
#include <cstring>

#include "kernels/cpu/iq4xs_panels.h"
#include "kernels/cpu/q2k_panels.h"
#include "kernels/cpu/q3k_panels.h"
#include "kernels/cpu/q4k_panels.h"
#include "kernels/cpu/q5k_panels.h"
#include "kernels/cpu/q6k_panels.h"

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
  return type == GgmlType::kF32 || type == GgmlType::kF16 || type == GgmlType::kBF16 ||
         type == GgmlType::kQ4_K || type == GgmlType::kQ6_K || type == GgmlType::kQ5_K ||
         type == GgmlType::kQ2_K || type == GgmlType::kQ3_K || type == GgmlType::kIQ4_XS;
}

void RowsToPanels(GgmlType type, const uint8_t* rows, uint8_t* panels, int64_t n_in, int64_t n_out,
                  int64_t panel_begin, int64_t panel_end) {
  if (type == GgmlType::kQ4_K || type == GgmlType::kQ6_K || type == GgmlType::kQ5_K ||
      type == GgmlType::kQ2_K || type == GgmlType::kQ3_K || type == GgmlType::kIQ4_XS) {
    // Groups of 8 rows (q4k_panels.h, q5k_panels.h, q6k_panels.h, q2k_panels.h, q3k_panels.h,
    // iq4xs_panels.h); a
    // panel of 64 rows holds whole groups, the last panel's rows past its last full group are
    // copied as they are.
    static_assert(kQ4KPanelRows == kQ6KPanelRows && kQ4KPanelRows == kQ5KPanelRows &&
                  kQ4KPanelRows == kQ2KPanelRows && kQ4KPanelRows == kQ3KPanelRows &&
                  kQ4KPanelRows == kIQ4XSPanelRows);
    const int64_t row_begin = panel_begin * kPanelRows;
    const int64_t row_end = std::min(n_out, panel_end * kPanelRows);
    const int64_t full_end = std::min(row_end, n_out / kQ4KPanelRows * kQ4KPanelRows);
    if (full_end > row_begin) {
      const auto to_panels = type == GgmlType::kQ4_K   ? Q4KRowsToPanels
                             : type == GgmlType::kQ5_K ? Q5KRowsToPanels
                             : type == GgmlType::kQ6_K ? Q6KRowsToPanels
                             : type == GgmlType::kQ2_K ? Q2KRowsToPanels
                             : type == GgmlType::kQ3_K ? Q3KRowsToPanels
                                                       : IQ4XSRowsToPanels;
      to_panels(rows, panels, n_in, row_begin / kQ4KPanelRows, full_end / kQ4KPanelRows);
    }
    const size_t row_bytes = RowBytes(type, n_in).value();
    const int64_t tail_begin = std::max(row_begin, full_end);
    std::memcpy(panels + tail_begin * row_bytes, rows + tail_begin * row_bytes,
                static_cast<size_t>(row_end - tail_begin) * row_bytes);
    return;
  }
  if (ElementBytes(type) == 4) {
    Transpose<uint32_t>(rows, panels, n_in, n_out, panel_begin, panel_end);
  } else {
    Transpose<uint16_t>(rows, panels, n_in, n_out, panel_begin, panel_end);
  }
}

void RowFromPanels(GgmlType type, const uint8_t* panels, int64_t n_in, int64_t n_out, int64_t r,
                   uint8_t* row) {
  if (type == GgmlType::kQ4_K) return Q4KRowFromPanels(panels, n_in, n_out, r, row);
  if (type == GgmlType::kQ6_K) return Q6KRowFromPanels(panels, n_in, n_out, r, row);
  if (type == GgmlType::kQ5_K) return Q5KRowFromPanels(panels, n_in, n_out, r, row);
  if (type == GgmlType::kQ2_K) return Q2KRowFromPanels(panels, n_in, n_out, r, row);
  if (type == GgmlType::kQ3_K) return Q3KRowFromPanels(panels, n_in, n_out, r, row);
  if (type == GgmlType::kIQ4_XS) return IQ4XSRowFromPanels(panels, n_in, n_out, r, row);
  const size_t e = ElementBytes(type);
  const int64_t p = r / kPanelRows;
  const int64_t width = PanelWidth(n_out, p);
  const uint8_t* src =
      panels + static_cast<size_t>(p * kPanelRows) * e * n_in + (r % kPanelRows) * e;
  for (int64_t k = 0; k < n_in; ++k) std::memcpy(row + k * e, src + k * width * e, e);
}

}  // namespace swarm::kernels::cpu
