#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rms_norm.cuh"

namespace swarm::kernels::gpu {
namespace {

constexpr int kThreads = 256;

// One block per token.
__global__ void __launch_bounds__(kThreads)
    RmsNormKernel(const float* x, const float* __restrict__ weight, int64_t n, float eps,
                  float* y) {
  const float* xt = x + static_cast<int64_t>(blockIdx.x) * n;
  float* yt = y + static_cast<int64_t>(blockIdx.x) * n;
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    const double v = xt[i];
    sum += v * v;
  }
  sum = WarpSum(sum);
  __shared__ double warp_sums[kThreads / kWarpSize];
  __shared__ float shared_scale;
  if (threadIdx.x % kWarpSize == 0) warp_sums[threadIdx.x / kWarpSize] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int w = 0; w < kThreads / kWarpSize; ++w) total += warp_sums[w];
    const float mean = static_cast<float>(total / static_cast<double>(n));
    shared_scale = 1.0f / sqrtf(mean + eps);
  }
  __syncthreads();
  const float scale = shared_scale;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) yt[i] = __fmul_rn(xt[i], scale) * weight[i];
}

}  // namespace

cudaError_t LaunchRmsNorm(const float* x, const float* weight, int64_t n, int64_t n_tokens,
                          float eps, float* y, cudaStream_t stream) {
  if (n_tokens <= 0 || n <= 0) return cudaSuccess;
  if (n_tokens > 0x7fffffff) return cudaErrorInvalidValue;
  SWARM_LAUNCH(static_cast<unsigned>(n_tokens), kThreads, 0, stream, RmsNormKernel)
  (x, weight, n, eps, y);
  return cudaGetLastError();
}

}  // namespace swarm::kernels::gpu
