#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/swiglu.cuh"

namespace swarm::kernels::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

__global__ void SwiGluKernel(const float* gate, const float* __restrict__ up, int64_t n, float* y) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double g = gate[i];
    y[i] = static_cast<float>(g / (1.0 + exp(-g)) * static_cast<double>(up[i]));
  }
}

}  // namespace

cudaError_t LaunchSwiGlu(const float* gate, const float* up, int64_t n, float* y,
                         cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(CeilDiv(n, kThreads), kMaxBlocks));
  SWARM_LAUNCH(grid, kThreads, 0, stream, SwiGluKernel)(gate, up, n, y);
  return cudaGetLastError();
}

}  // namespace swarm::kernels::gpu
