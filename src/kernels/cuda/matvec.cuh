// Matrix-vector products for decode steps (and small batches): y = W · x with W dequantized in
// registers, never materialized. The CPU twin is CpuReferenceBackend::MatMul (DotRowReference).
// Host launcher; enqueues on `stream` and returns the launch error, if any.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/device_types.h"

namespace swarm::kernels::gpu {

// The largest batch the mat-vec path takes; larger batches go through cuBLAS (prompts).
inline constexpr int64_t kMatVecMaxTokens = 16;

// y: [w.n_out, n_tokens] = w · x, x: [w.n_in, n_tokens] (device memory). Each output is summed in
// the same order whatever n_tokens is, so a token's result does not depend on its batch.
cudaError_t LaunchMatVec(const DeviceMatrix& w, const float* x, int64_t n_tokens, float* y,
                         cudaStream_t stream);

}  // namespace swarm::kernels::gpu
