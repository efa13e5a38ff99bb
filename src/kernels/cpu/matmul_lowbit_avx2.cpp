// The Q2_K, Q3_K and IQ4_XS products of the AVX2 table (bodies in matmul_lowbit_x86.h).
#include "kernels/cpu/matmul_lowbit_x86.h"

namespace swarm::kernels::cpu {

MatMulFn LowBitMatMulAvx2(GgmlType type) { return LowBitMatMulX86(type); }

}  // namespace swarm::kernels::cpu
