// CUDA runtime and cuBLAS error codes as absl::Status, with the device and the failed action in
// the message: out-of-memory becomes ResourceExhausted, a missing device or driver Unavailable,
// anything else Internal. Host code only (needs the CUDA headers).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <string_view>

#include "absl/status/status.h"

namespace swarm::kernels::gpu {

absl::Status CudaStatus(cudaError_t error, int device, std::string_view what);
absl::Status CublasStatus(cublasStatus_t error, int device, std::string_view what);

// "1.50 GiB" style sizes for messages.
std::string FormatBytes(size_t bytes);

}  // namespace swarm::kernels::gpu
