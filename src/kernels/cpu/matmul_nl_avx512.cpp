// AVX-512 matrix products of Q5_1 and IQ4_NL weights (the kernels are in matmul_nl_x86.inc,
// compiled here with this file's AVX-512 flags).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "kernels/block_lowbit.h"
#include "kernels/cpu/kernels_isa.h"

namespace swarm::kernels::cpu::avx512 {
namespace {
#include "kernels/cpu/matmul_nl_x86.inc"
}  // namespace

void MatMulQ5_1(const MatMulArgs& a, int64_t r0, int64_t r1) {
  nl::Drive<GgmlType::kQ5_1>(a, r0, r1);
}
void MatMulIQ4_NL(const MatMulArgs& a, int64_t r0, int64_t r1) {
  nl::Drive<GgmlType::kIQ4_NL>(a, r0, r1);
}

}  // namespace swarm::kernels::cpu::avx512
