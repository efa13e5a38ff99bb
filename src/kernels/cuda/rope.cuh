// Rotary position embedding, both pairings (GGUF `llama`: adjacent pairs; `qwen2`: NeoX halves).
// The CPU twin is CpuReferenceBackend::Rope: angles and rotations in double, as there. Positions
// are read from device memory, so a captured graph stays valid as positions advance.
// Host launcher; enqueues on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace swarm::kernels::gpu {

// x: [head_dim * n_heads, n_tokens] rotated in place; positions: [n_tokens] device memory.
cudaError_t LaunchRope(float* x, int64_t head_dim, int64_t n_heads, int64_t n_tokens,
                       const int32_t* positions, float freq_base, bool neox, cudaStream_t stream);

}  // namespace swarm::kernels::gpu
