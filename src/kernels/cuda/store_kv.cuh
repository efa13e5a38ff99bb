// Appends keys and values to a KV cache in device memory, rounded to the cache's types (ggml ids
// 0 f32, 1 f16, 8 q8_0). The CPU twin is CpuReferenceBackend::StoreKv (bit-identical). Positions
// are read from device memory, so a captured graph stays valid as positions advance. Host launcher;
// enqueues on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace swarm::kernels::gpu {

// k, v: [kv_dim, n_tokens] -> rows positions[t] of k_cache, v_cache: [kv_dim, capacity] of
// k_type, v_type; positions: [n_tokens] device memory, already validated against the capacity by
// the caller. cudaErrorInvalidValue for another type, or q8_0 with kv_dim not a multiple of 32.
cudaError_t LaunchStoreKv(const float* k, const float* v, int64_t kv_dim, int64_t n_tokens,
                          const int32_t* positions, uint32_t k_type, uint32_t v_type, void* k_cache,
                          void* v_cache, cudaStream_t stream);

}  // namespace swarm::kernels::gpu
