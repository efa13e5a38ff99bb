#include "kernels/cuda/dequantize_check.cuh"
#include "kernels/cuda/dispatch.cuh"

namespace swarm::kernels::gpu {

bool DequantizeRowOnHost(WType type, const void* row, int64_t n_in, float* dst) {
  if (n_in <= 0) return false;
  const cudaError_t result = DispatchWeightType(type, n_in, [&](auto tag) {
    using Q = typename decltype(tag)::type;
    if (n_in % Q::kBlock != 0) return cudaErrorInvalidValue;
    const auto* bytes = static_cast<const uint8_t*>(row);
    const int64_t n_chunks = n_in / Q::kBlock * Q::kChunks;
    for (int64_t c = 0; c < n_chunks; ++c) {
      const int64_t block = c / Q::kChunks;
      float v[Q::kRuns * Q::kRunLen];
      int off[Q::kRuns];
      Q::Load(bytes + block * Q::kBytes, static_cast<int>(c % Q::kChunks), v, off);
      for (int r = 0; r < Q::kRuns; ++r) {
        for (int k = 0; k < Q::kRunLen; ++k) {
          dst[block * Q::kBlock + off[r] + k] = v[r * Q::kRunLen + k];
        }
      }
    }
    return cudaSuccess;
  });
  return result == cudaSuccess;
}

}  // namespace swarm::kernels::gpu
