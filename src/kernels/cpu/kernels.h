// The optimized CPU backend's kernel tables: one per instruction-set level (generic C++, AVX2,
// AVX-512), each filled by files compiled with that level's flags (*_avx2.cpp, *_avx512.cpp) and
// chosen at run time. Kernels are plain functions over raw pointers; they allocate nothing and may
// be called from any thread on disjoint outputs.
//
// Determinism contract, which every matrix kernel keeps: the value of y[t, r] is computed by the
// same sequence of instructions whatever the row range, the tile it falls in, the number of tokens
// in the call and the token's place among them. Results therefore do not depend on the thread
// count or on how sequences are batched together.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/ggml_type.h"

namespace swarm::kernels::cpu {

// ---- quantized activations ---------------------------------------------------------------------
// The quantized weight types take activations quantized once per MatMul to 8 bits: one scale per
// group of 32 values for Q8_0/Q4_0 (as ggml's Q8_0), per 256 for Q4_K/Q6_K (as ggml's Q8_K; the
// last group may be shorter). Layout of one token of k values (k a multiple of 32), each part
// 64-byte aligned:
//   int8  qs[kp]          kp = k rounded up to 64; qs[i] = round(x[i] * 127 / amax(group)), 0 past
//   k float d[groups]       amax / 127 per group; groups = ceil(kp / group), 0 for groups past k
//   int16 bsum16[kp / 16] sums of qs over 16 values
//   int32 bsum32[kp / 32] sums of qs over 32 values
//   float fsum32[kp / 32] d * bsum32 (the mins term of Q4_K)
struct X8Layout {
  int64_t k = 0;
  int64_t group = 0;  // 32 or 256
  int64_t kp = 0;
  int64_t groups = 0;
  size_t d_offset = 0;
  size_t bsum16_offset = 0;
  size_t bsum32_offset = 0;
  size_t fsum32_offset = 0;
  // Optional lane section (X8LaneOrder): for each of the lane_groups full 512-value groups, the
  // group's 16 blocks of 32 laid out for kernels that keep one block per 32-bit lane:
  //   int8  qt[8][16][4]  qt[c][L] = bytes 4c..4c+3 of block BlockOfLane(order, L)
  //   float dx[16]        its scale
  //   int32 corr[16]      -(offset of the weight type) * sum of its bytes (see X8LaneOrder)
  int lane_order = 0;
  int64_t lane_groups = 0;
  size_t lanes_offset = 0;
  size_t bytes = 0;  // per token, a multiple of 64
};

inline constexpr size_t kX8LaneGroupBytes = 8 * 64 + 64 + 64;

constexpr size_t AlignUp64(size_t n) { return (n + 63) / 64 * 64; }

constexpr X8Layout MakeX8Layout(int64_t k, int64_t group, int lane_order = 0) {
  X8Layout l;
  l.k = k;
  l.group = group;
  l.kp = (k + 63) / 64 * 64;
  l.groups = (l.kp + group - 1) / group;
  l.d_offset = AlignUp64(static_cast<size_t>(l.kp));
  l.bsum16_offset = l.d_offset + AlignUp64(static_cast<size_t>(l.groups) * 4);
  l.bsum32_offset = l.bsum16_offset + AlignUp64(static_cast<size_t>(l.kp / 16) * 2);
  l.fsum32_offset = l.bsum32_offset + AlignUp64(static_cast<size_t>(l.kp / 32) * 4);
  l.lanes_offset = l.fsum32_offset + AlignUp64(static_cast<size_t>(l.kp / 32) * 4);
  l.lane_order = lane_order;
  l.lane_groups = lane_order != 0 ? k / 512 : 0;
  l.bytes = l.lanes_offset + static_cast<size_t>(l.lane_groups) * kX8LaneGroupBytes;
  return l;
}

// Lane orders of the X8 lane section, one per weight layout whose SIMD transpose yields it:
// 1 for Q8_0 (offset 128: the kernels see w + 128), 2 for Q4_0 (offset 8: nibbles are w + 8).
inline constexpr int kX8LanesQ8_0 = 1;
inline constexpr int kX8LanesQ4_0 = 2;

// The block (0..15 within its 512-value group) whose data lane L (0..15) holds.
constexpr int BlockOfLane(int order, int lane) {
  const int q = lane / 4, k = lane % 4;
  return order == kX8LanesQ8_0 ? 8 * (q / 2) + q % 2 + 2 * k : q + 4 * k;
}

inline int X8LaneOffset(int order) { return order == kX8LanesQ8_0 ? 128 : 8; }

// The activation group size a quantized weight type's kernels expect.
inline int64_t X8Group(GgmlType type) {
  return type == GgmlType::kQ4_K || type == GgmlType::kQ5_K || type == GgmlType::kQ6_K ||
                 type == GgmlType::kQ2_K || type == GgmlType::kQ3_K || type == GgmlType::kIQ4_XS
             ? 256
             : 32;
}

inline int X8LaneOrder(GgmlType type) {
  // Q4_1 and Q5_1 lanes (lane_layout_min.h) are in Q4_0's order and read corr as -8 * sum(x).
  if (type == GgmlType::kQ4_1 || type == GgmlType::kQ5_1) return kX8LanesQ4_0;
  if (type == GgmlType::kQ5_0 || type == GgmlType::kIQ4_NL) return kX8LanesQ4_0;  // Q4_0's blocks
  return type == GgmlType::kQ8_0 ? kX8LanesQ8_0 : type == GgmlType::kQ4_0 ? kX8LanesQ4_0 : 0;
}

// ---- matrix products ---------------------------------------------------------------------------
struct MatMulArgs {
  GgmlType type = GgmlType::kF32;
  const uint8_t* w = nullptr;  // weight row r at w + r * row_bytes
  size_t row_bytes = 0;
  int64_t n_in = 0;
  int64_t n_out = 0;
  // Token t's activations at x + t * x_stride: n_in floats for F32/F16/BF16 weights, the X8Layout
  // x8 for the quantized types.
  const uint8_t* x = nullptr;
  X8Layout x8;
  size_t x_stride = 0;
  int64_t n_tokens = 0;
  float* y = nullptr;  // [n_out, n_tokens]
};

// Computes y rows [row_begin, row_end) for every token.
using MatMulFn = void (*)(const MatMulArgs& args, int64_t row_begin, int64_t row_end);
// Quantizes one token's l.k floats into the layout l at dst.
using QuantizeX8Fn = void (*)(const float* x, const X8Layout& l, uint8_t* dst);

// ---- attention ----------------------------------------------------------------------------------
// The kernels follow llama.cpp's attention without flash attention (kernels/kv_types.h): the
// scores of all visible positions first, then the softmax over the whole row in float (exp of
// s - max, the sum in double, probabilities = e * (float)(1 / sum)), the probabilities rounded
// to f16 for an f16 V cache, and last P·V. The arithmetic is float throughout.
struct AttentionArgs {
  const float* q = nullptr;       // [head_dim * n_head, T]
  const void* k_cache = nullptr;  // [head_dim * n_head_kv, capacity] of shape.cache.k
  const void* v_cache = nullptr;  // ... of shape.cache.v
  AttentionShape shape;
  const int32_t* positions = nullptr;  // [T]
  float* out = nullptr;                // [head_dim * n_head, T]
  float scale = 1.0f;                  // 1 / sqrt(head_dim)
  // Chunks of kAttentionChunk positions the scratch's score table holds: at least
  // AttentionScoreChunks of the longest visible context among the tokens.
  int64_t score_chunks = 0;
};

// Positions per chunk: K and V rows are converted to float a chunk at a time, and the score
// table is kept as [chunk][group][kAttentionChunk] so that a chunk's scores of a group's heads lie
// together (the kernels' register blocks read them with a fixed stride).
inline constexpr int64_t kAttentionChunk = 128;

inline int64_t AttentionScoreChunks(int64_t n_visible) {
  return (n_visible + kAttentionChunk - 1) / kAttentionChunk;
}

// Scratch one attention task needs, in floats, for a shape and a score table of score_chunks.
int64_t AttentionScratchFloats(const AttentionShape& shape, int64_t score_chunks);
// Runs tasks [begin, end): task i is (token i / n_head_kv, KV head i % n_head_kv) and computes the
// n_head / n_head_kv query heads that share that KV head. scratch: AttentionScratchFloats floats.
using AttentionFn = void (*)(const AttentionArgs& args, int64_t begin, int64_t end, float* scratch);

// n values of a KV cache type (f16, or q8_0 with n a multiple of 32) as floats.
using KvToFloatFn = void (*)(GgmlType type, const void* src, float* dst, int64_t n);

// The parts of an attention task's scratch.
struct AttentionParts {
  float* scores = nullptr;  // [score_chunks, group, kAttentionChunk]: scores, then probabilities
  float* acc = nullptr;     // [group, head_dim]
  float* q = nullptr;       // [group, head_dim]: the group's query heads rounded for the K type
  float* k = nullptr;       // [chunk, head_dim]: a chunk of key rows converted to float
  float* v = nullptr;       // [chunk, head_dim]
};
AttentionParts AttentionScratchParts(const AttentionArgs& args, float* scratch);

// Scores of head g of the group in chunk c of the table.
inline float* ChunkScores(float* table, int64_t group, int64_t c, int64_t g) {
  return table + (c * group + g) * kAttentionChunk;
}

// The group's query heads (group * head_dim floats at q0) as the K cache type's dot product sees
// them: q0 itself for f32 keys, else rounded into buf (kernels/kv_types.h).
const float* RoundedQueries(GgmlType k_type, const float* q0, int64_t group, int64_t head_dim,
                            float* buf);

// Rows [c0, c0 + len) of KV head kvh of a cache as floats with a row stride: the cache itself for
// f32 (stride kv_dim), else converted into buf (stride head_dim).
struct KvRows {
  const float* data;
  int64_t stride;
};
KvRows KvChunkRows(GgmlType type, const void* cache, const AttentionShape& shape, int64_t kvh,
                   int64_t c0, int64_t len, float* buf, KvToFloatFn to_float);

struct KernelTable {
  Isa isa = Isa::kGeneric;
  // Whether the Q8_0/Q4_0 kernels read the X8 lane section (the quantizer must then fill it).
  bool x8_lanes = false;
  // Indexed by MatMulSlot(type); null for types the table lacks.
  MatMulFn matmul[15] = {};
  // Products over weights in the backend's own layout of their type (CpuLayoutOf), by
  // MatMulSlot(type). Where a type has one, the backend's PrepareWeight rewrites that type's
  // weights into that layout.
  MatMulFn matmul_packed[15] = {};
  QuantizeX8Fn quantize_x8 = nullptr;
  // One token: y[i] = x[i] / sqrt(mean(x^2) + eps) * w[i] (y may alias x).
  void (*rms_norm)(const float* x, const float* w, int64_t n, float eps, float* y) = nullptr;
  // y = silu(g) * u (y may alias g).
  void (*swiglu)(const float* g, const float* u, int64_t n, float* y) = nullptr;
  void (*add)(float* y, const float* x, int64_t n) = nullptr;
  AttentionFn attention = nullptr;
  KvToFloatFn kv_to_float = nullptr;
};

// Slot of a weight type in KernelTable::matmul, or -1.
inline int MatMulSlot(GgmlType type) {
  switch (type) {
    case GgmlType::kF32:
      return 0;
    case GgmlType::kF16:
      return 1;
    case GgmlType::kBF16:
      return 2;
    case GgmlType::kQ8_0:
      return 3;
    case GgmlType::kQ4_0:
      return 4;
    case GgmlType::kQ4_K:
      return 5;
    case GgmlType::kQ6_K:
      return 6;
    case GgmlType::kQ2_K:
      return 10;
    case GgmlType::kQ3_K:
      return 11;
    case GgmlType::kIQ4_XS:
      return 12;
    case GgmlType::kQ4_1:
      return 7;
    case GgmlType::kQ5_0:
      return 8;
    case GgmlType::kQ5_K:
      return 9;
    case GgmlType::kQ5_1:
      return 13;
    case GgmlType::kIQ4_NL:
      return 14;
    default:
      return -1;
  }
}

// The optimized backend's own layout of a weight type: the lane layout of Q4_0, Q8_0, Q4_1, Q5_1,
// Q5_0 and IQ4_NL (lane_layout.h), the row panels of the float types and the K-quants that have
// them and of IQ4_XS (row_panels.h, q4k_panels.h ... iq4xs_panels.h); kGguf where it has none.
// PrepareWeight rewrites a type only where the kernel table has a kernel for its layout.
inline WeightLayout CpuLayoutOf(GgmlType type) {
  switch (type) {
    case GgmlType::kQ4_0:
    case GgmlType::kQ8_0:
    case GgmlType::kQ4_1:  // lane_layout_min.h
    case GgmlType::kQ5_1:
    case GgmlType::kQ5_0:  // lane_layout_q5_0.h
    case GgmlType::kIQ4_NL:
      return WeightLayout::kCpuLanes;
    case GgmlType::kF32:
    case GgmlType::kF16:
    case GgmlType::kBF16:
    case GgmlType::kQ4_K:  // rows interleaved 8 at a time (q4k_panels.h, q6k_panels.h)
    case GgmlType::kQ6_K:
    case GgmlType::kQ5_K:    // q5k_panels.h
    case GgmlType::kQ2_K:    // q2k_panels.h
    case GgmlType::kQ3_K:    // q3k_panels.h
    case GgmlType::kIQ4_XS:  // iq4xs_panels.h
      return WeightLayout::kCpuRowPanels;
    default:
      return WeightLayout::kGguf;
  }
}

inline bool UsesX8(GgmlType type) {
  return type == GgmlType::kQ8_0 || type == GgmlType::kQ4_0 || type == GgmlType::kQ4_K ||
         type == GgmlType::kQ6_K || type == GgmlType::kQ4_1 || type == GgmlType::kQ5_0 ||
         type == GgmlType::kQ5_K || type == GgmlType::kQ2_K || type == GgmlType::kQ3_K ||
         type == GgmlType::kIQ4_XS || type == GgmlType::kQ5_1 || type == GgmlType::kIQ4_NL;
}

const KernelTable& GenericKernels();
const KernelTable& Avx2Kernels();
const KernelTable& Avx512Kernels();
const KernelTable& KernelsFor(Isa isa);

}  // namespace swarm::kernels::cpu
