#include <algorithm>

#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/get_rows.cuh"

namespace swarm::kernels::gpu {
namespace {

constexpr int kThreads = 128;

// blockIdx.y: output row; threads walk that row's chunks.
template <class Q>
__global__ void GetRowsKernel(const uint8_t* __restrict__ table, int64_t row_bytes, int n_in,
                              const int32_t* __restrict__ ids, float* __restrict__ out) {
  const int64_t i = blockIdx.y;
  const uint8_t* row = table + static_cast<int64_t>(ids[i]) * row_bytes;
  float* dst_row = out + i * n_in;
  const int n_chunks = n_in / Q::kBlock * Q::kChunks;
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < n_chunks; c += gridDim.x * blockDim.x) {
    const int block = c / Q::kChunks;
    float v[Q::kRuns * Q::kRunLen];
    int off[Q::kRuns];
    Q::Load(row + static_cast<int64_t>(block) * Q::kBytes, c % Q::kChunks, v, off);
    float* dst = dst_row + block * Q::kBlock;
#pragma unroll
    for (int r = 0; r < Q::kRuns; ++r) {
#pragma unroll
      for (int k = 0; k < Q::kRunLen; ++k) dst[off[r] + k] = v[r * Q::kRunLen + k];
    }
  }
}

}  // namespace

cudaError_t LaunchGetRows(const DeviceMatrix& table, const int32_t* ids, int64_t n, float* out,
                          cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (table.n_in <= 0 || table.n_in > (int64_t{1} << 30)) return cudaErrorInvalidValue;
  return DispatchWeightType(table.type, table.n_in, [&](auto tag) {
    using Q = typename decltype(tag)::type;
    if (table.n_in % Q::kBlock != 0) return cudaErrorInvalidValue;
    const int64_t n_chunks = table.n_in / Q::kBlock * Q::kChunks;
    constexpr int64_t kMaxRowsPerLaunch = 65535;  // gridDim.y limit
    for (int64_t first = 0; first < n; first += kMaxRowsPerLaunch) {
      const int64_t rows = std::min(n - first, kMaxRowsPerLaunch);
      const dim3 grid(std::min(CeilDiv(n_chunks, kThreads), 1024u), static_cast<unsigned>(rows));
      SWARM_LAUNCH(grid, kThreads, 0, stream, GetRowsKernel<Q>)
      (static_cast<const uint8_t*>(table.data), table.row_bytes, static_cast<int>(table.n_in),
       ids + first, out + first * table.n_in);
    }
    return cudaGetLastError();
  });
}

}  // namespace swarm::kernels::gpu
