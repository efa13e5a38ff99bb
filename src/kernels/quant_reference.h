// Plain reference arithmetic on every weight type: obviously-correct code that optimized and device
// kernels are tested against. Layouts and rounding follow llama.cpp's *_ref functions bit for bit.
// Pure functions, callable from any thread. `n` is always a multiple of the type's block size
// (callers validate shapes with RowBytes first); pointers are host memory.
//
// Bit-compatibility holds for IEEE float arithmetic without contraction into fused multiply-adds
// (the default for this project's flags); tests/kernels/test_quant_llama_cpp_golden.cpp checks it
// against llama.cpp's own library. One deliberate difference: an all-zero Q8_K block gets zero
// bsums, where ggml leaves them unwritten.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/ggml_type.h"

namespace swarm::kernels {

// dst: [n] floats from a row of `n` elements of `type` (n a multiple of the block size).
void DequantizeRow(GgmlType type, const void* src, float* dst, int64_t n);

// dst: one row of `n` elements of `type` (any type GetTypeTraits accepts), rounded as llama.cpp's
// quantize_row_*_ref (quantize_iq4_xs / quantize_iq4_nl without importance weights for IQ4_XS /
// IQ4_NL, as llama-quantize writes them; quantize_row_iq4_nl_ref skips the scale search).
// Aborts for a type it has no quantizer for: callers that take the type from input check it with
// CheckQuantizeRow first.
void QuantizeRow(GgmlType type, const float* src, void* dst, int64_t n);

// OK when QuantizeRow can write a row of `n` elements of `type`; InvalidArgument naming the type
// when it has no quantizer for it, or naming the block size when n is not whole blocks.
absl::Status CheckQuantizeRow(GgmlType type, int64_t n);

// Reference dot product of a weight row with float activations: dequantize, then accumulate in
// double, so the result does not depend on summation order beyond float rounding of the output.
float DotRowReference(GgmlType type, const void* row, const float* x, int64_t n);

// The activation type a weight type's integer dot product uses (as ggml's vec_dot_type):
// Q8_0 for Q8_0/Q4_0/Q5_0/IQ4_NL, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants and IQ4_XS; F32 for
// float types.
GgmlType VecDotType(GgmlType weight_type);

// Integer dot product as llama.cpp computes it: `row` of `type`, `x_quant` already quantized to
// VecDotType(type) by QuantizeRow. Plain scalar code.
float VecDotQuantizedReference(GgmlType type, const void* row, const void* x_quant, int64_t n);

}  // namespace swarm::kernels
