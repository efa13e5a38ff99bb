// Matrix products of the low-bit weight types Q2_K, Q3_K and IQ4_XS against X8 activations (group
// 256, kernels.h), one function per instruction-set level. Each output is one row's dot product
// with one token, computed by the same instructions whatever the tile, so the kernels keep the
// determinism contract of kernels.h. Plain functions; callable from any thread on disjoint rows.
#pragma once

#include "kernels/cpu/kernels.h"

namespace swarm::kernels::cpu {

// The kernel for `type` (Q2_K, Q3_K or IQ4_XS) at that level; null for other types.
MatMulFn LowBitMatMulGeneric(GgmlType type);
MatMulFn LowBitMatMulAvx2(GgmlType type);
MatMulFn LowBitMatMulAvx512(GgmlType type);

}  // namespace swarm::kernels::cpu
