// The Q2_K, Q3_K and IQ4_XS products of the AVX-512 table: the 256-bit bodies of
// matmul_lowbit_x86.h compiled with this level's flags (these types have no 512-bit kernels yet).
#include "kernels/cpu/matmul_lowbit_x86.h"

namespace swarm::kernels::cpu {

MatMulFn LowBitMatMulAvx512(GgmlType type) { return LowBitMatMulX86(type); }

}  // namespace swarm::kernels::cpu
