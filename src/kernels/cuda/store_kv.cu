#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/store_kv.cuh"

namespace swarm::kernels::gpu {
namespace {

constexpr int kThreads = 256;

// blockIdx.y: token.
__global__ void StoreKvKernel(const float* __restrict__ k, const float* __restrict__ v,
                              int64_t kv_dim, const int32_t* __restrict__ positions, float* k_cache,
                              float* v_cache) {
  const int64_t t = blockIdx.y;
  const int64_t dst = static_cast<int64_t>(positions[t]) * kv_dim;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < kv_dim;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    k_cache[dst + i] = k[t * kv_dim + i];
    v_cache[dst + i] = v[t * kv_dim + i];
  }
}

}  // namespace

cudaError_t LaunchStoreKv(const float* k, const float* v, int64_t kv_dim, int64_t n_tokens,
                          const int32_t* positions, float* k_cache, float* v_cache,
                          cudaStream_t stream) {
  if (n_tokens <= 0 || kv_dim <= 0) return cudaSuccess;
  constexpr int64_t kMaxTokensPerLaunch = 65535;  // gridDim.y limit
  for (int64_t first = 0; first < n_tokens; first += kMaxTokensPerLaunch) {
    const int64_t count = std::min(n_tokens - first, kMaxTokensPerLaunch);
    const dim3 grid(std::min(CeilDiv(kv_dim, kThreads), 64u), static_cast<unsigned>(count));
    SWARM_LAUNCH(grid, kThreads, 0, stream, StoreKvKernel)
    (k + first * kv_dim, v + first * kv_dim, kv_dim, positions + first, k_cache, v_cache);
  }
  return cudaGetLastError();
}

}  // namespace swarm::kernels::gpu
