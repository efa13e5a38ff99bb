#include <cuda_bf16.h>

#include <algorithm>

#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/dispatch.cuh"

namespace swarm::kernels::gpu {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 65535;

__global__ void ConvertToF16Kernel(const float* __restrict__ x, int64_t n, __half* out) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = __float2half_rn(x[i]);
  }
}

__global__ void ConvertToBf16Kernel(const float* __restrict__ x, int64_t n, __nv_bfloat16* out) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = __float2bfloat16_rn(x[i]);
  }
}

// One thread per chunk of the whole matrix (grid-stride).
template <class Q>
__global__ void DequantizeToF16Kernel(const uint8_t* __restrict__ w, int64_t row_bytes,
                                      int64_t n_out, int n_in, __half* __restrict__ out) {
  const int chunks_per_row = n_in / Q::kBlock * Q::kChunks;
  const int64_t total = n_out * chunks_per_row;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / chunks_per_row;
    const int c = static_cast<int>(i % chunks_per_row);
    const int block = c / Q::kChunks;
    float v[Q::kRuns * Q::kRunLen];
    int off[Q::kRuns];
    Q::Load(w + row * row_bytes + static_cast<int64_t>(block) * Q::kBytes, c % Q::kChunks, v, off);
    __half* dst = out + row * n_in + static_cast<int64_t>(block) * Q::kBlock;
#pragma unroll
    for (int r = 0; r < Q::kRuns; ++r) {
#pragma unroll
      for (int k = 0; k < Q::kRunLen; ++k) dst[off[r] + k] = __float2half_rn(v[r * Q::kRunLen + k]);
    }
  }
}

unsigned GridFor(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>(CeilDiv(n, kThreads), kMaxBlocks));
}

}  // namespace

cudaError_t LaunchConvertF32(const float* x, int64_t n, bool bf16, void* out, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (bf16) {
    SWARM_LAUNCH(GridFor(n), kThreads, 0, stream, ConvertToBf16Kernel)
    (x, n, static_cast<__nv_bfloat16*>(out));
  } else {
    SWARM_LAUNCH(GridFor(n), kThreads, 0, stream, ConvertToF16Kernel)
    (x, n, static_cast<__half*>(out));
  }
  return cudaGetLastError();
}

cudaError_t LaunchDequantizeToF16(const DeviceMatrix& w, void* out, cudaStream_t stream) {
  if (w.n_out <= 0 || w.n_in <= 0) return cudaSuccess;
  if (w.n_in > (int64_t{1} << 30)) return cudaErrorInvalidValue;
  return DispatchWeightType(w.type, w.n_in, [&](auto tag) {
    using Q = typename decltype(tag)::type;
    if (w.n_in % Q::kBlock != 0) return cudaErrorInvalidValue;
    const int64_t total = w.n_out * (w.n_in / Q::kBlock * Q::kChunks);
    SWARM_LAUNCH(GridFor(total), kThreads, 0, stream, DequantizeToF16Kernel<Q>)
    (static_cast<const uint8_t*>(w.data), w.row_bytes, w.n_out, static_cast<int>(w.n_in),
     static_cast<__half*>(out));
    return cudaGetLastError();
  });
}

}  // namespace swarm::kernels::gpu
