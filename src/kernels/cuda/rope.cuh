// Rotary position embedding, both pairings (GGUF `llama`: adjacent pairs; `qwen2`: NeoX halves).
// The CPU twin is CpuReferenceBackend::Rope: angles and rotations in double, as there. Positions
// are read from device memory, so a captured graph stays valid as positions advance.
// Host launcher; enqueues on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/device_types.h"

namespace swarm::kernels::gpu {

// The angle per position of each pair (kernels/rope_params.h's RopeTable), passed by value so that
// a captured graph carries it.
struct RopeAngles {
  double freq[kMaxHeadDim / 2];
  double mscale;
};

// x: [head_dim * n_heads, n_tokens] rotated in place; positions: [n_tokens] device memory;
// head_dim <= kMaxHeadDim.
cudaError_t LaunchRope(float* x, int64_t head_dim, int64_t n_heads, int64_t n_tokens,
                       const int32_t* positions, const RopeAngles& angles, bool neox,
                       cudaStream_t stream);

}  // namespace swarm::kernels::gpu
