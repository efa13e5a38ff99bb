// Declarations of the per-ISA kernel functions (defined in *_avx2.cpp / *_avx512.cpp, compiled with
// that ISA's flags). Only the kernel tables refer to them; nothing here may be called on a
// processor that lacks the ISA.
#pragma once

#include <cstdint>

#include "kernels/cpu/kernels.h"

// Fully unrolls a loop over a kernel's register tile, so that its accumulators live in registers
// (GCC at -O2 would otherwise keep arrays of vectors in memory).
#define SWARM_UNROLL _Pragma("GCC unroll 16")

namespace swarm::kernels::cpu {

// Spreads the fetch of `total` bytes past p into L2 over `steps` calls of Next(): a
// matrix-matrix driver fetches its next row tile's weights during the current tile's token steps.
// The next tile's rows are a few cache lines each, too short for the hardware prefetcher to
// follow (bench/matmat_bench on Zen 5, one thread, 5632 rows x 512 tokens, AVX-512: Q8_0 219 ->
// 304-309 GFLOP/s, Q6_K 207 -> 267, Q4_K 238 -> 242-256, where weights that stay in cache give
// 339, 287 and 280).
class SpreadPrefetch {
 public:
  SpreadPrefetch(const uint8_t* p, int64_t total, int64_t steps)
      : p_(p),
        total_(total > 0 ? total : 0),
        share_(steps > 0 ? (total_ / 64 + steps - 1) / steps * 64 : total_) {}
  void Next() {
    const int64_t stop = done_ + share_ < total_ ? done_ + share_ : total_;
    for (; done_ < stop; done_ += 64) __builtin_prefetch(p_ + done_, 0, 2);
  }

 private:
  const uint8_t* p_;
  int64_t total_;
  int64_t share_;
  int64_t done_ = 0;
};

// The generic table, as a starting point the SIMD tables override entry by entry.
KernelTable GenericKernelTable();

// Fills the lane section of an X8 token (l.lane_groups groups; nothing when there is none) from
// its natural sections, which must be complete.
void FillX8Lanes(const X8Layout& l, uint8_t* dst);

// The Q4_1, Q5_0 and Q5_K products (matmul_quant_ext_*.cpp), per ISA.
namespace generic {
void MatMulQ4_1(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ5_1(const MatMulArgs& args, int64_t row_begin, int64_t row_end);  // matmul_nl_*
void MatMulIQ4_NL(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ5_0(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ5_K(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
}  // namespace generic
namespace avx2 {
void MatMulQ4_1(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ5_1(const MatMulArgs& args, int64_t row_begin, int64_t row_end);  // matmul_nl_*
void MatMulIQ4_NL(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ5_0(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ5_K(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
}  // namespace avx2
namespace avx512 {
void MatMulQ4_1(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ5_1(const MatMulArgs& args, int64_t row_begin, int64_t row_end);  // matmul_nl_*
void MatMulIQ4_NL(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ5_0(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ5_K(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
}  // namespace avx512

namespace avx512 {
void MatMulF32(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulF16(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulBF16(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
// Over weights in the row-panel layout (row_panels.h).
void MatMulF32Panels(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulF16Panels(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulBF16Panels(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ8_0(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ4_0(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ8_0Lanes(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ4_0Lanes(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ4_K(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ6_K(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
}  // namespace avx512

namespace avx2 {
void MatMulF32(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulF16(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulBF16(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ8_0(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ4_0(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ8_0Lanes(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ4_0Lanes(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ4_K(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ6_K(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
// Over Q4_K weights in the row-panel layout (q4k_panels.h).
void MatMulQ4_KPanels(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
// Over Q6_K weights in the row-panel layout (q6k_panels.h).
void MatMulQ6_KPanels(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
// Over Q4_1 / Q5_1 weights in their lane layout (lane_layout_min.h).
void MatMulQ4_1Lanes(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ5_1Lanes(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
// Over Q5_0 and IQ4_NL weights in the lane layout (matmul_lanes_q5nl_avx2.cpp).
void MatMulQ5_0Lanes(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulIQ4_NLLanes(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
// Over Q5_K weights in the row-panel layout (q5k_panels.h).
void MatMulQ5_KPanels(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
// Over Q2_K weights in the row-panel layout (q2k_panels.h).
void MatMulQ2_KPanels(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
// Over Q3_K weights in the row-panel layout (q3k_panels.h).
void MatMulQ3_KPanels(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
// Over IQ4_XS weights in the row-panel layout (iq4xs_panels.h).
void MatMulIQ4_XSPanels(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
}  // namespace avx2

}  // namespace swarm::kernels::cpu

// Machine-probe loops (machine_probe.h), per ISA: ReadSum reads n bytes (n a multiple of 256,
// p 64-byte aligned) and returns a value that depends on all of them; FmaLoop runs `iters`
// iterations of kFmaChains independent fp32 FMA chains of the ISA's vector width.
namespace swarm::kernels::cpu {
inline constexpr int kFmaChains = 12;
namespace avx512 {
uint64_t ReadSum(const uint8_t* p, size_t n);
float FmaLoop(int64_t iters);  // 16 lanes
}  // namespace avx512
namespace avx2 {
uint64_t ReadSum(const uint8_t* p, size_t n);
float FmaLoop(int64_t iters);  // 8 lanes
}  // namespace avx2
}  // namespace swarm::kernels::cpu
