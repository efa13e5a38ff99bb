// Dequantization in registers, shared by the mat-vec, get-rows and to-f16 kernels. Each weight type
// is cut into "chunks": the few elements one thread decodes at once from one block, as kRuns runs
// of kRunLen consecutive elements at element offsets off[r] inside the block. Values are rounded
// exactly as quant_reference.cpp's DequantizeRow (no fused multiply-add where the reference has
// a separate multiply and subtract), so a dequantized weight is bit-identical to the reference.
// Included only by .cu files (nvcc); host-callable too, so the layout is tested without a GPU.
#pragma once

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace swarm::kernels::gpu {

template <WType kType, int kFloatRun = 4>
struct Quant;

// Q8_0: 32 elements = fp16 d + 32 int8; a chunk is 8 consecutive quants (4 chunks per block).
template <int kFloatRun>
struct Quant<WType::kQ8_0, kFloatRun> {
  static constexpr int kBlock = 32, kBytes = 34, kChunks = 4, kRuns = 1, kRunLen = 8;
  __host__ __device__ __forceinline__ static void Load(const uint8_t* block, int c, float* v,
                                                       int* off) {
    const float d = HalfBitsToFloat(LoadU16(block));
    const uint8_t* q = block + 2 + 8 * c;
    SWARM_UNROLL
    for (int i = 0; i < 4; ++i) {
      const uint16_t w = LoadU16(q + 2 * i);
      v[2 * i] = static_cast<float>(static_cast<int8_t>(w & 0xff)) * d;
      v[2 * i + 1] = static_cast<float>(static_cast<int8_t>(w >> 8)) * d;
    }
    off[0] = 8 * c;
  }
};

// Q4_0: 32 elements = fp16 d + 16 bytes; byte j holds element j (low nibble) and j + 16 (high).
// A chunk is 4 bytes: elements 4c..4c+3 and 16+4c..16+4c+3.
template <int kFloatRun>
struct Quant<WType::kQ4_0, kFloatRun> {
  static constexpr int kBlock = 32, kBytes = 18, kChunks = 4, kRuns = 2, kRunLen = 4;
  __host__ __device__ __forceinline__ static void Load(const uint8_t* block, int c, float* v,
                                                       int* off) {
    const float d = HalfBitsToFloat(LoadU16(block));
    const uint32_t q = LoadU32Unaligned2(block + 2 + 4 * c);
    SWARM_UNROLL
    for (int k = 0; k < 4; ++k) {
      const int byte = static_cast<int>((q >> (8 * k)) & 0xff);
      v[k] = static_cast<float>((byte & 0x0f) - 8) * d;
      v[4 + k] = static_cast<float>((byte >> 4) - 8) * d;
    }
    off[0] = 4 * c;
    off[1] = 16 + 4 * c;
  }
};

// Q4_K: 256 elements = fp16 d, fp16 dmin, 12 bytes of packed 6-bit scales/mins, 128 bytes of
// nibbles. Group g (64 elements) uses qs[32g..32g+31]: low nibbles are elements 64g+0..31 (scale
// 2g), high nibbles 64g+32..63 (scale 2g+1). A chunk is 8 bytes of one group: 16 elements.
template <int kFloatRun>
struct Quant<WType::kQ4_K, kFloatRun> {
  static constexpr int kBlock = 256, kBytes = 144, kChunks = 16, kRuns = 2, kRunLen = 8;
  __host__ __device__ __forceinline__ static void ScaleMin(const uint8_t* scales, int j, int* sc,
                                                           int* m) {
    if (j < 4) {
      *sc = Ldg(scales + j) & 63;
      *m = Ldg(scales + j + 4) & 63;
    } else {
      *sc = (Ldg(scales + j + 4) & 0x0f) | ((Ldg(scales + j - 4) >> 6) << 4);
      *m = (Ldg(scales + j + 4) >> 4) | ((Ldg(scales + j) >> 6) << 4);
    }
  }
  __host__ __device__ __forceinline__ static void Load(const uint8_t* block, int c, float* v,
                                                       int* off) {
    const int group = c / 4, part = c % 4;
    const float d = HalfBitsToFloat(LoadU16(block));
    const float dmin = HalfBitsToFloat(LoadU16(block + 2));
    int sc, m;
    ScaleMin(block + 4, 2 * group, &sc, &m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    ScaleMin(block + 4, 2 * group + 1, &sc, &m);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
    // Blocks are 144 bytes and rows start 256-byte aligned, so qs + 8k is 8-byte aligned.
    const uint2 q = Ldg(reinterpret_cast<const uint2*>(block + 16 + 32 * group + 8 * part));
    SWARM_UNROLL
    for (int k = 0; k < 8; ++k) {
      const uint32_t word = k < 4 ? q.x : q.y;
      const int byte = static_cast<int>((word >> (8 * (k % 4))) & 0xff);
      v[k] = SubRn(MulRn(d1, static_cast<float>(byte & 0x0f)), m1);
      v[8 + k] = SubRn(MulRn(d2, static_cast<float>(byte >> 4)), m2);
    }
    off[0] = 64 * group + 8 * part;
    off[1] = 64 * group + 32 + 8 * part;
  }
};

// Q6_K: 256 elements = ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], fp16 d. Half
// h (128 elements) element l (0..31) and l+32, l+64, l+96 share ql[64h+l], ql[64h+l+32] and
// qh[32h+l]. A chunk is 4 values of l: 16 elements in 4 runs of 4.
template <int kFloatRun>
struct Quant<WType::kQ6_K, kFloatRun> {
  static constexpr int kBlock = 256, kBytes = 210, kChunks = 16, kRuns = 4, kRunLen = 4;
  __host__ __device__ __forceinline__ static void Load(const uint8_t* block, int c, float* v,
                                                       int* off) {
    const int half = c / 8, l0 = 4 * (c % 8);
    const uint32_t ql_lo = LoadU32Unaligned2(block + 64 * half + l0);
    const uint32_t ql_hi = LoadU32Unaligned2(block + 64 * half + 32 + l0);
    const uint32_t qh = LoadU32Unaligned2(block + 128 + 32 * half + l0);
    const auto* scales = reinterpret_cast<const int8_t*>(block + 192 + 8 * half);
    const int is = l0 / 16;
    const float d = HalfBitsToFloat(LoadU16(block + 208));
    const float ds[4] = {
        d * static_cast<float>(Ldg(scales + is)), d * static_cast<float>(Ldg(scales + is + 2)),
        d * static_cast<float>(Ldg(scales + is + 4)), d * static_cast<float>(Ldg(scales + is + 6))};
    SWARM_UNROLL
    for (int k = 0; k < 4; ++k) {
      const int a = static_cast<int>((ql_lo >> (8 * k)) & 0xff);
      const int b = static_cast<int>((ql_hi >> (8 * k)) & 0xff);
      const int h = static_cast<int>((qh >> (8 * k)) & 0xff);
      v[k] = ds[0] * static_cast<float>(((a & 0x0f) | (((h >> 0) & 3) << 4)) - 32);
      v[4 + k] = ds[1] * static_cast<float>(((b & 0x0f) | (((h >> 2) & 3) << 4)) - 32);
      v[8 + k] = ds[2] * static_cast<float>(((a >> 4) | (((h >> 4) & 3) << 4)) - 32);
      v[12 + k] = ds[3] * static_cast<float>(((b >> 4) | (((h >> 6) & 3) << 4)) - 32);
    }
    SWARM_UNROLL
    for (int r = 0; r < 4; ++r) off[r] = 128 * half + l0 + 32 * r;
  }
};

}  // namespace swarm::kernels::gpu

#include "kernels/cuda/dequantize_q5.cuh"  // Q4_1, Q5_0, Q5_K (they reuse Q4_K's ScaleMin)

namespace swarm::kernels::gpu {

// Float types: a chunk is kFloatRun consecutive elements (4 when the row length allows aligned
// vector loads, else 1).
template <WType kType, int kFloatRun>
struct FloatQuant {
  static constexpr int kElemBytes = kType == WType::kF32 ? 4 : 2;
  static constexpr int kBlock = kFloatRun, kBytes = kFloatRun * kElemBytes, kChunks = 1, kRuns = 1,
                       kRunLen = kFloatRun;
  __host__ __device__ __forceinline__ static float Convert(uint16_t bits) {
    return kType == WType::kF16 ? HalfBitsToFloat(bits) : Bf16BitsToFloat(bits);
  }
  __host__ __device__ __forceinline__ static void Load(const uint8_t* block, int /*c*/, float* v,
                                                       int* off) {
    off[0] = 0;
    if constexpr (kType == WType::kF32) {
      if constexpr (kFloatRun == 4) {
        const float4 f = Ldg(reinterpret_cast<const float4*>(block));
        v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
      } else {
        v[0] = Ldg(reinterpret_cast<const float*>(block));
      }
    } else {
      if constexpr (kFloatRun == 4) {
        const uint2 h = Ldg(reinterpret_cast<const uint2*>(block));
        v[0] = Convert(static_cast<uint16_t>(h.x & 0xffff));
        v[1] = Convert(static_cast<uint16_t>(h.x >> 16));
        v[2] = Convert(static_cast<uint16_t>(h.y & 0xffff));
        v[3] = Convert(static_cast<uint16_t>(h.y >> 16));
      } else {
        v[0] = Convert(LoadU16(block));
      }
    }
  }
};

template <int kFloatRun>
struct Quant<WType::kF32, kFloatRun> : FloatQuant<WType::kF32, kFloatRun> {};
template <int kFloatRun>
struct Quant<WType::kF16, kFloatRun> : FloatQuant<WType::kF16, kFloatRun> {};
template <int kFloatRun>
struct Quant<WType::kBF16, kFloatRun> : FloatQuant<WType::kBF16, kFloatRun> {};

// Float rows can use 4-element chunks when every row starts 8-byte (f16/bf16) or 16-byte (f32)
// aligned, i.e. when n_in is a multiple of 4.
inline bool FloatRunOf4(int64_t n_in) { return n_in % 4 == 0; }

}  // namespace swarm::kernels::gpu

#include "kernels/cuda/dequantize_lowbit.cuh"  // Q2_K, Q3_K, IQ4_XS
#include "kernels/cuda/dequantize_nl.cuh"      // Q5_1, IQ4_NL
