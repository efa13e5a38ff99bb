// Runs the conformance harness on the reference backend itself (it must pass trivially, which keeps
// the harness compiling and honest), and checks that the harness does catch broken backends.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend_conformance.h"
#include "kernels/cpu_reference_backend.h"
#include "kernels/quant_reference.h"

namespace swarm::kernels::testing {
namespace {

// Computes like an optimized backend would (llama.cpp's CPU arithmetic): activations quantized to
// VecDotType and integer dot products (f16/bf16 for those weights), float accumulators, float RoPE
// angles built by repeated multiplication, expf. It must pass the default bounds: they are meant
// for such backends.
class GgmlStyleBackend : public CpuReferenceBackend {
 public:
  void MatMul(const Weight& w, const float* x, int64_t n_tokens, float* y) override {
    const GgmlType act_type = VecDotType(w.type);
    const size_t row_bytes = RowBytes(w.type, w.n_in).value();
    std::vector<uint8_t> xq(RowBytes(act_type, w.n_in).value());
    for (int64_t t = 0; t < n_tokens; ++t) {
      QuantizeRow(act_type, x + t * w.n_in, xq.data(), w.n_in);
      for (int64_t r = 0; r < w.n_out; ++r) {
        const auto* row = static_cast<const uint8_t*>(w.data) + r * row_bytes;
        if (w.type == GgmlType::kF32 || w.type == GgmlType::kF16 || w.type == GgmlType::kBF16) {
          // As ggml: f16 and bf16 weights meet activations rounded to their own type.
          std::vector<float> wr(static_cast<size_t>(w.n_in));
          std::vector<float> xr(static_cast<size_t>(w.n_in));
          std::vector<uint8_t> xt(row_bytes);
          DequantizeRow(w.type, row, wr.data(), w.n_in);
          QuantizeRow(w.type, x + t * w.n_in, xt.data(), w.n_in);
          DequantizeRow(w.type, xt.data(), xr.data(), w.n_in);
          float sum = 0;
          for (int64_t i = 0; i < w.n_in; ++i) sum += wr[i] * xr[i];
          y[t * w.n_out + r] = sum;
        } else {
          y[t * w.n_out + r] = VecDotQuantizedReference(w.type, row, xq.data(), w.n_in);
        }
      }
    }
  }
  void RmsNorm(const float* x, const float* weight, int64_t n, int64_t n_tokens, float eps,
               float* y) override {
    for (int64_t t = 0; t < n_tokens; ++t) {
      float sum = 0;
      for (int64_t i = 0; i < n; ++i) sum += x[t * n + i] * x[t * n + i];
      const float scale = 1.0f / std::sqrt(sum / n + eps);
      for (int64_t i = 0; i < n; ++i) y[t * n + i] = x[t * n + i] * scale * weight[i];
    }
  }
  void Rope(float* x, int64_t head_dim, int64_t n_heads, int64_t n_tokens, const int32_t* positions,
            const RopeParams& rope) override {
    const float theta_scale = std::pow(rope.freq_base, -2.0f / head_dim);
    // YaRN's ramp between the pair indices that turn beta_fast and beta_slow times over the
    // original context, in float as ggml computes it.
    const bool yarn = rope.ext_factor != 0.0f;
    float low = 0, high = 0;
    if (yarn) {
      auto corr_dim = [&](float n_rot) {
        return head_dim *
               std::log(static_cast<float>(rope.n_ctx_orig) / (n_rot * 2 * 3.14159265f)) /
               (2 * std::log(rope.freq_base));
      };
      low = std::max(0.0f, std::floor(corr_dim(rope.beta_fast)));
      high = std::min(static_cast<float>(head_dim - 1), std::ceil(corr_dim(rope.beta_slow)));
    }
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t h = 0; h < n_heads; ++h) {
        float* v = x + (t * n_heads + h) * head_dim;
        float theta = static_cast<float>(positions[t]);
        for (int64_t i = 0; i < head_dim / 2; ++i, theta *= theta_scale) {
          const float ff = rope.freq_factors.empty() ? 1.0f : rope.freq_factors[i];
          const float extrap = theta / ff, interp = rope.freq_scale * extrap;
          float angle = interp, mscale = rope.attn_factor;
          if (yarn) {
            const float y = (static_cast<float>(i) - low) / std::max(0.001f, high - low);
            const float mix = (1 - std::min(1.0f, std::max(0.0f, y))) * rope.ext_factor;
            angle = interp * (1 - mix) + extrap * mix;
            mscale *= 1.0f + 0.1f * std::log(1.0f / rope.freq_scale);
          }
          const int64_t a = rope.style == RopeStyle::kNeox ? i : 2 * i;
          const int64_t b = rope.style == RopeStyle::kNeox ? i + head_dim / 2 : 2 * i + 1;
          const float c = std::cos(angle) * mscale, s = std::sin(angle) * mscale;
          const float x0 = v[a], x1 = v[b];
          v[a] = x0 * c - x1 * s;
          v[b] = x0 * s + x1 * c;
        }
      }
    }
  }
  void SwiGlu(const float* gate, const float* up, int64_t n, float* y) override {
    for (int64_t i = 0; i < n; ++i) y[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
  }
  void Attention(const float* q, const void* k_cache_bytes, const void* v_cache_bytes,
                 const AttentionShape& shape, int64_t n_tokens, const int32_t* positions,
                 float* out) override {
    if (shape.cache != KvTypes{}) {
      // Rounded caches: the reference's arithmetic (this backend's point is float accumulation).
      CpuReferenceBackend::Attention(q, k_cache_bytes, v_cache_bytes, shape, n_tokens, positions,
                                     out);
      return;
    }
    const auto* k_cache = static_cast<const float*>(k_cache_bytes);
    const auto* v_cache = static_cast<const float*>(v_cache_bytes);
    const int64_t d = shape.head_dim;
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t h = 0; h < shape.n_head; ++h) {
        const int64_t kvh = h / (shape.n_head / shape.n_head_kv);
        const float* qh = q + (t * shape.n_head + h) * d;
        // Online softmax, as a flash-attention kernel does.
        float m = -INFINITY, l = 0;
        std::vector<float> acc(static_cast<size_t>(d), 0.0f);
        for (int64_t p = 0; p <= positions[t]; ++p) {
          const float* k = k_cache + (p * shape.n_head_kv + kvh) * d;
          const float* v = v_cache + (p * shape.n_head_kv + kvh) * d;
          float s = 0;
          for (int64_t i = 0; i < d; ++i) s += qh[i] * k[i];
          s *= scale;
          const float m_new = std::max(m, s);
          const float correction = std::exp(m - m_new), w = std::exp(s - m_new);
          l = l * correction + w;
          for (int64_t i = 0; i < d; ++i) acc[i] = acc[i] * correction + w * v[i];
          m = m_new;
        }
        for (int64_t i = 0; i < d; ++i) out[(t * shape.n_head + h) * d + i] = acc[i] / l;
      }
    }
  }
};

ConformanceOptions LargeShapes() {
  ConformanceOptions options;
  options.large_shapes = true;
  return options;
}

INSTANTIATE_TEST_SUITE_P(Reference, BackendConformanceTest,
                         ::testing::Values(BackendUnderTest{"reference", MakeCpuReferenceBackend},
                                           BackendUnderTest{
                                               "ggml_style",
                                               [] { return std::make_unique<GgmlStyleBackend>(); },
                                               LargeShapes()}),
                         BackendUnderTestName);

TEST(NmseTest, Definition) {
  const float expected[] = {1.0f, 2.0f, -2.0f};
  const float actual[] = {1.0f, 2.5f, -2.0f};
  EXPECT_DOUBLE_EQ(Nmse(actual, expected, 3), 0.25 / 9.0);
  EXPECT_EQ(Nmse(expected, expected, 3), 0.0);
  const float zeros[] = {0.0f, 0.0f};
  const float small[] = {0.0f, 0.5f};
  EXPECT_DOUBLE_EQ(Nmse(small, zeros, 2), 0.25);  // absolute when the reference is zero
  const float nan[] = {1.0f, NAN, -2.0f};
  EXPECT_TRUE(std::isinf(Nmse(nan, expected, 3)));
}

// A reference backend with one deliberate bug per operation, switched on by `bug`.
class BrokenBackend : public CpuReferenceBackend {
 public:
  explicit BrokenBackend(Op bug) : bug_(bug) {}

  void MatMul(const Weight& w, const float* x, int64_t n_tokens, float* y) override {
    CpuReferenceBackend::MatMul(w, x, n_tokens, y);
    // Wrong on quantized weights only: the last output of each token off by 10%.
    if (bug_ == Op::kMatMul && w.type == GgmlType::kQ4_K) {
      for (int64_t t = 0; t < n_tokens; ++t) y[t * w.n_out + w.n_out - 1] *= 1.1f;
    }
  }
  void AddBias(float* y, const float* bias, int64_t n_out, int64_t n_tokens) override {
    // Forgets the bias of all tokens but the first.
    CpuReferenceBackend::AddBias(y, bias, n_out, bug_ == Op::kAddBias ? 1 : n_tokens);
  }
  void GetRows(const Weight& table, const int32_t* ids, int64_t n, float* out) override {
    CpuReferenceBackend::GetRows(table, ids, n, out);
    if (bug_ == Op::kGetRows && table.type == GgmlType::kQ6_K) out[0] = -out[0];
  }
  void RmsNorm(const float* x, const float* weight, int64_t n, int64_t n_tokens, float eps,
               float* y) override {
    // Ignores eps, which matters for tiny inputs only.
    CpuReferenceBackend::RmsNorm(x, weight, n, n_tokens, bug_ == Op::kRmsNorm ? 0.0f : eps, y);
  }
  void Rope(float* x, int64_t head_dim, int64_t n_heads, int64_t n_tokens, const int32_t* positions,
            const RopeParams& rope) override {
    // Rotates with the other pairing.
    RopeParams p = rope;
    if (bug_ == Op::kRope) {
      p.style = p.style == RopeStyle::kNeox ? RopeStyle::kAdjacentPairs : RopeStyle::kNeox;
    }
    CpuReferenceBackend::Rope(x, head_dim, n_heads, n_tokens, positions, p);
  }
  void SwiGlu(const float* gate, const float* up, int64_t n, float* y) override {
    // The last element is left unwritten.
    CpuReferenceBackend::SwiGlu(gate, up, bug_ == Op::kSwiGlu ? n - 1 : n, y);
  }
  void Add(float* y, const float* x, int64_t n) override {
    CpuReferenceBackend::Add(y, x, n);
    if (bug_ == Op::kAdd) y[n / 2] = std::nextafter(y[n / 2], 1e30f);  // one ulp off
  }
  void StoreKv(const float* k, const float* v, int64_t kv_dim, int64_t n_tokens,
               const int32_t* positions, KvTypes types, void* k_cache, void* v_cache) override {
    // Stores the keys as values and the values as keys.
    if (bug_ == Op::kStoreKv) std::swap(k, v);
    CpuReferenceBackend::StoreKv(k, v, kv_dim, n_tokens, positions, types, k_cache, v_cache);
  }
  void Attention(const float* q, const void* k_cache, const void* v_cache,
                 const AttentionShape& shape, int64_t n_tokens, const int32_t* positions,
                 float* out) override {
    // Sees one row too many (the stale one after the last position), when there is one.
    std::vector<int32_t> shifted(positions, positions + n_tokens);
    if (bug_ == Op::kAttention) {
      for (int32_t& p : shifted) p = p < 15 ? p + 1 : p;
    }
    CpuReferenceBackend::Attention(q, k_cache, v_cache, shape, n_tokens, shifted.data(), out);
  }
  void AddScaledColumns(float* y, const float* x, int64_t rows, const int32_t* ids,
                        const float* scales, int64_t n) override {
    // Adds the last column to the first one's place as well (an off-by-one in the ids).
    CpuReferenceBackend::AddScaledColumns(y, x, rows, ids, scales, n);
    if (bug_ == Op::kAddScaledColumns && n > 1) {
      CpuReferenceBackend::AddScaledColumns(y, x + (n - 1) * rows, rows, ids, scales + n - 1, 1);
    }
  }

 private:
  Op bug_;
};

TEST(ConformanceHarnessTest, CatchesABugInEveryOperation) {
  for (Op op : kAllOps) {
    BrokenBackend broken(op);
    const ConformanceReport report = RunConformance(broken, op);
    EXPECT_GT(report.failures(), 0) << OpName(op) << ": the harness missed the bug";
    const ::testing::AssertionResult ok = report.Ok();
    EXPECT_FALSE(ok);
    EXPECT_NE(std::string(ok.message()).find(std::string(OpName(op))), std::string::npos);
    // The bug of one operation does not leak into the others' checks.
    for (Op other : kAllOps) {
      if (other != op) {
        EXPECT_EQ(RunConformance(broken, other).failures(), 0) << OpName(other);
      }
    }
  }
}

TEST(ConformanceHarnessTest, ReportsTheWorstElements) {
  BrokenBackend broken(Op::kMatMul);
  ConformanceOptions options;
  options.max_reported_mismatches = 2;
  const std::string message = RunConformance(broken, Op::kMatMul, options).Ok().message();
  EXPECT_NE(message.find("q4_K"), std::string::npos) << message;
  EXPECT_NE(message.find("expected"), std::string::npos) << message;
  EXPECT_EQ(message.find("q8_0"), std::string::npos) << message;  // only the broken type fails
}

TEST(ConformanceHarnessTest, BoundsCanBeAdjusted) {
  BrokenBackend broken(Op::kAddBias);
  ConformanceOptions options;
  options.adjust_bound = [](Op, GgmlType, double) { return 1e9; };
  EXPECT_EQ(RunConformance(broken, Op::kAddBias, options).failures(), 0);
}

TEST(ConformanceHarnessTest, RunAllCoversMemoryAndEveryOperation) {
  CpuReferenceBackend reference;
  const ConformanceReport report = RunAllConformance(reference);
  EXPECT_TRUE(report.Ok());
  for (std::string_view name : {"Memory", "MatMul", "AddBias", "GetRows", "RmsNorm", "Rope",
                                "SwiGlu", "Add", "StoreKv", "Attention"}) {
    EXPECT_TRUE(std::any_of(report.cases.begin(), report.cases.end(), [&](const CaseResult& c) {
      return c.op == name;
    })) << name;
  }
}

}  // namespace
}  // namespace swarm::kernels::testing
