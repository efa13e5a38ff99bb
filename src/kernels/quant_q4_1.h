// Reference arithmetic of Q4_1 weights (x = d * q + m, 4-bit q) and of Q8_1, the activation type
// their integer dot product takes (as llama.cpp pairs them). Bit-compatible with llama.cpp's
// quantize_row_q4_1_ref / quantize_row_q8_1_ref / ggml_vec_dot_q4_1_q8_1_generic. Pure functions.
#pragma once

#include <cstdint>

#include "kernels/ggml_type.h"

namespace swarm::kernels::quant_internal {

void QuantizeQ4_1(const float* x, BlockQ4_1* y, int64_t n_blocks);
void DequantizeQ4_1(const BlockQ4_1* x, float* y, int64_t n_blocks);
void QuantizeQ8_1(const float* x, BlockQ8_1* y, int64_t n_blocks);
void DequantizeQ8_1(const BlockQ8_1* x, float* y, int64_t n_blocks);
float VecDotQ4_1Q8_1(const BlockQ4_1* x, const BlockQ8_1* y, int64_t n_blocks);

}  // namespace swarm::kernels::quant_internal
