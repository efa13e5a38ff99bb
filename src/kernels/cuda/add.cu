#include <algorithm>

#include "kernels/cuda/add.cuh"
#include "kernels/cuda/common.cuh"

namespace swarm::kernels::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

__global__ void AddKernel(float* y, const float* x, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] += x[i];
  }
}

__global__ void AddBiasKernel(float* y, const float* __restrict__ bias, int64_t n_out, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] += bias[i % n_out];
  }
}

__global__ void AddScaledColumnsKernel(float* y, const float* __restrict__ x, int64_t rows,
                                       const int32_t* __restrict__ ids,
                                       const float* __restrict__ scales, int64_t n) {
  const int64_t total = rows * n;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t column = i / rows, r = i % rows;
    // __fmul_rn keeps the compiler from fusing the product and the sum into one FMA.
    y[static_cast<int64_t>(ids[column]) * rows + r] += __fmul_rn(scales[column], x[i]);
  }
}

unsigned GridFor(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>(CeilDiv(n, kThreads), kMaxBlocks));
}

}  // namespace

cudaError_t LaunchAdd(float* y, const float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  SWARM_LAUNCH(GridFor(n), kThreads, 0, stream, AddKernel)(y, x, n);
  return cudaGetLastError();
}

cudaError_t LaunchAddScaledColumns(float* y, const float* x, int64_t rows, const int32_t* ids,
                                   const float* scales, int64_t n, cudaStream_t stream) {
  if (rows <= 0 || n <= 0) return cudaSuccess;
  SWARM_LAUNCH(GridFor(rows * n), kThreads, 0, stream, AddScaledColumnsKernel)
  (y, x, rows, ids, scales, n);
  return cudaGetLastError();
}

cudaError_t LaunchAddBias(float* y, const float* bias, int64_t n_out, int64_t n_tokens,
                          cudaStream_t stream) {
  if (n_out <= 0 || n_tokens <= 0) return cudaSuccess;
  const int64_t n = n_out * n_tokens;
  SWARM_LAUNCH(GridFor(n), kThreads, 0, stream, AddBiasKernel)(y, bias, n_out, n);
  return cudaGetLastError();
}

}  // namespace swarm::kernels::gpu
