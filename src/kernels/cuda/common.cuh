// Device helpers shared by the CUDA kernels: warp reductions, half/bfloat16 bit conversions,
// unaligned loads and launch-size arithmetic. Included only by .cu files (nvcc).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "kernels/cuda/device_types.h"

// `#pragma unroll` for code that the host compiler also sees (host-device functions).
#ifdef __CUDA_ARCH__
#define SWARM_UNROLL _Pragma("unroll")
#else
#define SWARM_UNROLL
#endif

// Kernel launches and dynamic shared memory go through these two macros so that the same source
// also compiles for the host emulator the tests run without a GPU
// (tests/kernels/cuda_emulation/cuda_emulation.h defines them first).
//   SWARM_LAUNCH(grid, block, shared_bytes, stream, Kernel<...>)(args...);
//   SWARM_DYNAMIC_SHARED(float, smem);  // extern __shared__ float smem[];
#ifndef SWARM_LAUNCH
#define SWARM_LAUNCH(grid, block, shared_bytes, stream, ...) \
  __VA_ARGS__<<<grid, block, shared_bytes, stream>>>
#endif
#ifndef SWARM_DYNAMIC_SHARED
#define SWARM_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

namespace swarm::kernels::gpu {

inline constexpr int kWarpSize = 32;
inline constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    v += __shfl_xor_sync(kFullMask, v, offset);
  }
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  }
  return v;
}

__device__ __forceinline__ double WarpSum(double v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    v += __shfl_xor_sync(kFullMask, v, offset);
  }
  return v;
}

// Read-only loads: through the read-only data cache on the device, plain loads when the same code
// runs on the host (dequantize_check.cu runs the dequantizers on the CPU to test their layout).
template <class T>
__host__ __device__ __forceinline__ T Ldg(const T* p) {
#ifdef __CUDA_ARCH__
  return __ldg(p);
#else
  return *p;
#endif
}

// Products and differences rounded separately (no fused multiply-add), as the reference computes.
__host__ __device__ __forceinline__ float MulRn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
__host__ __device__ __forceinline__ float SubRn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

__host__ __device__ __forceinline__ float HalfBitsToFloat(uint16_t bits) {
  return __half2float(__ushort_as_half(bits));
}

__host__ __device__ __forceinline__ float Bf16BitsToFloat(uint16_t bits) {
  const uint32_t word = static_cast<uint32_t>(bits) << 16;
#ifdef __CUDA_ARCH__
  return __uint_as_float(word);
#else
  float f;
  std::memcpy(&f, &word, sizeof f);
  return f;
#endif
}

// GGUF blocks are packed (Q8_0: 34 bytes, Q6_K: 210 bytes), so their fields are only 2-byte
// aligned: read them 16 bits at a time.
__host__ __device__ __forceinline__ uint16_t LoadU16(const uint8_t* p) {
  return Ldg(reinterpret_cast<const unsigned short*>(p));
}

// 4 consecutive bytes at a 2-byte aligned address, little endian.
__host__ __device__ __forceinline__ uint32_t LoadU32Unaligned2(const uint8_t* p) {
  return static_cast<uint32_t>(LoadU16(p)) | (static_cast<uint32_t>(LoadU16(p + 2)) << 16);
}

inline unsigned CeilDiv(int64_t a, int64_t b) { return static_cast<unsigned>((a + b - 1) / b); }

}  // namespace swarm::kernels::gpu
