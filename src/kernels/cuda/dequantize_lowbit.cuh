// Register dequantizers of Q2_K, Q3_K and IQ4_XS for the CUDA kernels (the Quant<> chunk contract
// of dequantize.cuh), rounded as quant_reference_lowbit.cpp's DequantizeRow. Included by
// dequantize.cuh only.
#pragma once

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace swarm::kernels::gpu {

// Q2_K / Q3_K 2-bit quants: per half h (128 elements), byte l of qs[32h..32h+31] holds elements
// 128h + 32s + l in bit pair s. A chunk is 4 bytes at l0 = 4 (c % 8) of half c / 8: elements
// 128h + 32s + l0 + k, 4 runs of 4; sub-block (of 16) 8h + 2s + l0 / 16.

// Q2_K: 84 bytes = scales[16] (low nibble scale, high nibble min), qs[64], fp16 d, fp16 dmin.
template <int kFloatRun>
struct Quant<WType::kQ2_K, kFloatRun> {
  static constexpr int kBlock = 256, kBytes = 84, kChunks = 16, kRuns = 4, kRunLen = 4;
  __host__ __device__ __forceinline__ static void Load(const uint8_t* block, int c, float* v,
                                                       int* off) {
    const int half = c / 8, l0 = 4 * (c % 8);
    const uint32_t q = LoadU32Unaligned2(block + 16 + 32 * half + l0);
    const float d = HalfBitsToFloat(LoadU16(block + 80));
    const float dmin = HalfBitsToFloat(LoadU16(block + 82));
    SWARM_UNROLL
    for (int s = 0; s < 4; ++s) {
      const int sc = Ldg(block + 8 * half + 2 * s + l0 / 16);
      const float dl = d * static_cast<float>(sc & 0x0f);
      const float ml = dmin * static_cast<float>(sc >> 4);
      SWARM_UNROLL
      for (int k = 0; k < 4; ++k) {
        const int v2 = static_cast<int>((q >> (8 * k + 2 * s)) & 3);
        v[4 * s + k] = SubRn(MulRn(dl, static_cast<float>(v2)), ml);
      }
      off[s] = 128 * half + 32 * s + l0;
    }
  }
};

// Q3_K: 110 bytes = hmask[32] (high bit of element e: bit e / 32 of byte e % 32), qs[64], 12 bytes
// of 6-bit scales (low nibbles in bytes 0-7, bit pairs in 8-11), fp16 d.
template <int kFloatRun>
struct Quant<WType::kQ3_K, kFloatRun> {
  static constexpr int kBlock = 256, kBytes = 110, kChunks = 16, kRuns = 4, kRunLen = 4;
  __host__ __device__ __forceinline__ static int Scale(const uint8_t* scales, int j) {
    const int low = j < 8 ? Ldg(scales + j) & 0x0f : Ldg(scales + j - 8) >> 4;
    const int high = (Ldg(scales + 8 + j % 4) >> (2 * (j / 4))) & 3;
    return (low | (high << 4)) - 32;
  }
  __host__ __device__ __forceinline__ static void Load(const uint8_t* block, int c, float* v,
                                                       int* off) {
    const int half = c / 8, l0 = 4 * (c % 8);
    const uint32_t q = LoadU32Unaligned2(block + 32 + 32 * half + l0);
    const uint32_t hm = LoadU32Unaligned2(block + l0);
    const float d = HalfBitsToFloat(LoadU16(block + 108));
    SWARM_UNROLL
    for (int s = 0; s < 4; ++s) {
      const float dl = d * static_cast<float>(Scale(block + 96, 8 * half + 2 * s + l0 / 16));
      const int bit = 4 * half + s;
      SWARM_UNROLL
      for (int k = 0; k < 4; ++k) {
        const int low = static_cast<int>((q >> (8 * k + 2 * s)) & 3);
        const int high = static_cast<int>((hm >> (8 * k + bit)) & 1);
        v[4 * s + k] = dl * static_cast<float>(low - (high ? 0 : 4));
      }
      off[s] = 128 * half + 32 * s + l0;
    }
  }
};

// IQ4_XS: 136 bytes = fp16 d, uint16 scales_h, scales_l[4], qs[128]; sub-block j (32 elements) has
// 6-bit scale (nibble j of scales_l) | (bit pair j of scales_h) << 4, offset 32, and its quants in
// qs[16j..16j+15] (low nibbles elements 0-15, high 16-31), each an index into the IQ4_NL levels.
// A chunk is 4 bytes of one sub-block: 2 runs of 4.
template <int kFloatRun>
struct Quant<WType::kIQ4_XS, kFloatRun> {
  static constexpr int kBlock = 256, kBytes = 136, kChunks = 32, kRuns = 2, kRunLen = 4;
  // The 16 levels (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113) as
  // bytes of two words, so that host and device read them without a table in memory.
  __host__ __device__ __forceinline__ static int Level(int i) {
    constexpr uint64_t kLow = 0xf6eaddcfbfad9881ull, kHigh = 0x7159453526190d01ull;
    const uint64_t word = i < 8 ? kLow : kHigh;
    return static_cast<int8_t>((word >> (8 * (i % 8))) & 0xff);
  }
  __host__ __device__ __forceinline__ static void Load(const uint8_t* block, int c, float* v,
                                                       int* off) {
    const int sub = c / 4, part = c % 4;
    const float d = HalfBitsToFloat(LoadU16(block));
    const int scales_h = LoadU16(block + 2);
    const int ls = ((Ldg(block + 4 + sub / 2) >> (4 * (sub % 2))) & 0x0f) |
                   (((scales_h >> (2 * sub)) & 3) << 4);
    const float dl = d * static_cast<float>(ls - 32);
    const uint32_t q = LoadU32Unaligned2(block + 8 + 16 * sub + 4 * part);
    SWARM_UNROLL
    for (int k = 0; k < 4; ++k) {
      const int byte = static_cast<int>((q >> (8 * k)) & 0xff);
      v[k] = dl * static_cast<float>(Level(byte & 0x0f));
      v[4 + k] = dl * static_cast<float>(Level(byte >> 4));
    }
    off[0] = 32 * sub + 4 * part;
    off[1] = 32 * sub + 16 + 4 * part;
  }
};

}  // namespace swarm::kernels::gpu
