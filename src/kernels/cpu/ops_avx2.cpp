// AVX2 element-wise kernels, activation quantization, attention, and the AVX2 kernel table.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/kernels_isa.h"
#include "kernels/cpu/matmul_lowbit.h"
#include "kernels/cpu/simd_avx2.h"

namespace swarm::kernels::cpu::avx2 {
namespace {

// Same arithmetic as the generic QuantizeX8 (x * (127 / amax), rounded half to even), so both
// produce identical bytes.
void QuantizeX8(const float* x, const X8Layout& l, uint8_t* dst) {
  const int64_t k = l.k;
  auto* qs = reinterpret_cast<int8_t*>(dst);
  auto* d = reinterpret_cast<float*>(dst + l.d_offset);
  auto* bsum16 = reinterpret_cast<int16_t*>(dst + l.bsum16_offset);
  auto* bsum32 = reinterpret_cast<int32_t*>(dst + l.bsum32_offset);
  auto* fsum32 = reinterpret_cast<float*>(dst + l.fsum32_offset);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  // packs interleaves 128-bit lanes; this puts the 32 bytes back in order.
  const __m256i unshuffle = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t g = 0; g < l.groups; ++g) {
    const int64_t begin = l.group * g, end = std::min<int64_t>(k, begin + l.group);  // x32
    __m256 amax = _mm256_setzero_ps();
    for (int64_t i = begin; i < end; i += 8) {
      amax = _mm256_max_ps(amax, _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask));
    }
    const float m = Hmax(amax);
    const __m256 id = _mm256_set1_ps(m > 0.0f ? 127.0f / m : 0.0f);
    d[g] = m / 127.0f;
    for (int64_t i = begin; i < end; i += 32) {
      __m256i q[4];
      for (int v = 0; v < 4; ++v) {
        q[v] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * v), id));
      }
      bsum16[i / 16] = static_cast<int16_t>(HsumI32(_mm256_add_epi32(q[0], q[1])));
      bsum16[i / 16 + 1] = static_cast<int16_t>(HsumI32(_mm256_add_epi32(q[2], q[3])));
      const __m256i b =
          _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + i),
                          _mm256_permutevar8x32_epi32(b, unshuffle));
    }
  }
  for (int64_t i = k; i < l.kp; ++i) qs[i] = 0;
  for (int64_t j = k / 16; j < l.kp / 16; ++j) bsum16[j] = 0;
  for (int64_t j = 0; j < l.kp / 32; ++j) {
    bsum32[j] = bsum16[2 * j] + bsum16[2 * j + 1];
    fsum32[j] = d[32 * j / l.group] * static_cast<float>(bsum32[j]);
  }
  FillX8Lanes(l, dst);
}

void RmsNorm(const float* x, const float* w, int64_t n, float eps, float* y) {
  __m256d acc = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
    acc = _mm256_fmadd_pd(v, v, acc);
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, acc);
  double sum = (lanes[0] + lanes[2]) + (lanes[1] + lanes[3]);
  for (; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float s = 1.0f / std::sqrt(mean + eps);
  const __m256 scale = _mm256_set1_ps(s);
  for (i = 0; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(
        y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), scale), _mm256_loadu_ps(w + i)));
  }
  for (; i < n; ++i) y[i] = (x[i] * s) * w[i];
}

void SwiGlu(const float* g, const float* u, int64_t n, float* y) {
  const __m256 one = _mm256_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i m = TailMask(n - i);
    const __m256 gv = _mm256_maskload_ps(g + i, m);
    const __m256 silu =
        _mm256_div_ps(gv, _mm256_add_ps(one, Exp(_mm256_sub_ps(_mm256_setzero_ps(), gv))));
    _mm256_maskstore_ps(y + i, m, _mm256_mul_ps(silu, _mm256_maskload_ps(u + i, m)));
  }
}

void Add(float* y, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
  }
  for (; i < n; ++i) y[i] += x[i];
}

float Dot(const float* q, const float* k, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i m = TailMask(n - i);
    acc = _mm256_fmadd_ps(_mm256_maskload_ps(q + i, m), _mm256_maskload_ps(k + i, m), acc);
  }
  return Hsum(acc);
}

// n f16 / q8_0 cache values as floats (F16C; q8_0 blocks widened 8 quants at a time).
void KvToFloat(GgmlType type, const void* src, float* dst, int64_t n) {
  if (type == GgmlType::kF16) {
    const auto* h = static_cast<const uint16_t*>(src);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, LoadF16(h + i));
    for (; i < n; ++i) dst[i] = HalfToFloat1(h[i]);
    return;
  }
  const auto* blocks = static_cast<const BlockQ8_0*>(src);
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    const __m256 d = _mm256_set1_ps(HalfToFloat1(blocks[b].d));
    for (int j = 0; j < kQK8_0; j += 8) {
      const __m256i q =
          _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blocks[b].qs + j)));
      _mm256_storeu_ps(dst + b * kQK8_0 + j, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
    }
  }
}

// Turns head g's scores (n_visible of them in the table) into probabilities as ggml's soft_max:
// exp(s - max), the sum in double of each vector's sum, times (float)(1 / sum); rounded to f16
// (nearest even, F16C) when round_p.
void Probabilities(float* table, int64_t group, int64_t g, int64_t n_visible, bool round_p) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const int64_t chunks = AttentionScoreChunks(n_visible);
  __m256 mv = _mm256_set1_ps(neg_inf);
  for (int64_t c = 0; c < chunks; ++c) {
    const float* s = ChunkScores(table, group, c, g);
    const int64_t len = std::min(kAttentionChunk, n_visible - c * kAttentionChunk);
    for (int64_t p = 0; p < len; p += 8) {
      const __m256i m = TailMask(len - p);
      mv = _mm256_max_ps(mv, _mm256_blendv_ps(_mm256_set1_ps(neg_inf), _mm256_maskload_ps(s + p, m),
                                              _mm256_castsi256_ps(m)));
    }
  }
  const __m256 max_score = _mm256_set1_ps(Hmax(mv));
  double sum = 0.0;
  for (int64_t c = 0; c < chunks; ++c) {
    float* s = ChunkScores(table, group, c, g);
    const int64_t len = std::min(kAttentionChunk, n_visible - c * kAttentionChunk);
    for (int64_t p = 0; p < len; p += 8) {
      const __m256i m = TailMask(len - p);
      const __m256 e = _mm256_and_ps(Exp(_mm256_sub_ps(_mm256_maskload_ps(s + p, m), max_score)),
                                     _mm256_castsi256_ps(m));
      _mm256_maskstore_ps(s + p, m, e);
      sum += static_cast<double>(Hsum(e));
    }
  }
  const __m256 inv = _mm256_set1_ps(static_cast<float>(1.0 / sum));
  for (int64_t c = 0; c < chunks; ++c) {
    float* s = ChunkScores(table, group, c, g);
    const int64_t len = std::min(kAttentionChunk, n_visible - c * kAttentionChunk);
    for (int64_t p = 0; p < len; p += 8) {
      const __m256i m = TailMask(len - p);
      __m256 x = _mm256_mul_ps(_mm256_maskload_ps(s + p, m), inv);
      if (round_p) x = _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
      _mm256_maskstore_ps(s + p, m, x);
    }
  }
}

// As the generic attention (kernels.h): all scores, the softmax over the row, then P·V.
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
      for (int64_t p = 0; p < len; ++p) {
        for (int64_t g = 0; g < group; ++g) {
          ChunkScores(parts.scores, group, c, g)[p] =
              Dot(q0 + g * hd, k_rows.data + p * k_rows.stride, hd) * a.scale;
        }
      }
    }
    for (int64_t g = 0; g < group; ++g) Probabilities(parts.scores, group, g, n_visible, round_p);
    std::fill(acc, acc + group * hd, 0.0f);
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t c0 = c * kAttentionChunk, len = std::min(kAttentionChunk, n_visible - c0);
      const KvRows v_rows =
          KvChunkRows(a.shape.cache.v, a.v_cache, a.shape, kvh, c0, len, parts.v, KvToFloat);
      const float* v0 = v_rows.data;
      for (int64_t i = 0; i < hd; i += 8) {
        const __m256i m = TailMask(hd - i);
        for (int64_t g = 0; g < group; ++g) {
          const float* s = ChunkScores(parts.scores, group, c, g);
          __m256 av = _mm256_maskload_ps(acc + g * hd + i, m);
          for (int64_t p = 0; p < len; ++p) {
            av = _mm256_fmadd_ps(_mm256_set1_ps(s[p]),
                                 _mm256_maskload_ps(v0 + p * v_rows.stride + i, m), av);
          }
          _mm256_maskstore_ps(acc + g * hd + i, m, av);
        }
      }
    }
    std::copy(acc, acc + group * hd, a.out + t * q_stride + kvh * group * hd);
  }
}

KernelTable MakeTable() {
  KernelTable t = GenericKernelTable();
  t.isa = Isa::kAvx2;
  t.matmul[MatMulSlot(GgmlType::kF32)] = MatMulF32;
  t.matmul[MatMulSlot(GgmlType::kF16)] = MatMulF16;
  t.matmul[MatMulSlot(GgmlType::kBF16)] = MatMulBF16;
  t.matmul[MatMulSlot(GgmlType::kQ8_0)] = MatMulQ8_0;
  t.matmul[MatMulSlot(GgmlType::kQ4_0)] = MatMulQ4_0;
  t.matmul[MatMulSlot(GgmlType::kQ4_K)] = MatMulQ4_K;
  t.matmul[MatMulSlot(GgmlType::kQ6_K)] = MatMulQ6_K;
  for (GgmlType lt : {GgmlType::kQ2_K, GgmlType::kQ3_K, GgmlType::kIQ4_XS}) {
    t.matmul[MatMulSlot(lt)] = LowBitMatMulAvx2(lt);
  }
  t.matmul[MatMulSlot(GgmlType::kQ4_1)] = MatMulQ4_1;
  t.matmul[MatMulSlot(GgmlType::kQ5_0)] = MatMulQ5_0;
  t.matmul[MatMulSlot(GgmlType::kQ5_K)] = MatMulQ5_K;
  t.matmul[MatMulSlot(GgmlType::kQ5_1)] = MatMulQ5_1;
  t.matmul[MatMulSlot(GgmlType::kIQ4_NL)] = MatMulIQ4_NL;
  t.matmul_packed[MatMulSlot(GgmlType::kQ4_0)] = MatMulQ4_0Lanes;
  t.matmul_packed[MatMulSlot(GgmlType::kQ8_0)] = MatMulQ8_0Lanes;
  t.matmul_packed[MatMulSlot(GgmlType::kQ4_K)] = MatMulQ4_KPanels;
  t.matmul_packed[MatMulSlot(GgmlType::kQ6_K)] = MatMulQ6_KPanels;
  t.matmul_packed[MatMulSlot(GgmlType::kQ4_1)] = MatMulQ4_1Lanes;
  t.matmul_packed[MatMulSlot(GgmlType::kQ5_1)] = MatMulQ5_1Lanes;
  t.matmul_packed[MatMulSlot(GgmlType::kQ5_0)] = MatMulQ5_0Lanes;
  t.matmul_packed[MatMulSlot(GgmlType::kIQ4_NL)] = MatMulIQ4_NLLanes;
  t.matmul_packed[MatMulSlot(GgmlType::kQ5_K)] = MatMulQ5_KPanels;
  t.matmul_packed[MatMulSlot(GgmlType::kQ2_K)] = MatMulQ2_KPanels;
  t.matmul_packed[MatMulSlot(GgmlType::kQ3_K)] = MatMulQ3_KPanels;
  t.matmul_packed[MatMulSlot(GgmlType::kIQ4_XS)] = MatMulIQ4_XSPanels;
  t.quantize_x8 = QuantizeX8;
  t.rms_norm = RmsNorm;
  t.swiglu = SwiGlu;
  t.add = Add;
  t.attention = Attention;
  t.kv_to_float = KvToFloat;
  return t;
}

}  // namespace
}  // namespace swarm::kernels::cpu::avx2

namespace swarm::kernels::cpu {

const KernelTable& Avx2Kernels() {
  static const KernelTable table = avx2::MakeTable();
  return table;
}

}  // namespace swarm::kernels::cpu
