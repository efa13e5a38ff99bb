// Appends keys and values to a KV cache in device memory. The CPU twin is
// CpuReferenceBackend::StoreKv (a copy: bit-identical). Positions are read from device memory, so
// a captured graph stays valid as positions advance. Host launcher; enqueues on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace swarm::kernels::gpu {

// k, v: [kv_dim, n_tokens] -> columns positions[t] of k_cache, v_cache: [kv_dim, capacity];
// positions: [n_tokens] device memory, already validated against the capacity by the caller.
cudaError_t LaunchStoreKv(const float* k, const float* v, int64_t kv_dim, int64_t n_tokens,
                          const int32_t* positions, float* k_cache, float* v_cache,
                          cudaStream_t stream);

}  // namespace swarm::kernels::gpu
