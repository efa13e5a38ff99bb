// Block layouts of the low-bit weight types Q2_K, Q3_K and IQ4_XS (bit-compatible with llama.cpp's
// ggml-common.h), and the IQ4_NL value table IQ4_XS decodes through. Value types only.
#pragma once

#include <cstdint>

#include "kernels/ggml_type.h"

namespace swarm::kernels {

// 16 sub-blocks of 16: element = d * scale(j) * q - dmin * min(j), q in [0, 3].
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];  // low nibble: scale, high nibble: min (4 bits each)
  uint8_t qs[kQK_K / 4];       // per 128 elements: 32 bytes, element 32*s + l in bits 2s..2s+1 of l
  uint16_t d;                  // fp16 super-block scale of the scales
  uint16_t dmin;               // fp16 super-block scale of the mins
};
static_assert(sizeof(BlockQ2_K) == 84);

// 16 sub-blocks of 16: element = d * (scale(j) - 32) * (q - 4 * !high bit), q's low 2 bits as Q2_K.
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];  // high bit of element e: bit e / 32 of byte e % 32
  uint8_t qs[kQK_K / 4];     // low 2 bits, packed as BlockQ2_K::qs
  uint8_t scales[12];        // 16 6-bit scales: low nibbles in bytes 0-7, bit pairs in 8-11
  uint16_t d;                // fp16 super-block scale
};
static_assert(sizeof(BlockQ3_K) == 110);

// 8 sub-blocks of 32: element = d * (scale(j) - 32) * kKValuesIq4Nl[nibble].
struct BlockIQ4_XS {
  uint16_t d;                    // fp16 super-block scale
  uint16_t scales_h;             // high 2 bits of the 6-bit scales, 2 bits per sub-block
  uint8_t scales_l[kQK_K / 64];  // low 4 bits, two sub-blocks per byte
  uint8_t qs[kQK_K / 2];         // per 32 elements: 16 bytes, low nibbles 0-15, high 16-31
};
static_assert(sizeof(BlockIQ4_XS) == 136);

// The 16 non-uniform levels of IQ4_NL / IQ4_XS (ggml's kvalues_iq4nl).
inline constexpr int8_t kKValuesIq4Nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                             1,    13,   25,  38,  53,  69,  89,  113};

// The 6-bit scale (0..63, before the -32 offset) of Q3_K sub-block j (0..15).
inline int Q3_KScale(const uint8_t* scales, int j) {
  const int low = j < 8 ? scales[j] & 0x0f : scales[j - 8] >> 4;
  const int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
  return low | (high << 4);
}

// The 6-bit scale (0..63, before the -32 offset) of IQ4_XS sub-block j (0..7).
inline int IQ4_XSScale(const BlockIQ4_XS& b, int j) {
  return ((b.scales_l[j / 2] >> (4 * (j % 2))) & 0x0f) | (((b.scales_h >> (2 * j)) & 3) << 4);
}

// Reference (de)quantization, rounded as llama.cpp's quantize_row_q2_K_ref, quantize_row_q3_K_ref
// and quantize_iq4_xs (without importance weights), and the scalar dot products with Q8_K
// activations (ggml_vec_dot_*_q8_K_generic). Pure functions.
void QuantizeQ2_K(const float* x, BlockQ2_K* y, int64_t n_blocks);
void DequantizeQ2_K(const BlockQ2_K* x, float* y, int64_t n_blocks);
float VecDotQ2_KQ8_K(const BlockQ2_K* x, const BlockQ8_K* y, int64_t n_blocks);

void QuantizeQ3_K(const float* x, BlockQ3_K* y, int64_t n_blocks);
void DequantizeQ3_K(const BlockQ3_K* x, float* y, int64_t n_blocks);
float VecDotQ3_KQ8_K(const BlockQ3_K* x, const BlockQ8_K* y, int64_t n_blocks);

void QuantizeIQ4_XS(const float* x, BlockIQ4_XS* y, int64_t n_blocks);
void DequantizeIQ4_XS(const BlockIQ4_XS* x, float* y, int64_t n_blocks);
float VecDotIQ4_XSQ8_K(const BlockIQ4_XS* x, const BlockQ8_K* y, int64_t n_blocks);

}  // namespace swarm::kernels
