// Quant<> chunk decoders (see dequantize.cuh) of Q5_1 and IQ4_NL, the 32-element types llama.cpp's
// quantizer falls back to, bit-identical to quant_reference's DequantizeRow. Included by
// dequantize.cuh only, after Q5_0's (MulAddRn) and IQ4_XS's (Level) decoders.
#pragma once

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace swarm::kernels::gpu {

// Q5_1: 32 elements = fp16 d, fp16 m, 4 bytes of fifth bits (bit e: element e), 16 bytes of
// nibbles laid out as Q4_0's; x = q * d + m. A chunk is 4 bytes: elements 4c..4c+3 and
// 16+4c..16+4c+3.
template <int kFloatRun>
struct Quant<WType::kQ5_1, kFloatRun> {
  static constexpr int kBlock = 32, kBytes = 24, kChunks = 4, kRuns = 2, kRunLen = 4;
  __host__ __device__ __forceinline__ static void Load(const uint8_t* block, int c, float* v,
                                                       int* off) {
    const float d = HalfBitsToFloat(LoadU16(block));
    const float m = HalfBitsToFloat(LoadU16(block + 2));
    const uint32_t qh = LoadU32Unaligned2(block + 4);
    const uint32_t q = LoadU32Unaligned2(block + 8 + 4 * c);
    SWARM_UNROLL
    for (int k = 0; k < 4; ++k) {
      const int byte = static_cast<int>((q >> (8 * k)) & 0xff);
      const int e = 4 * c + k;
      const int h0 = static_cast<int>((qh >> e) & 1) << 4;
      const int h1 = static_cast<int>((qh >> (e + 16)) & 1) << 4;
      v[k] = MulAddRn(static_cast<float>((byte & 0x0f) | h0), d, m);
      v[4 + k] = MulAddRn(static_cast<float>((byte >> 4) | h1), d, m);
    }
    off[0] = 4 * c;
    off[1] = 16 + 4 * c;
  }
};

// IQ4_NL: 32 elements = fp16 d, 16 bytes of nibbles laid out as Q4_0's, each an index into the
// IQ4_NL levels; x = d * level. Chunks as Q5_1's.
template <int kFloatRun>
struct Quant<WType::kIQ4_NL, kFloatRun> {
  static constexpr int kBlock = 32, kBytes = 18, kChunks = 4, kRuns = 2, kRunLen = 4;
  __host__ __device__ __forceinline__ static void Load(const uint8_t* block, int c, float* v,
                                                       int* off) {
    const float d = HalfBitsToFloat(LoadU16(block));
    const uint32_t q = LoadU32Unaligned2(block + 2 + 4 * c);
    SWARM_UNROLL
    for (int k = 0; k < 4; ++k) {
      const int byte = static_cast<int>((q >> (8 * k)) & 0xff);
      v[k] = d * static_cast<float>(Quant<WType::kIQ4_XS, kFloatRun>::Level(byte & 0x0f));
      v[4 + k] = d * static_cast<float>(Quant<WType::kIQ4_XS, kFloatRun>::Level(byte >> 4));
    }
    off[0] = 4 * c;
    off[1] = 16 + 4 * c;
  }
};

}  // namespace swarm::kernels::gpu
