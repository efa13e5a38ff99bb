// CpuReferenceBackend against direct, independently written computations: hand-worked small cases
// and naive formulas (complex rotations for RoPE, explicit softmax for attention) on odd sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "base/half.h"
#include "kernels/cpu_reference_backend.h"
#include "kernels/quant_reference.h"

#if defined(__SANITIZE_ADDRESS__)
// AllocateFailsCleanlyWhenTooLarge needs the allocator to report failure by returning null, which
// AddressSanitizer only does when asked to (it aborts by default).
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }
#endif

namespace swarm::kernels {
namespace {

// Unscaled RoPE with this base and pairing.
RopeParams Plain(float freq_base, RopeStyle style) {
  RopeParams rope;
  rope.freq_base = freq_base;
  rope.style = style;
  return rope;
}

std::vector<float> Normal(size_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

void ExpectNear(const std::vector<float>& actual, const std::vector<double>& expected,
                double rel_tol, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t i = 0; i < actual.size(); ++i) {
    ASSERT_NEAR(actual[i], expected[i], rel_tol * (1.0 + std::fabs(expected[i])))
        << what << " element " << i;
  }
}

class CpuReferenceBackendTest : public ::testing::Test {
 protected:
  CpuReferenceBackend backend_;
};

TEST_F(CpuReferenceBackendTest, Identity) {
  EXPECT_EQ(backend_.name(), "reference");
  EXPECT_TRUE(backend_.host_memory());
  EXPECT_TRUE(backend_.Synchronize().ok());
  std::unique_ptr<Backend> made = MakeCpuReferenceBackend();
  ASSERT_NE(made, nullptr);
  EXPECT_EQ(made->name(), "reference");
}

TEST_F(CpuReferenceBackendTest, AllocateIsAlignedAndCopiesRoundTrip) {
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{100}, size_t{65536}}) {
    auto buffer = backend_.Allocate(bytes);
    ASSERT_TRUE(buffer.ok()) << buffer.status();
    EXPECT_EQ((*buffer)->size(), bytes);
    ASSERT_NE((*buffer)->data(), nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>((*buffer)->data()) % 64, 0u);
    std::vector<uint8_t> in(bytes), out(bytes);
    std::iota(in.begin(), in.end(), uint8_t{7});
    ASSERT_TRUE(backend_.CopyToBackend((*buffer)->data(), in.data(), bytes).ok());
    ASSERT_TRUE(backend_.CopyToHost(out.data(), (*buffer)->data(), bytes).ok());
    EXPECT_EQ(in, out);
  }
}

TEST_F(CpuReferenceBackendTest, AllocateFailsCleanlyWhenTooLarge) {
  auto buffer = backend_.Allocate(std::numeric_limits<size_t>::max() / 2);
  EXPECT_EQ(buffer.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(CpuReferenceBackendTest, PrepareWeightIsZeroCopy) {
  std::vector<uint8_t> bytes(2 * sizeof(BlockQ8_0));
  Weight host{GgmlType::kQ8_0, 32, 2, bytes.data()};
  std::vector<std::unique_ptr<Buffer>> storage;
  auto prepared = backend_.PrepareWeight(host, storage);
  ASSERT_TRUE(prepared.ok());
  EXPECT_EQ(prepared->data, bytes.data());
  EXPECT_EQ(prepared->type, GgmlType::kQ8_0);
  EXPECT_EQ(prepared->n_in, 32);
  EXPECT_EQ(prepared->n_out, 2);
  EXPECT_TRUE(storage.empty());
  // A row length that is not a multiple of the block size is rejected.
  Weight bad{GgmlType::kQ4_K, 100, 1, bytes.data()};
  EXPECT_FALSE(backend_.PrepareWeight(bad, storage).ok());
}

// ---- MatMul --------------------------------------------------------------------------------

TEST_F(CpuReferenceBackendTest, MatMulByHand) {
  // W rows (outputs): [1 2], [3 4], [5 6]; tokens x0 = [1 0], x1 = [0.5 -1].
  const std::vector<float> w = {1, 2, 3, 4, 5, 6};
  const std::vector<float> x = {1, 0, 0.5f, -1};
  std::vector<float> y(6);
  backend_.MatMul(Weight{GgmlType::kF32, 2, 3, w.data()}, x.data(), 2, y.data());
  EXPECT_EQ(y, std::vector<float>({1, 3, 5, -1.5f, -2.5f, -3.5f}));
}

TEST_F(CpuReferenceBackendTest, MatMulMatchesNaiveOnEveryType) {
  const GgmlType types[] = {GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16, GgmlType::kQ8_0,
                            GgmlType::kQ4_0, GgmlType::kQ4_K, GgmlType::kQ6_K};
  uint32_t seed = 1;
  for (GgmlType type : types) {
    const int64_t block = GetTypeTraits(type)->block_size;
    for (int64_t n_in :
         block == 1 ? std::vector<int64_t>{1, 3, 33} : std::vector<int64_t>{block, 2 * block}) {
      for (int64_t n_out : {1, 3, 5}) {
        for (int64_t n_tokens : {1, 3}) {
          const size_t row_bytes = RowBytes(type, n_in).value();
          const std::vector<float> values = Normal(static_cast<size_t>(n_in * n_out), seed++);
          std::vector<uint8_t> bytes(row_bytes * static_cast<size_t>(n_out));
          for (int64_t r = 0; r < n_out; ++r) {
            QuantizeRow(type, values.data() + r * n_in, bytes.data() + r * row_bytes, n_in);
          }
          // The matrix as the weight's own dequantization says (tested in test_quant_reference).
          std::vector<float> dense(static_cast<size_t>(n_in * n_out));
          for (int64_t r = 0; r < n_out; ++r) {
            DequantizeRow(type, bytes.data() + r * row_bytes, dense.data() + r * n_in, n_in);
          }
          const std::vector<float> x = Normal(static_cast<size_t>(n_in * n_tokens), seed++);
          // Naive: accumulate column by column (the other loop order).
          std::vector<double> expected(static_cast<size_t>(n_out * n_tokens), 0.0);
          for (int64_t t = 0; t < n_tokens; ++t) {
            for (int64_t i = 0; i < n_in; ++i) {
              for (int64_t r = 0; r < n_out; ++r) {
                expected[t * n_out + r] +=
                    static_cast<double>(dense[r * n_in + i]) * x[t * n_in + i];
              }
            }
          }
          std::vector<float> y(expected.size(), std::numeric_limits<float>::quiet_NaN());
          backend_.MatMul(Weight{type, n_in, n_out, bytes.data()}, x.data(), n_tokens, y.data());
          ExpectNear(y, expected, 1e-6,
                     std::string(GgmlTypeName(type)) + " n_in=" + std::to_string(n_in) +
                         " n_out=" + std::to_string(n_out) + " T=" + std::to_string(n_tokens));
        }
      }
    }
  }
}

// ---- AddBias, Add, GetRows -------------------------------------------------------------------

TEST_F(CpuReferenceBackendTest, AddBiasByHand) {
  std::vector<float> y = {1, 2, 3, 10, 20, 30};  // [3, 2]
  const std::vector<float> bias = {0.5f, -1, 2};
  backend_.AddBias(y.data(), bias.data(), 3, 2);
  EXPECT_EQ(y, std::vector<float>({1.5f, 1, 5, 10.5f, 19, 32}));
  std::vector<float> one = {4};
  const float b = -4;
  backend_.AddBias(one.data(), &b, 1, 1);
  EXPECT_EQ(one[0], 0.0f);
}

TEST_F(CpuReferenceBackendTest, AddByHand) {
  for (int64_t n : {1, 3, 33}) {
    std::vector<float> y(static_cast<size_t>(n)), x(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      y[i] = static_cast<float>(i);
      x[i] = 0.25f * static_cast<float>(i) - 3;
    }
    backend_.Add(y.data(), x.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(y[i], 1.25f * static_cast<float>(i) - 3) << i;
  }
}

TEST_F(CpuReferenceBackendTest, GetRowsByHand) {
  // Table [n_in 3, rows 4]: row r is {r, r + 0.5, -r}.
  std::vector<float> table;
  for (int r = 0; r < 4; ++r) table.insert(table.end(), {float(r), r + 0.5f, float(-r)});
  const int32_t ids[] = {3, 0, 3};
  std::vector<float> out(9);
  backend_.GetRows(Weight{GgmlType::kF32, 3, 4, table.data()}, ids, 3, out.data());
  EXPECT_EQ(out, std::vector<float>({3, 3.5f, -3, 0, 0.5f, 0, 3, 3.5f, -3}));

  // A Q8_0 table: row r has d = 1 and quants r - 16 + j.
  std::vector<BlockQ8_0> q8(3);
  for (int r = 0; r < 3; ++r) {
    q8[r].d = 0x3C00;
    for (int j = 0; j < 32; ++j) q8[r].qs[j] = static_cast<int8_t>(r - 16 + j);
  }
  const int32_t id = 2;
  std::vector<float> row(32);
  backend_.GetRows(Weight{GgmlType::kQ8_0, 32, 3, q8.data()}, &id, 1, row.data());
  for (int j = 0; j < 32; ++j) EXPECT_EQ(row[j], float(2 - 16 + j));
}

// ---- RmsNorm ---------------------------------------------------------------------------------

TEST_F(CpuReferenceBackendTest, RmsNormByHand) {
  // x = [3, 4]: mean of squares 12.5; eps 0 -> y = x / sqrt(12.5) * w.
  const std::vector<float> x = {3, 4};
  const std::vector<float> w = {1, -2};
  std::vector<float> y(2);
  backend_.RmsNorm(x.data(), w.data(), 2, 1, 0.0f, y.data());
  EXPECT_NEAR(y[0], 3 / std::sqrt(12.5), 1e-6);
  EXPECT_NEAR(y[1], -8 / std::sqrt(12.5), 1e-6);
  // A single element normalizes to +-1 (with eps 0), whatever its size.
  const float big = -1e6f, one = 1;
  float out;
  backend_.RmsNorm(&big, &one, 1, 1, 0.0f, &out);
  EXPECT_NEAR(out, -1.0f, 1e-6);
}

TEST_F(CpuReferenceBackendTest, RmsNormMatchesNaive) {
  for (int64_t n : {1, 3, 33, 64}) {
    for (int64_t n_tokens : {1, 2, 5}) {
      for (float eps : {1e-5f, 1e-2f}) {
        const std::vector<float> x = Normal(static_cast<size_t>(n * n_tokens),
                                            static_cast<uint32_t>(n * 10 + n_tokens), 0.2f);
        const std::vector<float> w = Normal(static_cast<size_t>(n), 99);
        std::vector<double> expected(x.size());
        for (int64_t t = 0; t < n_tokens; ++t) {
          double ss = 0;
          for (int64_t i = 0; i < n; ++i) ss += double(x[t * n + i]) * x[t * n + i];
          const double rms = std::sqrt(ss / n + eps);
          for (int64_t i = 0; i < n; ++i) expected[t * n + i] = x[t * n + i] / rms * w[i];
        }
        std::vector<float> y(x.size());
        backend_.RmsNorm(x.data(), w.data(), n, n_tokens, eps, y.data());
        ExpectNear(y, expected, 1e-6, "n=" + std::to_string(n));
        std::vector<float> in_place = x;  // y may alias x
        backend_.RmsNorm(in_place.data(), w.data(), n, n_tokens, eps, in_place.data());
        EXPECT_EQ(in_place, y);
      }
    }
  }
}

// ---- Rope ------------------------------------------------------------------------------------

TEST_F(CpuReferenceBackendTest, RopeByHand) {
  // head_dim 4, position 1, base 10000: pair 0 turns by 1 rad, pair 1 by 10000^(-1/2) = 0.01 rad.
  for (RopeStyle style : {RopeStyle::kAdjacentPairs, RopeStyle::kNeox}) {
    std::vector<float> x = {1, 0, 0, 0};
    const int32_t pos = 1;
    backend_.Rope(x.data(), 4, 1, 1, &pos, Plain(10000.0f, style));
    if (style == RopeStyle::kAdjacentPairs) {  // (x0, x1) rotate together
      EXPECT_NEAR(x[0], std::cos(1.0), 1e-7);
      EXPECT_NEAR(x[1], std::sin(1.0), 1e-7);
      EXPECT_EQ(x[2], 0.0f);
    } else {  // (x0, x2) rotate together
      EXPECT_NEAR(x[0], std::cos(1.0), 1e-7);
      EXPECT_EQ(x[1], 0.0f);
      EXPECT_NEAR(x[2], std::sin(1.0), 1e-7);
    }
    EXPECT_EQ(x[3], 0.0f);
    // The second pair turns by 0.01 rad.
    std::vector<float> y = {0, 0, 0, 0};
    y[style == RopeStyle::kNeox ? 1 : 2] = 1;
    backend_.Rope(y.data(), 4, 1, 1, &pos, Plain(10000.0f, style));
    EXPECT_NEAR(y[style == RopeStyle::kNeox ? 1 : 2], std::cos(0.01), 1e-7);
    EXPECT_NEAR(y[3], std::sin(0.01), 1e-7);
  }
  // Position 0 changes nothing.
  std::vector<float> z = {1, 2, 3, 4};
  const int32_t zero = 0;
  backend_.Rope(z.data(), 4, 1, 1, &zero, Plain(10000.0f, RopeStyle::kAdjacentPairs));
  EXPECT_EQ(z, std::vector<float>({1, 2, 3, 4}));
}

TEST_F(CpuReferenceBackendTest, RopeMatchesComplexRotation) {
  for (RopeStyle style : {RopeStyle::kAdjacentPairs, RopeStyle::kNeox}) {
    for (int64_t head_dim : {2, 4, 8, 64}) {
      for (int64_t n_heads : {1, 3}) {
        const std::vector<int32_t> positions = {5, 6, 7, 300};  // starts at a non-zero position
        const int64_t n_tokens = 4;
        const float base = head_dim == 64 ? 1e6f : 10000.0f;
        const std::vector<float> x0 = Normal(static_cast<size_t>(head_dim * n_heads * n_tokens),
                                             static_cast<uint32_t>(head_dim));
        std::vector<double> expected(x0.size());
        const int64_t half = head_dim / 2;
        for (int64_t t = 0; t < n_tokens; ++t) {
          for (int64_t h = 0; h < n_heads; ++h) {
            const int64_t o = (t * n_heads + h) * head_dim;
            for (int64_t i = 0; i < half; ++i) {
              const int64_t a = style == RopeStyle::kNeox ? i : 2 * i;
              const int64_t b = style == RopeStyle::kNeox ? i + half : 2 * i + 1;
              const double theta = positions[t] * std::exp(-2.0 * double(i) / double(head_dim) *
                                                           std::log(double(base)));
              const std::complex<double> z =
                  std::complex<double>(x0[o + a], x0[o + b]) * std::polar(1.0, theta);
              expected[o + a] = z.real();
              expected[o + b] = z.imag();
            }
          }
        }
        std::vector<float> x = x0;
        backend_.Rope(x.data(), head_dim, n_heads, n_tokens, positions.data(), Plain(base, style));
        ExpectNear(x, expected, 1e-6, "head_dim=" + std::to_string(head_dim));
      }
    }
  }
}

// ---- SwiGlu ----------------------------------------------------------------------------------

TEST_F(CpuReferenceBackendTest, SwiGluByHandAndNaive) {
  const std::vector<float> gate = {0, 20, -20, 1};
  const std::vector<float> up = {5, 2, 3, 1};
  std::vector<float> y(4);
  backend_.SwiGlu(gate.data(), up.data(), 4, y.data());
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_NEAR(y[1], 40.0f, 1e-5);
  EXPECT_NEAR(y[2], 0.0f, 1e-6);
  EXPECT_NEAR(y[3], 1 / (1 + std::exp(-1.0)), 1e-7);

  for (int64_t n : {1, 3, 33}) {
    const std::vector<float> g = Normal(static_cast<size_t>(n), 5, 3.0f);
    const std::vector<float> u = Normal(static_cast<size_t>(n), 6);
    std::vector<double> expected(g.size());
    for (int64_t i = 0; i < n; ++i) expected[i] = g[i] * (1 / (1 + std::exp(-double(g[i])))) * u[i];
    std::vector<float> out(g.size());
    backend_.SwiGlu(g.data(), u.data(), n, out.data());
    ExpectNear(out, expected, 1e-6, "n=" + std::to_string(n));
    std::vector<float> in_place = g;  // y may alias gate
    backend_.SwiGlu(in_place.data(), u.data(), n, in_place.data());
    EXPECT_EQ(in_place, out);
  }
}

// ---- StoreKv ---------------------------------------------------------------------------------

TEST_F(CpuReferenceBackendTest, StoreKvWritesOnlyTheGivenColumns) {
  const int64_t kv_dim = 3, capacity = 8;
  std::vector<float> k_cache(kv_dim * capacity, -1), v_cache(kv_dim * capacity, -2);
  const std::vector<float> k = {1, 2, 3, 4, 5, 6};
  const std::vector<float> v = {7, 8, 9, 10, 11, 12};
  const int32_t positions[] = {5, 2};
  backend_.StoreKv(k.data(), v.data(), kv_dim, 2, positions, KvTypes{}, k_cache.data(),
                   v_cache.data());
  for (int64_t p = 0; p < capacity; ++p) {
    for (int64_t i = 0; i < kv_dim; ++i) {
      const float want_k = p == 5 ? k[i] : p == 2 ? k[kv_dim + i] : -1;
      const float want_v = p == 5 ? v[i] : p == 2 ? v[kv_dim + i] : -2;
      EXPECT_EQ(k_cache[p * kv_dim + i], want_k) << p << " " << i;
      EXPECT_EQ(v_cache[p * kv_dim + i], want_v) << p << " " << i;
    }
  }
}

TEST_F(CpuReferenceBackendTest, StoreKvRoundsToTheCacheTypes) {
  // f16 keys and q8_0 values: each row as QuantizeRow makes it (llama.cpp's copy into its cache).
  const int64_t kv_dim = 64, capacity = 3;
  const KvTypes types{GgmlType::kF16, GgmlType::kQ8_0};
  const std::vector<float> k = Normal(kv_dim, 11), v = Normal(kv_dim, 12);
  std::vector<uint8_t> k_cache(KvRowBytes(types.k, kv_dim) * capacity, 0xAB);
  std::vector<uint8_t> v_cache(KvRowBytes(types.v, kv_dim) * capacity, 0xCD);
  const int32_t position = 1;
  backend_.StoreKv(k.data(), v.data(), kv_dim, 1, &position, types, k_cache.data(), v_cache.data());
  std::vector<uint8_t> want_k(KvRowBytes(types.k, kv_dim)), want_v(KvRowBytes(types.v, kv_dim));
  QuantizeRow(types.k, k.data(), want_k.data(), kv_dim);
  QuantizeRow(types.v, v.data(), want_v.data(), kv_dim);
  EXPECT_EQ(0, std::memcmp(k_cache.data() + want_k.size(), want_k.data(), want_k.size()));
  EXPECT_EQ(0, std::memcmp(v_cache.data() + want_v.size(), want_v.data(), want_v.size()));
  EXPECT_EQ(k_cache[0], 0xAB);  // other rows untouched
  EXPECT_EQ(v_cache.back(), 0xCD);
}

// ---- Attention -------------------------------------------------------------------------------

TEST_F(CpuReferenceBackendTest, AttentionByHand) {
  // One head, head_dim 2. A single visible row: the output is that row's value.
  const std::vector<float> q = {1, 2};
  std::vector<float> k_cache = {0.3f, -0.4f, 1, 1}, v_cache = {5, -6, 100, 100};
  std::vector<float> out(2);
  const int32_t pos0 = 0;
  backend_.Attention(q.data(), k_cache.data(), v_cache.data(), AttentionShape{1, 1, 2}, 1, &pos0,
                     out.data());
  EXPECT_EQ(out, std::vector<float>({5, -6}));
  // Two rows with equal keys: the mean of the values.
  k_cache = {1, 1, 1, 1};
  const int32_t pos1 = 1;
  backend_.Attention(q.data(), k_cache.data(), v_cache.data(), AttentionShape{1, 1, 2}, 1, &pos1,
                     out.data());
  EXPECT_NEAR(out[0], 52.5f, 1e-5);
  EXPECT_NEAR(out[1], 47.0f, 1e-5);
  // Keys (1, 0) and (0, 0), q = (sqrt(2) ln 3, 0): scores ln 3 and 0 after the 1/sqrt(2)
  // scale, so weights 3/4 and 1/4.
  const std::vector<float> q2 = {static_cast<float>(std::sqrt(2.0) * std::log(3.0)), 0};
  k_cache = {1, 0, 0, 0};
  v_cache = {4, 0, 0, 8};
  backend_.Attention(q2.data(), k_cache.data(), v_cache.data(), AttentionShape{1, 1, 2}, 1, &pos1,
                     out.data());
  EXPECT_NEAR(out[0], 3.0f, 1e-5);
  EXPECT_NEAR(out[1], 2.0f, 1e-5);
}

// Naive attention: for each query head, the scores against every visible key row as an explicit
// vector, softmax by exp / sum (no max subtraction: inputs are small), weighted sum of values.
std::vector<double> NaiveAttention(const std::vector<float>& q, const std::vector<float>& k_cache,
                                   const std::vector<float>& v_cache, const AttentionShape& s,
                                   const std::vector<int32_t>& positions) {
  const int64_t n_tokens = static_cast<int64_t>(positions.size());
  std::vector<double> out(static_cast<size_t>(s.head_dim * s.n_head * n_tokens));
  const int64_t ratio = s.n_head / s.n_head_kv;
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t h = 0; h < s.n_head; ++h) {
      const int64_t g = h / ratio;  // the KV head this query head shares
      std::vector<double> e;
      for (int64_t p = 0; p <= positions[t]; ++p) {
        double dot = 0;
        for (int64_t i = 0; i < s.head_dim; ++i) {
          dot += double(q[(t * s.n_head + h) * s.head_dim + i]) *
                 k_cache[(p * s.n_head_kv + g) * s.head_dim + i];
        }
        e.push_back(std::exp(dot / std::sqrt(double(s.head_dim))));
      }
      const double z = std::accumulate(e.begin(), e.end(), 0.0);
      for (int64_t i = 0; i < s.head_dim; ++i) {
        double sum = 0;
        for (size_t p = 0; p < e.size(); ++p) {
          sum += e[p] / z * v_cache[(p * s.n_head_kv + g) * s.head_dim + i];
        }
        out[(t * s.n_head + h) * s.head_dim + i] = sum;
      }
    }
  }
  return out;
}

TEST_F(CpuReferenceBackendTest, AttentionMatchesNaiveWithGqa) {
  const int64_t capacity = 12;
  uint32_t seed = 50;
  for (int64_t ratio : {1, 2, 4}) {
    for (int64_t n_head_kv : {1, 2}) {
      for (int64_t head_dim : {1, 4, 8}) {
        const AttentionShape shape{n_head_kv * ratio, n_head_kv, head_dim};
        const std::vector<std::vector<int32_t>> batches = {{0}, {0, 1, 2}, {7}, {4, 5, 6}};
        for (const std::vector<int32_t>& positions : batches) {
          const int64_t n_tokens = static_cast<int64_t>(positions.size());
          const int64_t kv_dim = head_dim * n_head_kv;
          const std::vector<float> q =
              Normal(static_cast<size_t>(head_dim * shape.n_head * n_tokens), seed++);
          std::vector<float> k_cache = Normal(static_cast<size_t>(kv_dim * capacity), seed++);
          std::vector<float> v_cache = Normal(static_cast<size_t>(kv_dim * capacity), seed++);
          // Rows no token may see are poisoned: any use of them turns the output into NaN.
          const int32_t last = *std::max_element(positions.begin(), positions.end());
          for (int64_t i = (int64_t{last} + 1) * kv_dim; i < kv_dim * capacity; ++i) {
            k_cache[i] = std::numeric_limits<float>::quiet_NaN();
            v_cache[i] = std::numeric_limits<float>::quiet_NaN();
          }
          const std::vector<double> expected =
              NaiveAttention(q, k_cache, v_cache, shape, positions);
          std::vector<float> out(expected.size(), std::numeric_limits<float>::quiet_NaN());
          backend_.Attention(q.data(), k_cache.data(), v_cache.data(), shape, n_tokens,
                             positions.data(), out.data());
          ExpectNear(out, expected, 1e-6,
                     "ratio=" + std::to_string(ratio) + " kv_heads=" + std::to_string(n_head_kv) +
                         " head_dim=" + std::to_string(head_dim) +
                         " T=" + std::to_string(n_tokens));
        }
      }
    }
  }
}

TEST_F(CpuReferenceBackendTest, AttentionIsCausalWithinABatch) {
  // Three tokens at positions 0..2 with distinct values: token 0 must see only value 0.
  const AttentionShape shape{1, 1, 1};
  const std::vector<float> q = {0, 0, 0};  // equal scores: the plain mean of visible values
  const std::vector<float> k_cache = {1, 1, 1};
  const std::vector<float> v_cache = {3, 6, 12};
  const std::vector<int32_t> positions = {0, 1, 2};
  std::vector<float> out(3);
  backend_.Attention(q.data(), k_cache.data(), v_cache.data(), shape, 3, positions.data(),
                     out.data());
  EXPECT_NEAR(out[0], 3.0f, 1e-6);
  EXPECT_NEAR(out[1], 4.5f, 1e-6);
  EXPECT_NEAR(out[2], 7.0f, 1e-6);
}

TEST_F(CpuReferenceBackendTest, SoftmaxIsStableForLargeScores) {
  // Scores near 1e4 would overflow exp() without the max subtraction.
  const AttentionShape shape{1, 1, 1};
  const float q = 1e4f;
  const std::vector<float> k_cache = {1, 1.0001f};
  const std::vector<float> v_cache = {1, 2};
  const int32_t pos = 1;
  float out = 0;
  backend_.Attention(&q, k_cache.data(), v_cache.data(), shape, 1, &pos, &out);
  ASSERT_TRUE(std::isfinite(out));
  // Scores differ by 1 (1e4 * 1e-4): weights e/(1+e) and 1/(1+e).
  const double w2 = std::exp(1.0) / (1 + std::exp(1.0));
  EXPECT_NEAR(out, 1 + w2, 1e-3);
}

// With f16 caches the reference rounds where llama.cpp's default CPU run does (flash attention
// off; kernels/kv_types.h): K and V when stored, Q before Q·K, and the normalized softmax
// probabilities before P·V. Written out by hand for one head over three rows.
TEST_F(CpuReferenceBackendTest, AttentionWithF16CacheRoundsQKVAndProbabilities) {
  const int64_t hd = 4, rows = 3;
  const auto r16 = [](double x) {
    return static_cast<double>(HalfToFloat(FloatToHalf(static_cast<float>(x))));
  };
  const std::vector<float> q = Normal(hd, 21, 3.0f);
  const std::vector<float> k = Normal(hd * rows, 22), v = Normal(hd * rows, 23);
  const KvTypes types{GgmlType::kF16, GgmlType::kF16};
  std::vector<uint8_t> k_cache(KvRowBytes(types.k, hd) * rows), v_cache(k_cache.size());
  const std::vector<int32_t> positions = {0, 1, 2};
  backend_.StoreKv(k.data(), v.data(), hd, rows, positions.data(), types, k_cache.data(),
                   v_cache.data());
  AttentionShape shape{1, 1, hd};
  shape.cache = types;
  std::vector<float> out(hd);
  const int32_t last = 2;
  backend_.Attention(q.data(), k_cache.data(), v_cache.data(), shape, 1, &last, out.data());

  std::vector<double> scores(rows);
  double max_score = -1e300, sum = 0;
  for (int64_t p = 0; p < rows; ++p) {
    double dot = 0;
    for (int64_t i = 0; i < hd; ++i) dot += r16(q[i]) * r16(k[p * hd + i]);
    scores[p] = dot / 2.0;  // 1 / sqrt(4)
    max_score = std::max(max_score, scores[p]);
  }
  for (double& s : scores) sum += (s = std::exp(s - max_score));
  std::vector<double> want(hd, 0.0);
  for (int64_t p = 0; p < rows; ++p) {
    const double weight = r16(static_cast<float>(scores[p] / sum));
    for (int64_t i = 0; i < hd; ++i) want[i] += weight * r16(v[p * hd + i]);
  }
  ExpectNear(out, want, 1e-6, "f16 attention");
  // And it differs from the unrounded f32 computation (the rounding is really there).
  std::vector<float> out32(hd);
  AttentionShape shape32{1, 1, hd};
  backend_.Attention(q.data(), k.data(), v.data(), shape32, 1, &last, out32.data());
  EXPECT_NE(out, out32);
}

}  // namespace
}  // namespace swarm::kernels
