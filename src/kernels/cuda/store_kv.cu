#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kv_values.cuh"
#include "kernels/cuda/store_kv.cuh"

namespace swarm::kernels::gpu {
namespace {

constexpr int kThreads = 256;

// Value i of a token's row x stored into the cache row `row` of `type`. For q8_0 the 32 lanes of
// a warp hold one block (i = 32b + lane): kv_dim is a multiple of 32 and the thread stride a
// multiple of the warp size, so every lane of a warp runs the same iterations.
__device__ __forceinline__ void StoreValue(float x, uint32_t type, int64_t i, uint8_t* row) {
  if (type == kKvF16) {
    reinterpret_cast<uint16_t*>(row)[i] = __half_as_ushort(__float2half_rn(x));
  } else if (type == kKvQ8_0) {
    const Q8Value v = QuantizeQ8InWarp(x);
    uint8_t* block = row + (i / kKvQ8Block) * kKvQ8BlockBytes;
    block[2 + i % kKvQ8Block] = static_cast<uint8_t>(v.q);
    if (i % kKvQ8Block == 0) reinterpret_cast<uint16_t*>(block)[0] = v.d_bits;
  } else {
    reinterpret_cast<float*>(row)[i] = x;
  }
}

// blockIdx.y: token.
__global__ void StoreKvKernel(const float* __restrict__ k, const float* __restrict__ v,
                              int64_t kv_dim, const int32_t* __restrict__ positions,
                              uint32_t k_type, uint32_t v_type, uint8_t* k_cache,
                              uint8_t* v_cache) {
  const int64_t t = blockIdx.y;
  uint8_t* k_row = k_cache + static_cast<int64_t>(positions[t]) * KvBytes(k_type, kv_dim);
  uint8_t* v_row = v_cache + static_cast<int64_t>(positions[t]) * KvBytes(v_type, kv_dim);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < kv_dim;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    StoreValue(k[t * kv_dim + i], k_type, i, k_row);
    StoreValue(v[t * kv_dim + i], v_type, i, v_row);
  }
}

}  // namespace

cudaError_t LaunchStoreKv(const float* k, const float* v, int64_t kv_dim, int64_t n_tokens,
                          const int32_t* positions, uint32_t k_type, uint32_t v_type, void* k_cache,
                          void* v_cache, cudaStream_t stream) {
  if (n_tokens <= 0 || kv_dim <= 0) return cudaSuccess;
  for (uint32_t type : {k_type, v_type}) {
    if (type != kKvF32 && type != kKvF16 && type != kKvQ8_0) return cudaErrorInvalidValue;
    if (type == kKvQ8_0 && kv_dim % kKvQ8Block != 0) return cudaErrorInvalidValue;
  }
  constexpr int64_t kMaxTokensPerLaunch = 65535;  // gridDim.y limit
  for (int64_t first = 0; first < n_tokens; first += kMaxTokensPerLaunch) {
    const int64_t count = std::min(n_tokens - first, kMaxTokensPerLaunch);
    const dim3 grid(std::min(CeilDiv(kv_dim, kThreads), 64u), static_cast<unsigned>(count));
    SWARM_LAUNCH(grid, kThreads, 0, stream, StoreKvKernel)
    (k + first * kv_dim, v + first * kv_dim, kv_dim, positions + first, k_type, v_type,
     static_cast<uint8_t*>(k_cache), static_cast<uint8_t*>(v_cache));
  }
  return cudaGetLastError();
}

}  // namespace swarm::kernels::gpu
