#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/matvec.cuh"

namespace swarm::kernels::gpu {
namespace {

constexpr int kThreads = 128;

// One row per group of `threads_per_row` threads (32, 64 or 128), NT tokens per block. Each thread
// walks the row's chunks with stride threads_per_row, dequantizes a chunk in registers and
// multiplies it with the matching activations of each token.
// w: n_out rows of row_bytes; x: [n_in, n_tokens]; y: [n_out, n_tokens].
template <class Q, int NT, bool kVecX>
__global__ void __launch_bounds__(kThreads)
    MatVecKernel(const uint8_t* __restrict__ w, int64_t row_bytes, int64_t n_out, int n_in,
                 const float* __restrict__ x, int64_t n_tokens, float* __restrict__ y,
                 int threads_per_row) {
  const int rows_per_block = kThreads / threads_per_row;
  const int lane_in_row = threadIdx.x % threads_per_row;
  const int64_t row =
      static_cast<int64_t>(blockIdx.x) * rows_per_block + threadIdx.x / threads_per_row;
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * NT;
  const int nt = static_cast<int>(min(static_cast<int64_t>(NT), n_tokens - t0));

  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;

  if (row < n_out) {
    const uint8_t* w_row = w + row * row_bytes;
    const int n_chunks = n_in / Q::kBlock * Q::kChunks;
    const float* x0 = x + t0 * n_in;
    for (int c = lane_in_row; c < n_chunks; c += threads_per_row) {
      const int block = c / Q::kChunks;
      float v[Q::kRuns * Q::kRunLen];
      int off[Q::kRuns];
      Q::Load(w_row + static_cast<int64_t>(block) * Q::kBytes, c % Q::kChunks, v, off);
      const float* xb = x0 + block * Q::kBlock;
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        if (t < nt) {
#pragma unroll
          for (int r = 0; r < Q::kRuns; ++r) {
            const float* xr = xb + static_cast<int64_t>(t) * n_in + off[r];
            if constexpr (kVecX && Q::kRunLen % 4 == 0) {
#pragma unroll
              for (int k = 0; k < Q::kRunLen; k += 4) {
                const float4 x4 = __ldg(reinterpret_cast<const float4*>(xr + k));
                acc[t] += v[r * Q::kRunLen + k] * x4.x;
                acc[t] += v[r * Q::kRunLen + k + 1] * x4.y;
                acc[t] += v[r * Q::kRunLen + k + 2] * x4.z;
                acc[t] += v[r * Q::kRunLen + k + 3] * x4.w;
              }
            } else {
#pragma unroll
              for (int k = 0; k < Q::kRunLen; ++k) acc[t] += v[r * Q::kRunLen + k] * __ldg(xr + k);
            }
          }
        }
      }
    }
  }

#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = WarpSum(acc[t]);
  if (threads_per_row > kWarpSize) {
    // Rows wider than a warp: add the warps' sums in a fixed order (deterministic).
    __shared__ float partial[kThreads / kWarpSize][NT];
    const int warp = threadIdx.x / kWarpSize;
    if (threadIdx.x % kWarpSize == 0) {
#pragma unroll
      for (int t = 0; t < NT; ++t) partial[warp][t] = acc[t];
    }
    __syncthreads();
    if (lane_in_row == 0) {
      const int warps_per_row = threads_per_row / kWarpSize;
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        float sum = 0.0f;
        for (int i = 0; i < warps_per_row; ++i) sum += partial[warp + i][t];
        acc[t] = sum;
      }
    }
  }
  if (lane_in_row == 0 && row < n_out) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      if (t < nt) y[(t0 + t) * n_out + row] = acc[t];
    }
  }
}

template <class Q, int NT>
cudaError_t Launch(const DeviceMatrix& w, const float* x, int64_t n_tokens, float* y,
                   cudaStream_t stream) {
  const int n_in = static_cast<int>(w.n_in);
  const int n_chunks = n_in / Q::kBlock * Q::kChunks;
  // Depends on the row length only, so a row's summation order is the same for every batch.
  const int threads_per_row = n_chunks >= 512 ? 128 : n_chunks >= 128 ? 64 : 32;
  const int rows_per_block = kThreads / threads_per_row;
  const dim3 grid(CeilDiv(w.n_out, rows_per_block), CeilDiv(n_tokens, NT));
  const auto* data = static_cast<const uint8_t*>(w.data);
  const bool vec_x = reinterpret_cast<uintptr_t>(x) % 16 == 0 && n_in % 4 == 0;
  if (vec_x && Q::kRunLen % 4 == 0) {
    SWARM_LAUNCH(grid, kThreads, 0, stream, MatVecKernel<Q, NT, true>)
    (data, w.row_bytes, w.n_out, n_in, x, n_tokens, y, threads_per_row);
  } else {
    SWARM_LAUNCH(grid, kThreads, 0, stream, MatVecKernel<Q, NT, false>)
    (data, w.row_bytes, w.n_out, n_in, x, n_tokens, y, threads_per_row);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchMatVec(const DeviceMatrix& w, const float* x, int64_t n_tokens, float* y,
                         cudaStream_t stream) {
  if (n_tokens <= 0 || w.n_out <= 0) return cudaSuccess;
  if (w.n_in <= 0 || w.n_in > (int64_t{1} << 30) || w.n_out > (int64_t{1} << 40)) {
    return cudaErrorInvalidValue;
  }
  return DispatchWeightType(w.type, w.n_in, [&](auto tag) {
    using Q = typename decltype(tag)::type;
    if (w.n_in % Q::kBlock != 0) return cudaErrorInvalidValue;
    if (n_tokens == 1) return Launch<Q, 1>(w, x, n_tokens, y, stream);
    if (n_tokens == 2) return Launch<Q, 2>(w, x, n_tokens, y, stream);
    if (n_tokens <= 4) return Launch<Q, 4>(w, x, n_tokens, y, stream);
    return Launch<Q, 8>(w, x, n_tokens, y, stream);
  });
}

}  // namespace swarm::kernels::gpu
