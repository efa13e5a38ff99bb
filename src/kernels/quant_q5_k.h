// Reference arithmetic of Q5_K weights (Q4_K's super-block of 8 sub-blocks with 6-bit scales and
// mins, plus a fifth bit per quant), whose integer dot product takes Q8_K activations.
// Bit-compatible with llama.cpp's quantize_row_q5_K_ref and ggml_vec_dot_q5_K_q8_K_generic.
#pragma once

#include <cstdint>

#include "kernels/ggml_type.h"

namespace swarm::kernels::quant_internal {

void QuantizeQ5_K(const float* x, BlockQ5_K* y, int64_t n_blocks);
void DequantizeQ5_K(const BlockQ5_K* x, float* y, int64_t n_blocks);
float VecDotQ5_KQ8_K(const BlockQ5_K* x, const BlockQ8_K* y, int64_t n_blocks);

// The 256 quants of a block, in [0, 31] (the mins are applied separately).
void UnpackQ5_K(const BlockQ5_K& b, uint8_t* out);

}  // namespace swarm::kernels::quant_internal
