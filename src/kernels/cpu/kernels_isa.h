// Declarations of the per-ISA kernel functions (defined in *_avx2.cpp / *_avx512.cpp, compiled with
// that ISA's flags). Only the kernel tables refer to them; nothing here may be called on a
// processor that lacks the ISA.
#pragma once

#include <cstdint>

#include "kernels/cpu/kernels.h"

namespace swarm::kernels::cpu {

// The generic table, as a starting point the SIMD tables override entry by entry.
KernelTable GenericKernelTable();

namespace avx512 {
void MatMulF32(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulF16(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulBF16(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ8_0(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ4_0(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ4_K(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ6_K(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
}  // namespace avx512

namespace avx2 {
void MatMulF32(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulF16(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulBF16(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ8_0(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ4_0(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ4_K(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
void MatMulQ6_K(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
}  // namespace avx2

}  // namespace swarm::kernels::cpu
