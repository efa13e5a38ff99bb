// Conversions feeding cuBLAS for prompt-sized products: activations f32 -> f16/bf16 and a weight
// matrix of any type -> f16 (dequantized once per product, as llama.cpp's cuBLAS path does).
// Host launchers; enqueue on `stream` and return the launch error, if any.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/device_types.h"

namespace swarm::kernels::gpu {

// out: [n] half (bf16 when `bf16`), round to nearest even, from x: [n] float.
cudaError_t LaunchConvertF32(const float* x, int64_t n, bool bf16, void* out, cudaStream_t stream);

// out: [w.n_out][w.n_in] half, row-major, from any weight type (values rounded to nearest half).
cudaError_t LaunchDequantizeToF16(const DeviceMatrix& w, void* out, cudaStream_t stream);

}  // namespace swarm::kernels::gpu
