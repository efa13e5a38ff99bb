// The portable kernel table: plain C++ (the compiler may auto-vectorize it for the baseline ISA),
// used on processors without AVX2 and as the common ground the SIMD tables are tested beside.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "base/half.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/kernels_isa.h"
#include "kernels/cpu/matmul_lowbit.h"
#include "kernels/quant_reference.h"

namespace swarm::kernels::cpu {
namespace {

// ---- float weight types: 8 lanes, lane i sums elements k with k % 8 == i --------------------

template <typename Load>
float DotLanes(const Load& load, const float* x, int64_t n) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) acc[l] += load(i + l) * x[i + l];
  }
  for (int l = 0; i < n; ++i, ++l) acc[l] += load(i) * x[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

template <GgmlType kType>
void MatMulFloat(const MatMulArgs& a, int64_t r0, int64_t r1) {
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    const auto* x = reinterpret_cast<const float*>(a.x + t * a.x_stride);
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* row = a.w + r * a.row_bytes;
      float v;
      if constexpr (kType == GgmlType::kF32) {
        const auto* w = reinterpret_cast<const float*>(row);
        v = DotLanes([w](int64_t i) { return w[i]; }, x, a.n_in);
      } else if constexpr (kType == GgmlType::kF16) {
        const auto* w = reinterpret_cast<const uint16_t*>(row);
        v = DotLanes([w](int64_t i) { return HalfToFloat(w[i]); }, x, a.n_in);
      } else {
        const auto* w = reinterpret_cast<const uint16_t*>(row);
        v = DotLanes([w](int64_t i) { return Bf16ToFloat(w[i]); }, x, a.n_in);
      }
      a.y[t * a.n_out + r] = v;
    }
  }
}

// ---- quantized weight types against X8 activations ---------------------------------------------

struct X8View {
  const int8_t* qs;
  const float* d;
  const int16_t* bsum16;
  const int32_t* bsum32;
  const float* fsum32;
};

X8View ViewX8(const uint8_t* base, const X8Layout& l) {
  return {reinterpret_cast<const int8_t*>(base), reinterpret_cast<const float*>(base + l.d_offset),
          reinterpret_cast<const int16_t*>(base + l.bsum16_offset),
          reinterpret_cast<const int32_t*>(base + l.bsum32_offset),
          reinterpret_cast<const float*>(base + l.fsum32_offset)};
}

// Q8_0 / Q4_0: per 32-block b, an integer dot times both scales.
template <GgmlType kType>
float DotQ32(const uint8_t* row, const X8View& x, int64_t n) {
  const int64_t n_blocks = n / 32;
  float sum = 0.0f;
  for (int64_t b = 0; b < n_blocks; ++b) {
    int32_t s = 0;
    float dw;
    const int8_t* xq = x.qs + 32 * b;
    if constexpr (kType == GgmlType::kQ8_0) {
      const auto* blk = reinterpret_cast<const BlockQ8_0*>(row) + b;
      for (int i = 0; i < 32; ++i) s += blk->qs[i] * xq[i];
      dw = HalfToFloat(blk->d);
    } else {
      const auto* blk = reinterpret_cast<const BlockQ4_0*>(row) + b;
      for (int i = 0; i < 16; ++i) {
        s += (blk->qs[i] & 0x0f) * xq[i] + (blk->qs[i] >> 4) * xq[i + 16];
      }
      s -= 8 * x.bsum32[b];
      dw = HalfToFloat(blk->d);
    }
    sum += static_cast<float>(s) * (dw * x.d[b]);
  }
  return sum;
}

void GetScaleMinK4(int j, const uint8_t* q, int* scale, int* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    *min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

float DotQ4K(const uint8_t* row, const X8View& x, int64_t n) {
  float sum = 0.0f;
  for (int64_t s = 0; s < n / kQK_K; ++s) {
    const auto* blk = reinterpret_cast<const BlockQ4_K*>(row) + s;
    const int8_t* xq = x.qs + kQK_K * s;
    int32_t isum = 0;
    float mins = 0.0f;
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      GetScaleMinK4(j, blk->scales, &sc, &m);
      const uint8_t* q = blk->qs + 32 * (j / 2);
      int32_t sub = 0;
      for (int i = 0; i < 32; ++i) {
        const int v = (j % 2 == 0) ? (q[i] & 0x0f) : (q[i] >> 4);
        sub += v * xq[32 * j + i];
      }
      isum += sc * sub;
      mins += static_cast<float>(m) * x.fsum32[8 * s + j];
    }
    const float d = HalfToFloat(blk->d);
    const float dmin = HalfToFloat(blk->dmin);
    sum += static_cast<float>(isum) * (d * x.d[s]) - mins * dmin;
  }
  return sum;
}

float DotQ6K(const uint8_t* row, const X8View& x, int64_t n) {
  float sum = 0.0f;
  for (int64_t s = 0; s < n / kQK_K; ++s) {
    const auto* blk = reinterpret_cast<const BlockQ6_K*>(row) + s;
    const int8_t* xq = x.qs + kQK_K * s;
    int32_t isum = 0;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = blk->ql + 64 * h;
      const uint8_t* qh = blk->qh + 32 * h;
      for (int l = 0; l < 32; ++l) {
        const int e = 128 * h + l;
        const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        isum += blk->scales[e / 16] * q1 * xq[e];
        isum += blk->scales[(e + 32) / 16] * q2 * xq[e + 32];
        isum += blk->scales[(e + 64) / 16] * q3 * xq[e + 64];
        isum += blk->scales[(e + 96) / 16] * q4 * xq[e + 96];
      }
    }
    sum += static_cast<float>(isum) * (HalfToFloat(blk->d) * x.d[s]);
  }
  return sum;
}

template <GgmlType kType>
void MatMulQuant(const MatMulArgs& a, int64_t r0, int64_t r1) {
  const X8Layout& layout = a.x8;
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    const X8View x = ViewX8(a.x + t * a.x_stride, layout);
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* row = a.w + r * a.row_bytes;
      float v;
      if constexpr (kType == GgmlType::kQ4_K) {
        v = DotQ4K(row, x, a.n_in);
      } else if constexpr (kType == GgmlType::kQ6_K) {
        v = DotQ6K(row, x, a.n_in);
      } else {
        v = DotQ32<kType>(row, x, a.n_in);
      }
      a.y[t * a.n_out + r] = v;
    }
  }
}

void QuantizeX8(const float* x, const X8Layout& l, uint8_t* dst) {
  const int64_t k = l.k;
  auto* qs = reinterpret_cast<int8_t*>(dst);
  auto* d = reinterpret_cast<float*>(dst + l.d_offset);
  auto* bsum16 = reinterpret_cast<int16_t*>(dst + l.bsum16_offset);
  auto* bsum32 = reinterpret_cast<int32_t*>(dst + l.bsum32_offset);
  auto* fsum32 = reinterpret_cast<float*>(dst + l.fsum32_offset);
  for (int64_t g = 0; g < l.groups; ++g) {
    const int64_t begin = l.group * g, end = std::min<int64_t>(k, begin + l.group);
    float amax = 0.0f;
    for (int64_t i = begin; i < end; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    d[g] = amax / 127.0f;
    for (int64_t i = begin; i < end; ++i) {
      // nearbyint: round half to even, as the SIMD conversions do.
      qs[i] = static_cast<int8_t>(std::clamp(std::nearbyint(x[i] * id), -127.0f, 127.0f));
    }
  }
  for (int64_t i = k; i < l.kp; ++i) qs[i] = 0;
  for (int64_t j = 0; j < l.kp / 16; ++j) {
    int s = 0;
    for (int i = 0; i < 16; ++i) s += qs[16 * j + i];
    bsum16[j] = static_cast<int16_t>(s);
  }
  for (int64_t j = 0; j < l.kp / 32; ++j) {
    bsum32[j] = bsum16[2 * j] + bsum16[2 * j + 1];
    fsum32[j] = d[32 * j / l.group] * static_cast<float>(bsum32[j]);
  }
  FillX8Lanes(l, dst);
}

// ---- element-wise and attention ----------------------------------------------------------------

void RmsNorm(const float* x, const float* w, int64_t n, float eps, float* y) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

void SwiGlu(const float* g, const float* u, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void Add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void KvToFloat(GgmlType type, const void* src, float* dst, int64_t n) {
  DequantizeRow(type, src, dst, n);
}

// Scores of all visible positions, the softmax over the row, then P·V (kernels.h).
void Attention(const AttentionArgs& a, int64_t begin, int64_t end, float* scratch) {
  const int64_t hd = a.shape.head_dim;
  const int64_t group = a.shape.n_head / a.shape.n_head_kv;
  const int64_t q_stride = hd * a.shape.n_head;
  const bool round_p = a.shape.cache.v == GgmlType::kF16;
  const AttentionParts parts = AttentionScratchParts(a, scratch);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t t = task / a.shape.n_head_kv;
    const int64_t kvh = task % a.shape.n_head_kv;
    const int64_t n_visible = int64_t{a.positions[t]} + 1;
    const int64_t chunks = AttentionScoreChunks(n_visible);
    const float* q0 =
        RoundedQueries(a.shape.cache.k, a.q + t * q_stride + kvh * group * hd, group, hd, parts.q);
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t c0 = c * kAttentionChunk, len = std::min(kAttentionChunk, n_visible - c0);
      const KvRows k =
          KvChunkRows(a.shape.cache.k, a.k_cache, a.shape, kvh, c0, len, parts.k, KvToFloat);
      for (int64_t g = 0; g < group; ++g) {
        const float* qg = q0 + g * hd;
        float* s = ChunkScores(parts.scores, group, c, g);
        for (int64_t p = 0; p < len; ++p) {
          const float* kp = k.data + p * k.stride;
          float dot = 0.0f;
          for (int64_t i = 0; i < hd; ++i) dot += qg[i] * kp[i];
          s[p] = dot * a.scale;
        }
      }
    }
    for (int64_t g = 0; g < group; ++g) {
      float max_score = -std::numeric_limits<float>::infinity();
      for (int64_t p = 0; p < n_visible; ++p) {
        max_score = std::max(max_score, ChunkScores(parts.scores, group, p / kAttentionChunk,
                                                    g)[p % kAttentionChunk]);
      }
      double sum = 0.0;
      for (int64_t p = 0; p < n_visible; ++p) {
        float& s = ChunkScores(parts.scores, group, p / kAttentionChunk, g)[p % kAttentionChunk];
        s = std::exp(s - max_score);
        sum += s;
      }
      const auto inv = static_cast<float>(1.0 / sum);
      for (int64_t p = 0; p < n_visible; ++p) {
        float& s = ChunkScores(parts.scores, group, p / kAttentionChunk, g)[p % kAttentionChunk];
        s *= inv;
        if (round_p) s = HalfToFloat(FloatToHalf(s));
      }
    }
    std::fill(parts.acc, parts.acc + group * hd, 0.0f);
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t c0 = c * kAttentionChunk, len = std::min(kAttentionChunk, n_visible - c0);
      const KvRows v =
          KvChunkRows(a.shape.cache.v, a.v_cache, a.shape, kvh, c0, len, parts.v, KvToFloat);
      for (int64_t g = 0; g < group; ++g) {
        const float* s = ChunkScores(parts.scores, group, c, g);
        float* ag = parts.acc + g * hd;
        for (int64_t p = 0; p < len; ++p) {
          const float* vp = v.data + p * v.stride;
          for (int64_t i = 0; i < hd; ++i) ag[i] += s[p] * vp[i];
        }
      }
    }
    std::copy(parts.acc, parts.acc + group * hd, a.out + t * q_stride + kvh * group * hd);
  }
}

}  // namespace

void FillX8Lanes(const X8Layout& l, uint8_t* dst) {
  const auto* qs = dst;
  const auto* d = reinterpret_cast<const float*>(dst + l.d_offset);
  const auto* bsum32 = reinterpret_cast<const int32_t*>(dst + l.bsum32_offset);
  const int32_t offset = l.lane_order != 0 ? X8LaneOffset(l.lane_order) : 0;
  for (int64_t g = 0; g < l.lane_groups; ++g) {
    uint8_t* out = dst + l.lanes_offset + g * kX8LaneGroupBytes;
    auto* dx = reinterpret_cast<float*>(out + 8 * 64);
    auto* corr = reinterpret_cast<int32_t*>(out + 9 * 64);
    for (int lane = 0; lane < 16; ++lane) {
      const int64_t b = 16 * g + BlockOfLane(l.lane_order, lane);
      for (int c = 0; c < 8; ++c) std::memcpy(out + 64 * c + 4 * lane, qs + 32 * b + 4 * c, 4);
      dx[lane] = d[b];
      corr[lane] = -offset * bsum32[b];
    }
  }
}

KernelTable GenericKernelTable() {
  KernelTable t;
  t.isa = Isa::kGeneric;
  t.matmul[MatMulSlot(GgmlType::kF32)] = MatMulFloat<GgmlType::kF32>;
  t.matmul[MatMulSlot(GgmlType::kF16)] = MatMulFloat<GgmlType::kF16>;
  t.matmul[MatMulSlot(GgmlType::kBF16)] = MatMulFloat<GgmlType::kBF16>;
  t.matmul[MatMulSlot(GgmlType::kQ8_0)] = MatMulQuant<GgmlType::kQ8_0>;
  t.matmul[MatMulSlot(GgmlType::kQ4_0)] = MatMulQuant<GgmlType::kQ4_0>;
  t.matmul[MatMulSlot(GgmlType::kQ4_K)] = MatMulQuant<GgmlType::kQ4_K>;
  t.matmul[MatMulSlot(GgmlType::kQ6_K)] = MatMulQuant<GgmlType::kQ6_K>;
  for (GgmlType lt : {GgmlType::kQ2_K, GgmlType::kQ3_K, GgmlType::kIQ4_XS}) {
    t.matmul[MatMulSlot(lt)] = LowBitMatMulGeneric(lt);
  }
  t.matmul[MatMulSlot(GgmlType::kQ4_1)] = generic::MatMulQ4_1;
  t.matmul[MatMulSlot(GgmlType::kQ5_0)] = generic::MatMulQ5_0;
  t.matmul[MatMulSlot(GgmlType::kQ5_K)] = generic::MatMulQ5_K;
  t.matmul[MatMulSlot(GgmlType::kQ5_1)] = generic::MatMulQ5_1;
  t.matmul[MatMulSlot(GgmlType::kIQ4_NL)] = generic::MatMulIQ4_NL;
  t.quantize_x8 = QuantizeX8;
  t.rms_norm = RmsNorm;
  t.swiglu = SwiGlu;
  t.add = Add;
  t.attention = Attention;
  t.kv_to_float = KvToFloat;
  return t;
}

int64_t AttentionScratchFloats(const AttentionShape& shape, int64_t score_chunks) {
  const int64_t group = shape.n_head / shape.n_head_kv;
  // AttentionScratchParts: the score table, acc and rounded queries [group, head_dim] each, a
  // chunk of converted K and V rows [chunk, head_dim] each; plus room to align to 64 bytes.
  return score_chunks * group * kAttentionChunk + 2 * group * shape.head_dim +
         2 * kAttentionChunk * shape.head_dim + 64;
}

AttentionParts AttentionScratchParts(const AttentionArgs& args, float* scratch) {
  const int64_t group = args.shape.n_head / args.shape.n_head_kv;
  const int64_t hd = args.shape.head_dim;
  AttentionParts parts;
  parts.scores = scratch;
  parts.acc = parts.scores + args.score_chunks * group * kAttentionChunk;
  parts.q = parts.acc + group * hd;
  parts.k = parts.q + group * hd;
  parts.v = parts.k + kAttentionChunk * hd;
  return parts;
}

const float* RoundedQueries(GgmlType k_type, const float* q0, int64_t group, int64_t head_dim,
                            float* buf) {
  if (k_type == GgmlType::kF32) return q0;
  if (k_type == GgmlType::kF16) {
    for (int64_t i = 0; i < group * head_dim; ++i) buf[i] = HalfToFloat(FloatToHalf(q0[i]));
    return buf;
  }
  // q8_0: each head quantized in blocks of 32, as ggml quantizes mul_mat's second operand.
  BlockQ8_0 blocks[8];
  for (int64_t g = 0; g < group; ++g) {
    for (int64_t i = 0; i < head_dim; i += 8 * kQK8_0) {
      const int64_t n = std::min<int64_t>(8 * kQK8_0, head_dim - i);
      QuantizeRow(GgmlType::kQ8_0, q0 + g * head_dim + i, blocks, n);
      DequantizeRow(GgmlType::kQ8_0, blocks, buf + g * head_dim + i, n);
    }
  }
  return buf;
}

KvRows KvChunkRows(GgmlType type, const void* cache, const AttentionShape& shape, int64_t kvh,
                   int64_t c0, int64_t len, float* buf, KvToFloatFn to_float) {
  const int64_t hd = shape.head_dim;
  const int64_t kv_dim = hd * shape.n_head_kv;
  if (type == GgmlType::kF32) {
    return {static_cast<const float*>(cache) + c0 * kv_dim + kvh * hd, kv_dim};
  }
  const size_t row = KvRowBytes(type, kv_dim);
  const size_t head = KvRowBytes(type, kvh * hd);
  const auto* base = static_cast<const uint8_t*>(cache) + c0 * row + head;
  for (int64_t p = 0; p < len; ++p) to_float(type, base + p * row, buf + p * hd, hd);
  return {buf, hd};
}

const KernelTable& GenericKernels() {
  static const KernelTable table = GenericKernelTable();
  return table;
}

#if defined(SWARM_CPU_NO_X86_KERNELS)
const KernelTable& Avx2Kernels() { return GenericKernels(); }
const KernelTable& Avx512Kernels() { return GenericKernels(); }
#endif

const KernelTable& KernelsFor(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return Avx512Kernels();
    case Isa::kAvx2:
      return Avx2Kernels();
    case Isa::kGeneric:
      break;
  }
  return GenericKernels();
}

}  // namespace swarm::kernels::cpu
