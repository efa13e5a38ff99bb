// SwiGLU gate: y = silu(gate) * up. The CPU twin is CpuReferenceBackend::SwiGlu (computed in
// double, as there). Host launcher; enqueues on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace swarm::kernels::gpu {

// y: [n] = silu(gate) * up   (y may alias gate)
cudaError_t LaunchSwiGlu(const float* gate, const float* up, int64_t n, float* y,
                         cudaStream_t stream);

}  // namespace swarm::kernels::gpu
