// Quant<> chunk decoders (see dequantize.cuh) of Q4_1, Q5_0 and Q5_K, bit-identical to
// quant_reference's DequantizeRow. Included by dequantize.cuh only.
#pragma once

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace swarm::kernels::gpu {

// a * b + c with the product and the sum rounded separately (as the reference).
__host__ __device__ __forceinline__ float MulAddRn(float a, float b, float c) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(__fmul_rn(a, b), c);
#else
  return a * b + c;
#endif
}

// Q4_1: 32 elements = fp16 d, fp16 m, 16 bytes of nibbles laid out as Q4_0's; x = q * d + m.
// A chunk is 4 bytes: elements 4c..4c+3 and 16+4c..16+4c+3.
template <int kFloatRun>
struct Quant<WType::kQ4_1, kFloatRun> {
  static constexpr int kBlock = 32, kBytes = 20, kChunks = 4, kRuns = 2, kRunLen = 4;
  __host__ __device__ __forceinline__ static void Load(const uint8_t* block, int c, float* v,
                                                       int* off) {
    const float d = HalfBitsToFloat(LoadU16(block));
    const float m = HalfBitsToFloat(LoadU16(block + 2));
    const uint32_t q = LoadU32Unaligned2(block + 4 + 4 * c);
    SWARM_UNROLL
    for (int k = 0; k < 4; ++k) {
      const int byte = static_cast<int>((q >> (8 * k)) & 0xff);
      v[k] = MulAddRn(static_cast<float>(byte & 0x0f), d, m);
      v[4 + k] = MulAddRn(static_cast<float>(byte >> 4), d, m);
    }
    off[0] = 4 * c;
    off[1] = 16 + 4 * c;
  }
};

// Q5_0: 32 elements = fp16 d, 4 bytes of fifth bits (bit e: element e), 16 bytes of nibbles laid
// out as Q4_0's; x = (q - 16) * d. Chunks as Q4_1's.
template <int kFloatRun>
struct Quant<WType::kQ5_0, kFloatRun> {
  static constexpr int kBlock = 32, kBytes = 22, kChunks = 4, kRuns = 2, kRunLen = 4;
  __host__ __device__ __forceinline__ static void Load(const uint8_t* block, int c, float* v,
                                                       int* off) {
    const float d = HalfBitsToFloat(LoadU16(block));
    const uint32_t qh = LoadU32Unaligned2(block + 2);
    const uint32_t q = LoadU32Unaligned2(block + 6 + 4 * c);
    SWARM_UNROLL
    for (int k = 0; k < 4; ++k) {
      const int byte = static_cast<int>((q >> (8 * k)) & 0xff);
      const int e = 4 * c + k;
      const int h0 = static_cast<int>((qh >> e) & 1) << 4;
      const int h1 = static_cast<int>((qh >> (e + 16)) & 1) << 4;
      v[k] = static_cast<float>(((byte & 0x0f) | h0) - 16) * d;
      v[4 + k] = static_cast<float>(((byte >> 4) | h1) - 16) * d;
    }
    off[0] = 4 * c;
    off[1] = 16 + 4 * c;
  }
};

// Q5_K: 256 elements = fp16 d, fp16 dmin, 12 scale bytes (as Q4_K), qh[32], qs[128] (as Q4_K's).
// Element 32j + l has its fifth bit in bit j of qh[l]. Chunks as Q4_K's: 8 bytes of one group of
// 64 elements, 16 elements.
template <int kFloatRun>
struct Quant<WType::kQ5_K, kFloatRun> {
  static constexpr int kBlock = 256, kBytes = 176, kChunks = 16, kRuns = 2, kRunLen = 8;
  __host__ __device__ __forceinline__ static void Load(const uint8_t* block, int c, float* v,
                                                       int* off) {
    const int group = c / 4, part = c % 4;
    const float d = HalfBitsToFloat(LoadU16(block));
    const float dmin = HalfBitsToFloat(LoadU16(block + 2));
    int sc, m;
    Quant<WType::kQ4_K, kFloatRun>::ScaleMin(block + 4, 2 * group, &sc, &m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    Quant<WType::kQ4_K, kFloatRun>::ScaleMin(block + 4, 2 * group + 1, &sc, &m);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
    // Blocks are 176 bytes (a multiple of 16) and rows start aligned: qh + 8k and qs + 8k are
    // 8-byte aligned.
    const uint2 h = Ldg(reinterpret_cast<const uint2*>(block + 16 + 8 * part));
    const uint2 q = Ldg(reinterpret_cast<const uint2*>(block + 48 + 32 * group + 8 * part));
    SWARM_UNROLL
    for (int k = 0; k < 8; ++k) {
      const uint32_t word = k < 4 ? q.x : q.y;
      const uint32_t hword = k < 4 ? h.x : h.y;
      const int byte = static_cast<int>((word >> (8 * (k % 4))) & 0xff);
      const int hb = static_cast<int>((hword >> (8 * (k % 4))) & 0xff);
      const int lo = (byte & 0x0f) | (((hb >> (2 * group)) & 1) << 4);
      const int hi = (byte >> 4) | (((hb >> (2 * group + 1)) & 1) << 4);
      v[k] = SubRn(MulRn(d1, static_cast<float>(lo)), m1);
      v[8 + k] = SubRn(MulRn(d2, static_cast<float>(hi)), m2);
    }
    off[0] = 64 * group + 8 * part;
    off[1] = 64 * group + 32 + 8 * part;
  }
};

}  // namespace swarm::kernels::gpu
