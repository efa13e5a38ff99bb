// Embedding lookup: rows of a weight table, dequantized to float. The CPU twin is
// CpuReferenceBackend::GetRows (DequantizeRow); results are bit-identical to it.
// Host launcher; enqueues on `stream` and returns the launch error, if any.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/device_types.h"

namespace swarm::kernels::gpu {

// out: [table.n_in, n] = rows ids[0..n) of `table`; ids: [n] in device memory, already validated
// against table.n_out by the caller.
cudaError_t LaunchGetRows(const DeviceMatrix& table, const int32_t* ids, int64_t n, float* out,
                          cudaStream_t stream);

}  // namespace swarm::kernels::gpu
