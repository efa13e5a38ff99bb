// RMSNorm. The CPU twin is CpuReferenceBackend::RmsNorm: the mean of squares is accumulated in
// double, the scale and products in float, as there. Host launcher; enqueues on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace swarm::kernels::gpu {

// y: [n, n_tokens] = x / sqrt(mean(x^2) + eps) * weight: [n]   (y may alias x)
cudaError_t LaunchRmsNorm(const float* x, const float* weight, int64_t n, int64_t n_tokens,
                          float eps, float* y, cudaStream_t stream);

}  // namespace swarm::kernels::gpu
