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

// The generic table, as a starting point the SIMD tables override entry by entry.
KernelTable GenericKernelTable();

// Fills the lane section of an X8 token (l.lane_groups groups; nothing when there is none) from
// its natural sections, which must be complete.
void FillX8Lanes(const X8Layout& l, uint8_t* dst);

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
void MatMulQ4_0Lanes(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ4_K(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ6_K(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
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
