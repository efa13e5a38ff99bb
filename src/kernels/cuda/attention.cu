#include <algorithm>

#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kv_values.cuh"

namespace swarm::kernels::gpu {
namespace {

// ---- decode ------------------------------------------------------------------------------------

constexpr int kDecodeWarps = 4;
constexpr int kDecodeThreads = kDecodeWarps * kWarpSize;
constexpr int kHeadsPerBlock = 8;  // query heads of one KV head handled by one block
constexpr int kMaxSplits = 32;

// The row's softmax is computed as ggml_soft_max (kernels/kv_types.h): the scores' maximum and
// sum of exponentials first (pass kStats), then the probabilities e^(s - max) * (1/sum), rounded
// to f16 for an f16 V cache, weigh the values (pass kValues). With one split a block runs both
// passes; with several, a launch of kStats writes each split's (max, sum) to `partials`, a launch
// of kValues merges them into the row's and writes each split's share of P·V, and the combine
// kernel adds the shares. Each lane holds elements lane + 32e (e < EPL) of a head vector; each warp
// walks every kDecodeWarps-th cache row of the block's range, and the warps' results meet in shared
// memory. grid: x = n_head_kv * head_blocks, y = split, z = token.
enum class DecodePass { kStats, kValues };

template <int EPL>
__global__ void __launch_bounds__(kDecodeThreads)
    AttentionDecodeKernel(const float* __restrict__ q, const uint8_t* __restrict__ k_cache,
                          const uint8_t* __restrict__ v_cache, uint32_t k_type, uint32_t v_type,
                          int n_head, int n_head_kv, int head_dim,
                          const int32_t* __restrict__ positions, float* __restrict__ out,
                          float* __restrict__ partials, DecodePass pass) {
  const int group = n_head / n_head_kv;
  const int head_blocks = (group + kHeadsPerBlock - 1) / kHeadsPerBlock;
  const int kv_head = blockIdx.x / head_blocks;
  const int h0 = kv_head * group + (blockIdx.x % head_blocks) * kHeadsPerBlock;
  const int nh = min(kHeadsPerBlock, kv_head * group + group - h0);
  const int split = blockIdx.y, n_splits = gridDim.y;
  const int64_t t = blockIdx.z;
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int64_t q_stride = static_cast<int64_t>(head_dim) * n_head;
  const int64_t kv_dim = static_cast<int64_t>(head_dim) * n_head_kv;
  const int64_t k_row_bytes = KvBytes(k_type, kv_dim), v_row_bytes = KvBytes(v_type, kv_dim);
  const int64_t head0 = static_cast<int64_t>(kv_head) * head_dim;
  const int64_t part_stride = static_cast<int64_t>(head_dim) + 2;  // P·V share, max, sum
  const float scale = 1.0f / sqrtf(static_cast<float>(head_dim));

  const int64_t n_visible = static_cast<int64_t>(positions[t]) + 1;
  const int64_t chunk = (n_visible + n_splits - 1) / n_splits;
  const int64_t begin = split * chunk;
  const int64_t end = min(begin + chunk, n_visible);

  float qr[kHeadsPerBlock][EPL];
#pragma unroll
  for (int h = 0; h < kHeadsPerBlock; ++h) {
#pragma unroll
    for (int e = 0; e < EPL; ++e) {
      const int d = lane + kWarpSize * e;
      qr[h][e] = h < nh && d < head_dim ? q[t * q_stride + (h0 + h) * head_dim + d] : 0.0f;
      // Lanes 0..31 of slot e hold one q8_0 block of the head (head_dim is a multiple of 32).
      qr[h][e] = RoundQueryInWarp(qr[h][e], k_type);
    }
  }
  // Query head h's score of the key row kr (the same arithmetic in both passes).
  auto score = [&](int h, const float(&kr)[EPL]) {
    float s = 0.0f;
#pragma unroll
    for (int e = 0; e < EPL; ++e) s += qr[h][e] * kr[e];
    return WarpSum(s) * scale;
  };
  auto part = [&](int h) {
    return partials + ((t * n_head + h0 + h) * n_splits + split) * part_stride;
  };

  __shared__ float shared_m[kDecodeWarps][kHeadsPerBlock];
  __shared__ float shared_l[kDecodeWarps][kHeadsPerBlock];
  __shared__ float row_max[kHeadsPerBlock], row_inv_sum[kHeadsPerBlock];
  __shared__ float shared_acc[kDecodeWarps][kHeadsPerBlock][EPL * kWarpSize];

  if (pass == DecodePass::kStats || n_splits == 1) {
    float m[kHeadsPerBlock], l[kHeadsPerBlock];
#pragma unroll
    for (int h = 0; h < kHeadsPerBlock; ++h) {
      m[h] = -INFINITY;
      l[h] = 0.0f;
    }
    for (int64_t p = begin + warp; p < end; p += kDecodeWarps) {
      const uint8_t* kp = k_cache + p * k_row_bytes;
      float kr[EPL];
#pragma unroll
      for (int e = 0; e < EPL; ++e) {
        const int d = lane + kWarpSize * e;
        kr[e] = d < head_dim ? LoadKvValue(kp, k_type, head0 + d) : 0.0f;
      }
#pragma unroll
      for (int h = 0; h < kHeadsPerBlock; ++h) {
        if (h < nh) {
          const float s = score(h, kr);
          const float m_new = fmaxf(m[h], s);
          l[h] = l[h] * expf(m[h] - m_new) + expf(s - m_new);  // expf(-inf) = 0 at the start
          m[h] = m_new;
        }
      }
    }
    if (lane == 0) {
#pragma unroll
      for (int h = 0; h < kHeadsPerBlock; ++h) {
        shared_m[warp][h] = m[h];
        shared_l[warp][h] = l[h];
      }
    }
    __syncthreads();
    if (static_cast<int>(threadIdx.x) < nh) {
      const int h = threadIdx.x;
      float m_max = -INFINITY, sum = 0.0f;
      for (int w = 0; w < kDecodeWarps; ++w) m_max = fmaxf(m_max, shared_m[w][h]);
      for (int w = 0; w < kDecodeWarps; ++w) {
        if (shared_m[w][h] != -INFINITY) sum += shared_l[w][h] * expf(shared_m[w][h] - m_max);
      }
      if (pass == DecodePass::kStats) {
        part(h)[head_dim] = m_max;
        part(h)[head_dim + 1] = sum;
      } else {
        row_max[h] = m_max;
        row_inv_sum[h] = 1.0f / sum;
      }
    }
    if (pass == DecodePass::kStats) return;
  } else if (static_cast<int>(threadIdx.x) < nh) {
    // The row's maximum and sum from every split's (written by the kStats launch).
    const int h = threadIdx.x;
    const float* parts = partials + (t * n_head + h0 + h) * n_splits * part_stride;
    float m_max = -INFINITY, sum = 0.0f;
    for (int s = 0; s < n_splits; ++s) m_max = fmaxf(m_max, parts[s * part_stride + head_dim]);
    for (int s = 0; s < n_splits; ++s) {
      const float m = parts[s * part_stride + head_dim];
      if (m != -INFINITY) sum += parts[s * part_stride + head_dim + 1] * expf(m - m_max);
    }
    row_max[h] = m_max;
    row_inv_sum[h] = 1.0f / sum;
  }
  __syncthreads();

  float acc[kHeadsPerBlock][EPL];
#pragma unroll
  for (int h = 0; h < kHeadsPerBlock; ++h) {
#pragma unroll
    for (int e = 0; e < EPL; ++e) acc[h][e] = 0.0f;
  }
  for (int64_t p = begin + warp; p < end; p += kDecodeWarps) {
    const uint8_t* kp = k_cache + p * k_row_bytes;
    const uint8_t* vp = v_cache + p * v_row_bytes;
    float kr[EPL], vr[EPL];
#pragma unroll
    for (int e = 0; e < EPL; ++e) {
      const int d = lane + kWarpSize * e;
      kr[e] = d < head_dim ? LoadKvValue(kp, k_type, head0 + d) : 0.0f;
      vr[e] = d < head_dim ? LoadKvValue(vp, v_type, head0 + d) : 0.0f;
    }
#pragma unroll
    for (int h = 0; h < kHeadsPerBlock; ++h) {
      if (h < nh) {
        const float weight =
            RoundProbability(expf(score(h, kr) - row_max[h]) * row_inv_sum[h], v_type);
#pragma unroll
        for (int e = 0; e < EPL; ++e) acc[h][e] += weight * vr[e];
      }
    }
  }
#pragma unroll
  for (int h = 0; h < kHeadsPerBlock; ++h) {
#pragma unroll
    for (int e = 0; e < EPL; ++e) shared_acc[warp][h][lane + kWarpSize * e] = acc[h][e];
  }
  __syncthreads();

  for (int i = threadIdx.x; i < nh * head_dim; i += kDecodeThreads) {
    const int h = i / head_dim, d = i % head_dim;
    float o = 0.0f;
    for (int w = 0; w < kDecodeWarps; ++w) o += shared_acc[w][h][d];
    if (n_splits == 1) {
      out[t * q_stride + static_cast<int64_t>(h0 + h) * head_dim + d] = o;
    } else {
      part(h)[d] = o;
    }
  }
}

// Adds the splits' shares of P·V of one (head, token): grid x = head, y = token; one thread per
// dimension.
__global__ void AttentionCombineKernel(const float* __restrict__ partials, int n_head, int head_dim,
                                       int n_splits, float* __restrict__ out) {
  const int h = blockIdx.x;
  const int64_t t = blockIdx.y;
  const int64_t stride = static_cast<int64_t>(head_dim) + 2;
  const float* parts = partials + (t * n_head + h) * n_splits * stride;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float o = 0.0f;
    for (int s = 0; s < n_splits; ++s) o += parts[s * stride + d];
    out[t * head_dim * n_head + static_cast<int64_t>(h) * head_dim + d] = o;
  }
}

// ---- prompt ------------------------------------------------------------------------------------

constexpr int kQTile = 16;
constexpr int kKTile = 32;
constexpr int kPromptThreads = 128;
constexpr int kThreadsPerQuery = kPromptThreads / kQTile;  // 8, consecutive lanes of one warp

size_t PromptSharedBytes(int head_dim) {
  return sizeof(float) *
         (static_cast<size_t>(kQTile) * head_dim + static_cast<size_t>(kKTile) * (head_dim + 1) +
          static_cast<size_t>(kKTile) * head_dim + kQTile * kKTile);
}

// grid: x = query head, y = tile of kQTile tokens. Thread (qi = tid / 8, j = tid % 8) owns query
// qi's scores for cache columns j + 8c and its output dimensions j + 8k.
template <int kMaxDim>
__global__ void __launch_bounds__(kPromptThreads)
    AttentionPromptKernel(const float* __restrict__ q, const uint8_t* __restrict__ k_cache,
                          const uint8_t* __restrict__ v_cache, uint32_t k_type, uint32_t v_type,
                          int n_head, int n_head_kv, int head_dim, int64_t n_tokens,
                          const int32_t* __restrict__ positions, float* __restrict__ out) {
  SWARM_DYNAMIC_SHARED(float, smem);
  float* q_tile = smem;                              // [kQTile][head_dim]
  float* k_tile = q_tile + kQTile * head_dim;        // [kKTile][head_dim + 1]
  float* v_tile = k_tile + kKTile * (head_dim + 1);  // [kKTile][head_dim]
  float* p_tile = v_tile + kKTile * head_dim;        // [kQTile][kKTile]
  __shared__ int shared_kv_end;

  const int h = blockIdx.x;
  const int kv_head = h / (n_head / n_head_kv);
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * kQTile;
  const int qi = threadIdx.x / kThreadsPerQuery, j = threadIdx.x % kThreadsPerQuery;
  const int64_t t = t0 + qi;
  const bool valid = t < n_tokens;
  const int64_t position = valid ? positions[t] : -1;
  const int64_t q_stride = static_cast<int64_t>(head_dim) * n_head;
  const int64_t kv_dim = static_cast<int64_t>(head_dim) * n_head_kv;
  const int64_t k_row_bytes = KvBytes(k_type, kv_dim), v_row_bytes = KvBytes(v_type, kv_dim);
  const float scale = 1.0f / sqrtf(static_cast<float>(head_dim));

  if (threadIdx.x == 0) {
    int64_t last = -1;
    for (int i = 0; i < kQTile && t0 + i < n_tokens; ++i) {
      last = max(last, static_cast<int64_t>(positions[t0 + i]));
    }
    shared_kv_end = static_cast<int>(last + 1);
  }
  for (int i = threadIdx.x; i < kQTile * head_dim; i += kPromptThreads) {
    const int qq = i / head_dim, d = i % head_dim;
    q_tile[i] = t0 + qq < n_tokens
                    ? q[(t0 + qq) * q_stride + static_cast<int64_t>(h) * head_dim + d]
                    : 0.0f;
  }
  __syncthreads();
  if (k_type != kKvF32) {
    // Round the queries as the K type's dot product sees them; one warp per 32 values (a q8_0
    // block: head_dim is a multiple of 32 for q8_0), every lane of a warp in every iteration.
    const int n = kQTile * head_dim;
    for (int base = threadIdx.x - threadIdx.x % kWarpSize; base < n; base += kPromptThreads) {
      const int i = base + threadIdx.x % kWarpSize;
      const float x = i < n ? q_tile[i] : 0.0f;
      const float r = RoundQueryInWarp(x, k_type);
      if (i < n) q_tile[i] = r;
    }
    __syncthreads();
  }
  const int kv_end = shared_kv_end;

  // Query qi's scores of the key tile's columns j + 8c (the same arithmetic in both passes).
  constexpr int kColsPerThread = kKTile / kThreadsPerQuery;
  auto tile_scores = [&](int p0, float(&s)[kColsPerThread]) {
#pragma unroll
    for (int c = 0; c < kColsPerThread; ++c) {
      const int col = j + kThreadsPerQuery * c;
      float dot = 0.0f;
      for (int d = 0; d < head_dim; ++d)
        dot += q_tile[qi * head_dim + d] * k_tile[col * (head_dim + 1) + d];
      s[c] = valid && p0 + col <= position ? dot * scale : -INFINITY;
    }
  };
  auto load_tile = [&](int p0, bool values) {
    __syncthreads();  // the previous tile is no longer read
    for (int i = threadIdx.x; i < kKTile * head_dim; i += kPromptThreads) {
      const int r = i / head_dim, d = i % head_dim;
      const int64_t p = p0 + r;
      const int64_t i_head = static_cast<int64_t>(kv_head) * head_dim + d;
      k_tile[r * (head_dim + 1) + d] =
          p < kv_end ? LoadKvValue(k_cache + p * k_row_bytes, k_type, i_head) : 0.0f;
      if (values) {
        v_tile[r * head_dim + d] =
            p < kv_end ? LoadKvValue(v_cache + p * v_row_bytes, v_type, i_head) : 0.0f;
      }
    }
    __syncthreads();
  };

  // Pass 1: the row's maximum and sum of exponentials (ggml_soft_max, kernels/kv_types.h).
  float m = -INFINITY, l = 0.0f;
  for (int p0 = 0; p0 < kv_end; p0 += kKTile) {
    load_tile(p0, false);
    float s[kColsPerThread];
    tile_scores(p0, s);
    float tile_max = -INFINITY;
#pragma unroll
    for (int c = 0; c < kColsPerThread; ++c) tile_max = fmaxf(tile_max, s[c]);
#pragma unroll
    for (int offset = kThreadsPerQuery / 2; offset > 0; offset >>= 1) {
      tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, offset));
    }
    const float m_new = fmaxf(m, tile_max);
    // Nothing visible yet (rows past n_tokens): weights 0, no NaN. Every lane of the warp takes
    // part in the shuffles below.
    float tile_sum = 0.0f;
#pragma unroll
    for (int c = 0; c < kColsPerThread; ++c) {
      tile_sum += s[c] == -INFINITY ? 0.0f : expf(s[c] - m_new);
    }
#pragma unroll
    for (int offset = kThreadsPerQuery / 2; offset > 0; offset >>= 1) {
      tile_sum += __shfl_xor_sync(kFullMask, tile_sum, offset);
    }
    // expf(-inf) = 0 at the first visible tile
    if (m_new != -INFINITY) l = l * expf(m - m_new) + tile_sum;
    m = m_new;
  }
  const float inv_sum = 1.0f / l;  // inf for rows past n_tokens, whose weights are all 0

  // Pass 2: P = e^(s - max) * (1/sum), rounded as V's type reads it, then P·V.
  constexpr int kDimsPerThread = kMaxDim / kThreadsPerQuery;
  float o[kDimsPerThread];
#pragma unroll
  for (int k = 0; k < kDimsPerThread; ++k) o[k] = 0.0f;
  for (int p0 = 0; p0 < kv_end; p0 += kKTile) {
    load_tile(p0, true);
    float s[kColsPerThread];
    tile_scores(p0, s);
#pragma unroll
    for (int c = 0; c < kColsPerThread; ++c) {
      p_tile[qi * kKTile + j + kThreadsPerQuery * c] =
          s[c] == -INFINITY ? 0.0f : RoundProbability(expf(s[c] - m) * inv_sum, v_type);
    }
    __syncwarp();  // p_tile's row qi is written and read by the same 8 lanes
#pragma unroll
    for (int k = 0; k < kDimsPerThread; ++k) {
      const int d = j + kThreadsPerQuery * k;
      if (d < head_dim) {
        float acc = o[k];
        for (int col = 0; col < kKTile; ++col) {
          acc += p_tile[qi * kKTile + col] * v_tile[col * head_dim + d];
        }
        o[k] = acc;
      }
    }
  }

  if (valid) {
#pragma unroll
    for (int k = 0; k < kDimsPerThread; ++k) {
      const int d = j + kThreadsPerQuery * k;
      if (d < head_dim) out[t * q_stride + static_cast<int64_t>(h) * head_dim + d] = o[k];
    }
  }
}

template <int kMaxDim>
cudaError_t LaunchPrompt(const AttentionArgs& a, cudaStream_t stream) {
  const size_t shared = PromptSharedBytes(static_cast<int>(a.head_dim));
  if (shared > 48 * 1024) {
    const cudaError_t e =
        cudaFuncSetAttribute(AttentionPromptKernel<kMaxDim>,
                             cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
    if (e != cudaSuccess) return e;
  }
  constexpr int64_t kMaxTilesPerLaunch = 65535;  // gridDim.y limit
  const int64_t tiles = (a.n_tokens + kQTile - 1) / kQTile;
  for (int64_t first = 0; first < tiles; first += kMaxTilesPerLaunch) {
    const int64_t count = std::min(tiles - first, kMaxTilesPerLaunch);
    const int64_t t0 = first * kQTile;
    const int64_t q_stride = a.head_dim * a.n_head;
    const dim3 grid(static_cast<unsigned>(a.n_head), static_cast<unsigned>(count));
    SWARM_LAUNCH(grid, kPromptThreads, shared, stream, AttentionPromptKernel<kMaxDim>)
    (a.q + t0 * q_stride, static_cast<const uint8_t*>(a.k_cache),
     static_cast<const uint8_t*>(a.v_cache), a.k_type, a.v_type, static_cast<int>(a.n_head),
     static_cast<int>(a.n_head_kv), static_cast<int>(a.head_dim),
     std::min(a.n_tokens - t0, count * kQTile), a.positions + t0, a.out + t0 * q_stride);
  }
  return cudaGetLastError();
}

template <int EPL>
cudaError_t LaunchDecode(const AttentionArgs& a, cudaStream_t stream) {
  const int64_t group = a.n_head / a.n_head_kv;
  const int64_t head_blocks = (group + kHeadsPerBlock - 1) / kHeadsPerBlock;
  const dim3 grid(static_cast<unsigned>(a.n_head_kv * head_blocks),
                  static_cast<unsigned>(a.n_splits), static_cast<unsigned>(a.n_tokens));
  for (DecodePass pass : {DecodePass::kStats, DecodePass::kValues}) {
    if (pass == DecodePass::kStats && a.n_splits == 1) continue;  // one block does both passes
    SWARM_LAUNCH(grid, kDecodeThreads, 0, stream, AttentionDecodeKernel<EPL>)
    (a.q, static_cast<const uint8_t*>(a.k_cache), static_cast<const uint8_t*>(a.v_cache), a.k_type,
     a.v_type, static_cast<int>(a.n_head), static_cast<int>(a.n_head_kv),
     static_cast<int>(a.head_dim), a.positions, a.out, a.partials, pass);
  }
  if (a.n_splits > 1) {
    const dim3 combine_grid(static_cast<unsigned>(a.n_head), static_cast<unsigned>(a.n_tokens));
    const unsigned threads = static_cast<unsigned>(
        std::min<int64_t>(kMaxHeadDim, (a.head_dim + kWarpSize - 1) / kWarpSize * kWarpSize));
    SWARM_LAUNCH(combine_grid, threads, 0, stream, AttentionCombineKernel)
    (a.partials, static_cast<int>(a.n_head), static_cast<int>(a.head_dim), a.n_splits, a.out);
  }
  return cudaGetLastError();
}

}  // namespace

int AttentionDecodeSplits(int64_t n_head, int64_t n_head_kv, int64_t n_tokens, int sm_count) {
  if (n_head_kv <= 0 || n_tokens <= 0) return 1;
  const int64_t group = n_head / n_head_kv;
  const int64_t blocks = n_head_kv * ((group + kHeadsPerBlock - 1) / kHeadsPerBlock) * n_tokens;
  const int64_t splits = (2 * static_cast<int64_t>(std::max(sm_count, 1)) + blocks - 1) / blocks;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(kMaxSplits, splits)));
}

int64_t AttentionPartialFloats(int64_t n_head, int64_t head_dim, int64_t n_tokens, int n_splits) {
  if (n_tokens > kDecodeMaxTokens || n_splits <= 1) return 0;
  return n_splits * n_head * n_tokens * (head_dim + 2);
}

cudaError_t LaunchAttention(const AttentionArgs& a, cudaStream_t stream) {
  if (a.n_tokens <= 0) return cudaSuccess;
  if (a.n_head <= 0 || a.n_head_kv <= 0 || a.n_head % a.n_head_kv != 0 || a.head_dim <= 0 ||
      a.head_dim > kMaxHeadDim || a.n_head > 65535) {
    return cudaErrorInvalidValue;
  }
  for (uint32_t type : {a.k_type, a.v_type}) {
    if (type != kKvF32 && type != kKvF16 && type != kKvQ8_0) return cudaErrorInvalidValue;
    if (type == kKvQ8_0 && a.head_dim % kKvQ8Block != 0) return cudaErrorInvalidValue;
  }
  if (a.n_tokens <= kDecodeMaxTokens) {
    if (a.n_splits < 1 || a.n_splits > kMaxSplits || (a.n_splits > 1 && a.partials == nullptr)) {
      return cudaErrorInvalidValue;
    }
    if (a.head_dim <= 32) return LaunchDecode<1>(a, stream);
    if (a.head_dim <= 64) return LaunchDecode<2>(a, stream);
    if (a.head_dim <= 128) return LaunchDecode<4>(a, stream);
    return LaunchDecode<8>(a, stream);
  }
  if (a.head_dim <= 64) return LaunchPrompt<64>(a, stream);
  if (a.head_dim <= 128) return LaunchPrompt<128>(a, stream);
  return LaunchPrompt<256>(a, stream);
}

}  // namespace swarm::kernels::gpu
