// Causal attention over a KV cache (f32, f16 or q8_0) in device memory. The CPU twin is
// CpuReferenceBackend::Attention (double there, float here); both round where llama.cpp's CPU run
// without flash attention rounds (kernels/kv_types.h): the row's softmax as ggml_soft_max, its
// probabilities rounded to f16 for an f16 V cache, then P·V. Each kernel reads K twice: the row's
// score maximum and sum first, then the probabilities and P·V.
//  - decode (n_tokens <= kDecodeMaxTokens): one block per (KV head, split, token); the visible
//    cache is cut into n_splits ranges that run in parallel (long contexts keep every SM busy):
//    a statistics launch writes each split's maximum and sum, a values launch merges them and
//    writes each split's share of P·V, and a combine kernel adds the shares (one split: one
//    launch). The query heads sharing a KV head (grouped-query attention) are handled together,
//    so each K/V row is read once per group and pass.
//  - prompt: a tiled kernel (16 queries x 32 cache rows in shared memory, two passes).
// Positions are read from device memory and the split count does not depend on them, so the
// same launch (and a captured graph) serves every step of a decode, bit for bit.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace swarm::kernels::gpu {

inline constexpr int64_t kDecodeMaxTokens = 4;

struct AttentionArgs {
  const float* q = nullptr;       // [head_dim * n_head, n_tokens]
  const void* k_cache = nullptr;  // [head_dim * n_head_kv, capacity] of k_type
  const void* v_cache = nullptr;  // [head_dim * n_head_kv, capacity] of v_type
  // Cache element types as ggml ids: 0 f32, 1 f16, 8 q8_0 (kv_values.cuh; q8_0 needs head_dim a
  // multiple of 32). Queries are rounded for k_type as the CPU reference does.
  uint32_t k_type = 0;
  uint32_t v_type = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  int64_t n_tokens = 0;
  const int32_t* positions = nullptr;  // [n_tokens] device memory; token t sees rows [0, pos[t]]
  float* out = nullptr;                // [head_dim * n_head, n_tokens]
  int n_splits = 1;                    // decode only
  float* partials = nullptr;  // decode with n_splits > 1: AttentionPartialFloats(...) floats
};

// The split count for a decode: enough blocks for two waves over the device's SMs, at most 32.
// Depends only on the shape and the device, never on the cache length.
int AttentionDecodeSplits(int64_t n_head, int64_t n_head_kv, int64_t n_tokens, int sm_count);

// Floats of scratch the decode kernel needs for `n_splits` (0 when it needs none).
int64_t AttentionPartialFloats(int64_t n_head, int64_t head_dim, int64_t n_tokens, int n_splits);

// cudaErrorInvalidValue when head_dim > kMaxHeadDim, n_head is not a multiple of n_head_kv, a
// cache type is not one of the three (or q8_0 with head_dim not a multiple of 32), or a decode
// with n_splits > 1 lacks its partials.
cudaError_t LaunchAttention(const AttentionArgs& args, cudaStream_t stream);

}  // namespace swarm::kernels::gpu
