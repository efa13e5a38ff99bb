// Reference arithmetic of IQ4_NL weights (blocks of 32: x = d * kKValuesIq4Nl[q], the 16
// non-uniform levels IQ4_XS also uses), whose integer dot product takes Q8_0 activations.
// Bit-compatible with llama.cpp's quantize_iq4_nl without importance weights (llama-quantize's
// path, which searches the scale; quantize_row_iq4_nl_ref does not), dequantize_row_iq4_nl and
// ggml_vec_dot_iq4_nl_q8_0_generic. Pure functions.
#pragma once

#include <cstdint>

#include "kernels/ggml_type.h"

namespace swarm::kernels::quant_internal {

void QuantizeIQ4_NL(const float* x, BlockIQ4_NL* y, int64_t n_blocks);
void DequantizeIQ4_NL(const BlockIQ4_NL* x, float* y, int64_t n_blocks);
float VecDotIQ4_NLQ8_0(const BlockIQ4_NL* x, const BlockQ8_0* y, int64_t n_blocks);

}  // namespace swarm::kernels::quant_internal
