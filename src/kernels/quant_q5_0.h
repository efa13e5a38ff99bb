// Reference arithmetic of Q5_0 weights (x = d * (q - 16), 5-bit q), whose integer dot product
// takes Q8_0 activations. Bit-compatible with llama.cpp's quantize_row_q5_0_ref and
// ggml_vec_dot_q5_0_q8_0_generic. Pure functions.
#pragma once

#include <cstdint>

#include "kernels/ggml_type.h"

namespace swarm::kernels::quant_internal {

void QuantizeQ5_0(const float* x, BlockQ5_0* y, int64_t n_blocks);
void DequantizeQ5_0(const BlockQ5_0* x, float* y, int64_t n_blocks);
float VecDotQ5_0Q8_0(const BlockQ5_0* x, const BlockQ8_0* y, int64_t n_blocks);

// The 32 quants of a block with the -16 offset applied: out[32] in [-16, 15].
void UnpackQ5_0(const BlockQ5_0& b, int8_t* out);

}  // namespace swarm::kernels::quant_internal
