// AVX-512 element-wise kernels, activation quantization, attention, and the AVX-512 kernel table.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/kernels_isa.h"
#include "kernels/cpu/matmul_lowbit.h"
#include "kernels/cpu/simd_avx512.h"  // first: brings in immintrin.h

namespace swarm::kernels::cpu::avx512 {
namespace {

// The lane section (kernels.h, X8Layout) from the natural one: the same 16 x 8 transpose of 32-bit
// words the Q8_0 kernel applies to its weights, then, for Q4_0's lane order, a lane permutation.
void FillLanes(const X8Layout& l, uint8_t* dst) {
  if (l.lane_order == 0) return;
  alignas(64) int32_t block_of_lane[16], q8_lane_of_block[16], from_q8_lane[16];
  for (int lane = 0; lane < 16; ++lane) {
    block_of_lane[lane] = BlockOfLane(l.lane_order, lane);
    q8_lane_of_block[BlockOfLane(kX8LanesQ8_0, lane)] = lane;
  }
  for (int lane = 0; lane < 16; ++lane) from_q8_lane[lane] = q8_lane_of_block[block_of_lane[lane]];
  const __m512i blocks = _mm512_load_si512(block_of_lane);
  const __m512i permute = _mm512_load_si512(from_q8_lane);
  const bool q8_order = l.lane_order == kX8LanesQ8_0;
  const __m512i offset = _mm512_set1_epi32(-X8LaneOffset(l.lane_order));
  const auto* d = reinterpret_cast<const float*>(dst + l.d_offset);
  const auto* bsum32 = reinterpret_cast<const int32_t*>(dst + l.bsum32_offset);
  for (int64_t g = 0; g < l.lane_groups; ++g) {
    const uint8_t* qs = dst + 512 * g;
    uint8_t* out = dst + l.lanes_offset + g * kX8LaneGroupBytes;
    __m512i z[8];  // z[p]: blocks 2p and 2p+1
    for (int p = 0; p < 8; ++p) z[p] = _mm512_loadu_si512(qs + 64 * p);
    __m512i v[8];
    for (int h = 0; h < 2; ++h) {
      const __m512i lo01 = _mm512_unpacklo_epi32(z[4 * h], z[4 * h + 1]);
      const __m512i hi01 = _mm512_unpackhi_epi32(z[4 * h], z[4 * h + 1]);
      const __m512i lo23 = _mm512_unpacklo_epi32(z[4 * h + 2], z[4 * h + 3]);
      const __m512i hi23 = _mm512_unpackhi_epi32(z[4 * h + 2], z[4 * h + 3]);
      v[4 * h + 0] = _mm512_unpacklo_epi64(lo01, lo23);
      v[4 * h + 1] = _mm512_unpackhi_epi64(lo01, lo23);
      v[4 * h + 2] = _mm512_unpacklo_epi64(hi01, hi23);
      v[4 * h + 3] = _mm512_unpackhi_epi64(hi01, hi23);
    }
    for (int c = 0; c < 4; ++c) {
      __m512i lo = _mm512_shuffle_i64x2(v[c], v[4 + c], _MM_SHUFFLE(2, 0, 2, 0));
      __m512i hi = _mm512_shuffle_i64x2(v[c], v[4 + c], _MM_SHUFFLE(3, 1, 3, 1));
      if (!q8_order) {
        lo = _mm512_permutexvar_epi32(permute, lo);
        hi = _mm512_permutexvar_epi32(permute, hi);
      }
      _mm512_storeu_si512(out + 64 * c, lo);
      _mm512_storeu_si512(out + 64 * (c + 4), hi);
    }
    _mm512_storeu_ps(out + 8 * 64, _mm512_permutexvar_ps(blocks, _mm512_loadu_ps(d + 16 * g)));
    const __m512i sums = _mm512_permutexvar_epi32(blocks, _mm512_loadu_si512(bsum32 + 16 * g));
    _mm512_storeu_si512(out + 9 * 64, _mm512_mullo_epi32(sums, offset));
  }
}

// Same arithmetic as the generic QuantizeX8 (x * (127 / amax), rounded half to even), so both
// produce identical bytes.
void QuantizeX8(const float* x, const X8Layout& l, uint8_t* dst) {
  const int64_t k = l.k;
  auto* qs = reinterpret_cast<int8_t*>(dst);
  auto* d = reinterpret_cast<float*>(dst + l.d_offset);
  auto* bsum16 = reinterpret_cast<int16_t*>(dst + l.bsum16_offset);
  auto* bsum32 = reinterpret_cast<int32_t*>(dst + l.bsum32_offset);
  auto* fsum32 = reinterpret_cast<float*>(dst + l.fsum32_offset);
  for (int64_t g = 0; g < l.groups; ++g) {
    const int64_t begin = l.group * g, end = std::min<int64_t>(k, begin + l.group);  // x32
    __m512 amax = _mm512_setzero_ps();
    for (int64_t i = begin; i < end; i += 16) {
      amax = _mm512_max_ps(amax, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    }
    const float m = Hmax(amax);
    const __m512 id = _mm512_set1_ps(m > 0.0f ? 127.0f / m : 0.0f);
    d[g] = m / 127.0f;
    for (int64_t i = begin; i < end; i += 16) {
      const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), id));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + i), _mm512_cvtsepi32_epi8(q));
      bsum16[i / 16] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
    }
  }
  for (int64_t i = k; i < l.kp; ++i) qs[i] = 0;
  for (int64_t j = k / 16; j < l.kp / 16; ++j) bsum16[j] = 0;
  for (int64_t j = 0; j < l.kp / 32; ++j) {
    bsum32[j] = bsum16[2 * j] + bsum16[2 * j + 1];
    fsum32[j] = d[32 * j / l.group] * static_cast<float>(bsum32[j]);
  }
  FillLanes(l, dst);
}

void RmsNorm(const float* x, const float* w, int64_t n, float eps, float* y) {
  // Sum of squares in double (8 lanes), as the reference does in one.
  __m512d acc = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
    acc = _mm512_fmadd_pd(v, v, acc);
  }
  if (i < n) {
    const __m512d v =
        _mm512_cvtps_pd(_mm256_maskz_loadu_ps(static_cast<__mmask8>((1u << (n - i)) - 1), x + i));
    acc = _mm512_fmadd_pd(v, v, acc);
  }
  const double sum = _mm512_reduce_add_pd(acc);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const __m512 scale = _mm512_set1_ps(1.0f / std::sqrt(mean + eps));
  for (i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    const __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), scale),
                                   _mm512_maskz_loadu_ps(m, w + i));
    _mm512_mask_storeu_ps(y + i, m, v);
  }
}

void SwiGlu(const float* g, const float* u, int64_t n, float* y) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
    const __m512 silu =
        _mm512_div_ps(gv, _mm512_add_ps(one, Exp(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(m, u + i)));
  }
}

void Add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    _mm512_mask_storeu_ps(
        y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i), _mm512_maskz_loadu_ps(m, x + i)));
  }
}

// scores[g * kAttentionChunk + p] = (q_g · k_p) * scale for g < G, p < len: each key row is
// loaded once for G query heads, whose G dot products run interleaved (independent chains). Every
// score is one chain of fused multiply-adds over 16 lanes (masked tail) and a fixed-order Hsum.
template <int G>
void Scores(const float* q0, const float* k0, int64_t hd, int64_t kv_stride, int64_t len,
            float scale, float* scores) {
  for (int64_t p = 0; p < len; ++p) {
    const float* k = k0 + p * kv_stride;
    __m512 acc[G];
    SWARM_UNROLL
    for (int g = 0; g < G; ++g) acc[g] = _mm512_setzero_ps();
    for (int64_t i = 0; i < hd; i += 16) {
      const __mmask16 m = TailMask(hd - i);
      const __m512 kv = _mm512_maskz_loadu_ps(m, k + i);
      SWARM_UNROLL
      for (int g = 0; g < G; ++g) {
        acc[g] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q0 + g * hd + i), kv, acc[g]);
      }
    }
    SWARM_UNROLL
    for (int g = 0; g < G; ++g) scores[g * kAttentionChunk + p] = Hsum(acc[g]) * scale;
  }
}

// acc[g][i] += sum over p of s[g][p] * v_p[i], for G heads and V vectors of 16 values from
// vector i0: G * V accumulators stay in registers while the positions stream past, each value
// row loaded once for G heads. Every element sees the same fused multiply-adds in the same order
// (p ascending) as a loop over one (g, i) at a time.
template <int G, int V>
void WeightedValues(const float* scores, const float* v0, int64_t hd, int64_t kv_stride,
                    int64_t len, int64_t i0, float* acc) {
  __mmask16 m[V];
  __m512 av[G][V];
  SWARM_UNROLL
  for (int j = 0; j < V; ++j) m[j] = TailMask(hd - (i0 + j) * 16);
  SWARM_UNROLL
  for (int g = 0; g < G; ++g) {
    SWARM_UNROLL
    for (int j = 0; j < V; ++j)
      av[g][j] = _mm512_maskz_loadu_ps(m[j], acc + g * hd + (i0 + j) * 16);
  }
  for (int64_t p = 0; p < len; ++p) {
    __m512 vv[V];
    SWARM_UNROLL
    for (int j = 0; j < V; ++j)
      vv[j] = _mm512_maskz_loadu_ps(m[j], v0 + p * kv_stride + (i0 + j) * 16);
    SWARM_UNROLL
    for (int g = 0; g < G; ++g) {
      const __m512 sv = _mm512_set1_ps(scores[g * kAttentionChunk + p]);
      SWARM_UNROLL
      for (int j = 0; j < V; ++j) av[g][j] = _mm512_fmadd_ps(sv, vv[j], av[g][j]);
    }
  }
  SWARM_UNROLL
  for (int g = 0; g < G; ++g) {
    SWARM_UNROLL
    for (int j = 0; j < V; ++j) _mm512_mask_storeu_ps(acc + g * hd + (i0 + j) * 16, m[j], av[g][j]);
  }
}

template <int G>
void WeightedValuesHeads(const float* scores, const float* v0, int64_t hd, int64_t kv_stride,
                         int64_t len, float* acc) {
  const int64_t nv = (hd + 15) / 16;
  int64_t i0 = 0;
  for (; i0 + 4 <= nv; i0 += 4) WeightedValues<G, 4>(scores, v0, hd, kv_stride, len, i0, acc);
  switch (nv - i0) {
    case 3:
      return WeightedValues<G, 3>(scores, v0, hd, kv_stride, len, i0, acc);
    case 2:
      return WeightedValues<G, 2>(scores, v0, hd, kv_stride, len, i0, acc);
    case 1:
      return WeightedValues<G, 1>(scores, v0, hd, kv_stride, len, i0, acc);
    default:
      return;
  }
}

// n f16 / q8_0 cache values as floats (16 at a time; q8_0 blocks widened 16 quants at a time).
void KvToFloat(GgmlType type, const void* src, float* dst, int64_t n) {
  if (type == GgmlType::kF16) {
    const auto* h = static_cast<const uint16_t*>(src);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      _mm512_storeu_ps(
          dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i))));
    }
    for (; i < n; ++i) dst[i] = HalfToFloat1(h[i]);
    return;
  }
  const auto* blocks = static_cast<const BlockQ8_0*>(src);
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    const __m512 d = _mm512_set1_ps(HalfToFloat1(blocks[b].d));
    for (int j = 0; j < kQK8_0; j += 16) {
      const __m512i q =
          _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks[b].qs + j)));
      _mm512_storeu_ps(dst + b * kQK8_0 + j, _mm512_mul_ps(_mm512_cvtepi32_ps(q), d));
    }
  }
}

// Turns head g's scores (n_visible of them in the table) into probabilities as ggml's soft_max:
// exp(s - max), the sum in double of each vector's sum, times (float)(1 / sum); rounded to f16
// (nearest even) when round_p.
void Probabilities(float* table, int64_t group, int64_t g, int64_t n_visible, bool round_p) {
  const int64_t chunks = AttentionScoreChunks(n_visible);
  __m512 mv = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t c = 0; c < chunks; ++c) {
    const float* s = ChunkScores(table, group, c, g);
    const int64_t len = std::min(kAttentionChunk, n_visible - c * kAttentionChunk);
    for (int64_t p = 0; p < len; p += 16) {
      mv = _mm512_mask_max_ps(mv, TailMask(len - p), mv, _mm512_loadu_ps(s + p));
    }
  }
  const __m512 max_score = _mm512_set1_ps(Hmax(mv));
  double sum = 0.0;
  for (int64_t c = 0; c < chunks; ++c) {
    float* s = ChunkScores(table, group, c, g);
    const int64_t len = std::min(kAttentionChunk, n_visible - c * kAttentionChunk);
    for (int64_t p = 0; p < len; p += 16) {
      const __mmask16 m = TailMask(len - p);
      const __m512 e =
          _mm512_maskz_mov_ps(m, Exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + p), max_score)));
      _mm512_mask_storeu_ps(s + p, m, e);
      sum += static_cast<double>(Hsum(e));
    }
  }
  const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / sum));
  for (int64_t c = 0; c < chunks; ++c) {
    float* s = ChunkScores(table, group, c, g);
    const int64_t len = std::min(kAttentionChunk, n_visible - c * kAttentionChunk);
    for (int64_t p = 0; p < len; p += 16) {
      const __mmask16 m = TailMask(len - p);
      __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + p), inv);
      if (round_p) {
        x = _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      }
      _mm512_mask_storeu_ps(s + p, m, x);
    }
  }
}

// All scores, the softmax over the row, then P·V (kernels.h). The scores and P·V load each key
// and value row once for up to 4 heads of the group.
void Attention(const AttentionArgs& a, int64_t begin, int64_t end, float* scratch) {
  const int64_t hd = a.shape.head_dim;
  const int64_t group = a.shape.n_head / a.shape.n_head_kv;
  const int64_t q_stride = hd * a.shape.n_head;
  const bool round_p = a.shape.cache.v == GgmlType::kF16;
  const AttentionParts parts = AttentionScratchParts(a, scratch);
  float* acc = parts.acc;
  for (int64_t task = begin; task < end; ++task) {
    const int64_t t = task / a.shape.n_head_kv;
    const int64_t kvh = task % a.shape.n_head_kv;
    const int64_t n_visible = int64_t{a.positions[t]} + 1;
    const int64_t chunks = AttentionScoreChunks(n_visible);
    const float* q0 =
        RoundedQueries(a.shape.cache.k, a.q + t * q_stride + kvh * group * hd, group, hd, parts.q);
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t c0 = c * kAttentionChunk, len = std::min(kAttentionChunk, n_visible - c0);
      const KvRows k_rows =
          KvChunkRows(a.shape.cache.k, a.k_cache, a.shape, kvh, c0, len, parts.k, KvToFloat);
      for (int64_t g = 0; g < group; g += 4) {
        const float* qg = q0 + g * hd;
        float* sg = ChunkScores(parts.scores, group, c, g);
        switch (std::min<int64_t>(4, group - g)) {
          case 4:
            Scores<4>(qg, k_rows.data, hd, k_rows.stride, len, a.scale, sg);
            break;
          case 3:
            Scores<3>(qg, k_rows.data, hd, k_rows.stride, len, a.scale, sg);
            break;
          case 2:
            Scores<2>(qg, k_rows.data, hd, k_rows.stride, len, a.scale, sg);
            break;
          default:
            Scores<1>(qg, k_rows.data, hd, k_rows.stride, len, a.scale, sg);
            break;
        }
      }
    }
    for (int64_t g = 0; g < group; ++g) Probabilities(parts.scores, group, g, n_visible, round_p);
    std::fill(acc, acc + group * hd, 0.0f);
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t c0 = c * kAttentionChunk, len = std::min(kAttentionChunk, n_visible - c0);
      const KvRows v_rows =
          KvChunkRows(a.shape.cache.v, a.v_cache, a.shape, kvh, c0, len, parts.v, KvToFloat);
      for (int64_t g = 0; g < group; g += 4) {
        const float* sg = ChunkScores(parts.scores, group, c, g);
        float* ag = acc + g * hd;
        switch (std::min<int64_t>(4, group - g)) {
          case 4:
            WeightedValuesHeads<4>(sg, v_rows.data, hd, v_rows.stride, len, ag);
            break;
          case 3:
            WeightedValuesHeads<3>(sg, v_rows.data, hd, v_rows.stride, len, ag);
            break;
          case 2:
            WeightedValuesHeads<2>(sg, v_rows.data, hd, v_rows.stride, len, ag);
            break;
          default:
            WeightedValuesHeads<1>(sg, v_rows.data, hd, v_rows.stride, len, ag);
            break;
        }
      }
    }
    std::copy(acc, acc + group * hd, a.out + t * q_stride + kvh * group * hd);
  }
}

KernelTable MakeTable() {
  KernelTable t = GenericKernelTable();
  t.isa = Isa::kAvx512;
  t.x8_lanes = true;
  t.matmul[MatMulSlot(GgmlType::kF32)] = MatMulF32;
  t.matmul[MatMulSlot(GgmlType::kF16)] = MatMulF16;
  t.matmul[MatMulSlot(GgmlType::kBF16)] = MatMulBF16;
  t.matmul[MatMulSlot(GgmlType::kQ8_0)] = MatMulQ8_0;
  t.matmul[MatMulSlot(GgmlType::kQ4_0)] = MatMulQ4_0;
  t.matmul[MatMulSlot(GgmlType::kQ4_K)] = MatMulQ4_K;
  t.matmul[MatMulSlot(GgmlType::kQ6_K)] = MatMulQ6_K;
  for (GgmlType lt : {GgmlType::kQ2_K, GgmlType::kQ3_K, GgmlType::kIQ4_XS}) {
    t.matmul[MatMulSlot(lt)] = LowBitMatMulAvx512(lt);
  }
  t.matmul[MatMulSlot(GgmlType::kQ4_1)] = MatMulQ4_1;
  t.matmul[MatMulSlot(GgmlType::kQ5_0)] = MatMulQ5_0;
  t.matmul[MatMulSlot(GgmlType::kQ5_K)] = MatMulQ5_K;
  t.matmul[MatMulSlot(GgmlType::kQ5_1)] = MatMulQ5_1;
  t.matmul[MatMulSlot(GgmlType::kIQ4_NL)] = MatMulIQ4_NL;
  t.matmul_packed[MatMulSlot(GgmlType::kF32)] = MatMulF32Panels;
  t.matmul_packed[MatMulSlot(GgmlType::kF16)] = MatMulF16Panels;
  t.matmul_packed[MatMulSlot(GgmlType::kBF16)] = MatMulBF16Panels;
  t.matmul_packed[MatMulSlot(GgmlType::kQ4_0)] = MatMulQ4_0Lanes;
  t.matmul_packed[MatMulSlot(GgmlType::kQ8_0)] = MatMulQ8_0Lanes;
  // Q5_K's AVX2 panel kernel is faster than the 512-bit GGUF one, for one token (36.7 against
  // 20.1 GB/s in cache) and for prompts (156 against 121 GFLOP/s).
  t.matmul_packed[MatMulSlot(GgmlType::kQ5_K)] = avx2::MatMulQ5_KPanels;
  t.quantize_x8 = QuantizeX8;
  t.rms_norm = RmsNorm;
  t.swiglu = SwiGlu;
  t.add = Add;
  t.attention = Attention;
  t.kv_to_float = KvToFloat;
  return t;
}

}  // namespace
}  // namespace swarm::kernels::cpu::avx512

namespace swarm::kernels::cpu {

const KernelTable& Avx512Kernels() {
  static const KernelTable table = avx512::MakeTable();
  return table;
}

}  // namespace swarm::kernels::cpu
