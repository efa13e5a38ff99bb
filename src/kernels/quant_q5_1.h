// Reference arithmetic of Q5_1 weights (x = d * q + m, 5-bit q), whose integer dot product takes
// Q8_1 activations. Bit-compatible with llama.cpp's quantize_row_q5_1_ref, dequantize_row_q5_1 and
// ggml_vec_dot_q5_1_q8_1_generic. Pure functions.
#pragma once

#include <cstdint>

#include "kernels/ggml_type.h"

namespace swarm::kernels::quant_internal {

void QuantizeQ5_1(const float* x, BlockQ5_1* y, int64_t n_blocks);
void DequantizeQ5_1(const BlockQ5_1* x, float* y, int64_t n_blocks);
float VecDotQ5_1Q8_1(const BlockQ5_1* x, const BlockQ8_1* y, int64_t n_blocks);

}  // namespace swarm::kernels::quant_internal
