// AVX2 matrix products of Q4_1, Q5_0 and Q5_K weights (the kernels are in
// matmul_quant_ext_x86.inc, compiled here with this file's AVX2 flags).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/kernels_isa.h"

namespace swarm::kernels::cpu::avx2 {
namespace {
#include "kernels/cpu/matmul_quant_ext_x86.inc"
}  // namespace

void MatMulQ4_1(const MatMulArgs& a, int64_t r0, int64_t r1) {
  ext::DriveUnpacked<ext::Q4_1Kernel, ext::Q32Unpack<GgmlType::kQ4_1>>(a, r0, r1);
}
void MatMulQ5_0(const MatMulArgs& a, int64_t r0, int64_t r1) {
  ext::DriveUnpacked<ext::Q5_0Kernel, ext::Q32Unpack<GgmlType::kQ5_0>>(a, r0, r1);
}
void MatMulQ5_K(const MatMulArgs& a, int64_t r0, int64_t r1) {
  ext::DriveUnpacked<ext::Q5KKernel, ext::Q5KUnpack>(a, r0, r1);
}

}  // namespace swarm::kernels::cpu::avx2
