#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rope.cuh"

namespace swarm::kernels::gpu {
namespace {

constexpr int kThreads = 128;

// blockIdx.y: token; threads walk the (head, pair) index space of that token.
__global__ void RopeKernel(float* x, int64_t head_dim, int64_t n_heads,
                           const int32_t* __restrict__ positions, RopeAngles angles, bool neox) {
  const int64_t t = blockIdx.y;
  const int64_t half = head_dim / 2;
  const int64_t n_pairs = half * n_heads;
  const double position = positions[t];
  float* xt = x + t * head_dim * n_heads;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < n_pairs;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t h = j / half, i = j % half;
    const double theta = position * angles.freq[i];
    double s, c;
    sincos(theta, &s, &c);
    s = __dmul_rn(s, angles.mscale);
    c = __dmul_rn(c, angles.mscale);
    float* head = xt + h * head_dim;
    float* pa = neox ? head + i : head + 2 * i;
    float* pb = neox ? head + i + half : head + 2 * i + 1;
    const double a = *pa, b = *pb;
    *pa = static_cast<float>(__dsub_rn(__dmul_rn(a, c), __dmul_rn(b, s)));
    *pb = static_cast<float>(__dadd_rn(__dmul_rn(a, s), __dmul_rn(b, c)));
  }
}

}  // namespace

cudaError_t LaunchRope(float* x, int64_t head_dim, int64_t n_heads, int64_t n_tokens,
                       const int32_t* positions, const RopeAngles& angles, bool neox,
                       cudaStream_t stream) {
  if (n_tokens <= 0 || n_heads <= 0 || head_dim < 2) return cudaSuccess;
  if (head_dim % 2 != 0 || head_dim > kMaxHeadDim) return cudaErrorInvalidValue;
  const int64_t n_pairs = head_dim / 2 * n_heads;
  constexpr int64_t kMaxTokensPerLaunch = 65535;  // gridDim.y limit
  for (int64_t first = 0; first < n_tokens; first += kMaxTokensPerLaunch) {
    const int64_t count = std::min(n_tokens - first, kMaxTokensPerLaunch);
    const dim3 grid(std::min(CeilDiv(n_pairs, kThreads), 1024u), static_cast<unsigned>(count));
    SWARM_LAUNCH(grid, kThreads, 0, stream, RopeKernel)
    (x + first * head_dim * n_heads, head_dim, n_heads, positions + first, angles, neox);
  }
  return cudaGetLastError();
}

}  // namespace swarm::kernels::gpu
