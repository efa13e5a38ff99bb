// Reading and writing KV cache values of each cache type on the device (ggml type ids: 0 f32,
// 1 f16, 8 q8_0 in blocks of 32 with an f16 scale), rounded exactly as the CPU reference
// (kernels/kv_types.h says where). Included only by .cu files.
#pragma once

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace swarm::kernels::gpu {

inline constexpr uint32_t kKvF32 = 0;
inline constexpr uint32_t kKvF16 = 1;
inline constexpr uint32_t kKvQ8_0 = 8;
inline constexpr int kKvQ8Block = 32;
inline constexpr int kKvQ8BlockBytes = 34;  // f16 scale + 32 int8

// Bytes of a cache row of n values.
__host__ __device__ __forceinline__ int64_t KvBytes(uint32_t type, int64_t n) {
  if (type == kKvF16) return 2 * n;
  if (type == kKvQ8_0) return n / kKvQ8Block * kKvQ8BlockBytes;
  return 4 * n;
}

// Value i of the row at `row`.
__device__ __forceinline__ float LoadKvValue(const uint8_t* row, uint32_t type, int64_t i) {
  if (type == kKvF16) return HalfBitsToFloat(LoadU16(row + 2 * i));
  if (type == kKvQ8_0) {
    const uint8_t* block = row + (i / kKvQ8Block) * kKvQ8BlockBytes;
    const auto q = static_cast<int8_t>(Ldg(block + 2 + i % kKvQ8Block));
    return MulRn(static_cast<float>(q), HalfBitsToFloat(LoadU16(block)));
  }
  return Ldg(reinterpret_cast<const float*>(row) + i);
}

// q8_0 of the 32 values x held one per lane of a warp (all lanes call it): the block's scale
// d = max|x| / 127 as f16, and round(x / d) (ties away from zero), as quantize_row_q8_0_ref.
struct Q8Value {
  uint16_t d_bits;
  int8_t q;
};
__device__ __forceinline__ Q8Value QuantizeQ8InWarp(float x) {
  const float amax = WarpMax(fabsf(x));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const float rounded = roundf(MulRn(x, id));
  const float r = rounded != rounded ? 0.0f : fminf(127.0f, fmaxf(-128.0f, rounded));
  return {__half_as_ushort(__float2half_rn(d)), static_cast<int8_t>(r)};
}

// x as the K cache type's dot product sees a query value: itself for f32, rounded to f16, or
// quantized to q8_0 and back (a warp's 32 lanes hold one block; every lane calls it).
__device__ __forceinline__ float RoundQueryInWarp(float x, uint32_t k_type) {
  if (k_type == kKvF16) return __half2float(__float2half_rn(x));
  if (k_type == kKvQ8_0) {
    const Q8Value v = QuantizeQ8InWarp(x);
    return MulRn(static_cast<float>(v.q), HalfBitsToFloat(v.d_bits));
  }
  return x;
}

// A softmax probability as P·V reads it: rounded to f16 for an f16 V cache (llama.cpp converts
// the float softmax output to V's type for the matrix product), itself otherwise.
__device__ __forceinline__ float RoundProbability(float p, uint32_t v_type) {
  return v_type == kKvF16 ? __half2float(__float2half_rn(p)) : p;
}

}  // namespace swarm::kernels::gpu
