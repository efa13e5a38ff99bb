// Element-wise additions: the residual add and the QKV bias. The CPU twins are
// CpuReferenceBackend::Add and ::AddBias (single float additions: bit-identical).
// Host launchers; enqueue on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace swarm::kernels::gpu {

// y: [n] += x
cudaError_t LaunchAdd(float* y, const float* x, int64_t n, cudaStream_t stream);

// y: [rows, *]: column ids[i] += scales[i] * column i of x: [rows, n] (ids, scales in device
// memory; ids distinct). The product is rounded before the sum, as on the CPU.
cudaError_t LaunchAddScaledColumns(float* y, const float* x, int64_t rows, const int32_t* ids,
                                   const float* scales, int64_t n, cudaStream_t stream);

// y: [n_out, n_tokens] += bias: [n_out]
cudaError_t LaunchAddBias(float* y, const float* bias, int64_t n_out, int64_t n_tokens,
                          cudaStream_t stream);

}  // namespace swarm::kernels::gpu
