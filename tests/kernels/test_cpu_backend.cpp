// The optimized CPU backend against the reference, for every instruction-set level this processor
// runs (generic, AVX2, AVX-512): the conformance harness (every op, every weight type, NMSE
// bounds), odd shapes that cross the kernels' tile, panel and group boundaries, and the
// determinism contract: bit-identical results for any thread count and any batching of tokens.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend_conformance.h"
#include "cpu_test_util.h"
#include "kernels/backend_factory.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu_reference_backend.h"
#include "kernels/quant_reference.h"

namespace swarm::kernels::cpu {
namespace {

// Unscaled RoPE with this base and pairing.
RopeParams Plain(float freq_base, RopeStyle style) {
  RopeParams rope;
  rope.freq_base = freq_base;
  rope.style = style;
  return rope;
}

using testing::AvailableIsas;
using testing::BackendConformanceTest;
using testing::BackendUnderTest;
using testing::BitIdentical;
using testing::MakeCpu;
using testing::Nmse;
using testing::Op;

// The CPU kernels' attention against the reference, for every cache type: they round where the
// reference rounds (kernels/kv_types.h), so what is left is float against double arithmetic
// (about 1e-13), and, with an f16 V cache, now and then a probability whose float value lies on
// the other side of an f16 rounding boundary than its exact value: one f16 step on that weight.
// Over a row of a few hundred positions that stays below 1e-9 (a missing rounding of the
// probabilities gives about 2e-8); in a row of two or three positions one such weight weighs
// up to a half, and one step of it gives up to about 1e-7.
constexpr double kAttentionNmse = 1e-9;
constexpr double kShortRowF16AttentionNmse = 2e-7;

double CpuBound(Op op, GgmlType v_type, double bound) {
  if (op != Op::kAttention) return bound;
  return v_type == GgmlType::kF16 ? kShortRowF16AttentionNmse : kAttentionNmse;
}

std::vector<BackendUnderTest> ConformanceBackends() {
  std::vector<BackendUnderTest> list;
  for (Isa isa : AvailableIsas()) {
    BackendUnderTest b{absl::StrCat("cpu_", std::string(IsaName(isa))),
                       [isa] { return std::unique_ptr<Backend>(MakeCpu(isa, 2)); }};
    b.options.adjust_bound = CpuBound;
    list.push_back(b);
  }
  // Model-sized rows (2048) and long contexts, on the level this machine would use.
  const Isa best = AvailableIsas().back();
  BackendUnderTest large{absl::StrCat("cpu_", std::string(IsaName(best)), "_large"),
                         [best] { return std::unique_ptr<Backend>(MakeCpu(best, 2)); }};
  large.options.large_shapes = true;
  large.options.adjust_bound = CpuBound;
  list.push_back(large);
  return list;
}

INSTANTIATE_TEST_SUITE_P(Cpu, BackendConformanceTest, ::testing::ValuesIn(ConformanceBackends()),
                         testing::BackendUnderTestName);

// ---- helpers ---------------------------------------------------------------------------------

constexpr GgmlType kTypes[] = {GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16,   GgmlType::kQ8_0,
                               GgmlType::kQ4_0, GgmlType::kQ4_K, GgmlType::kQ6_K,   GgmlType::kQ4_1,
                               GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kIQ4_NL, GgmlType::kQ5_K,
                               GgmlType::kQ2_K, GgmlType::kQ3_K, GgmlType::kIQ4_XS};

struct HostMatrix {
  std::vector<uint8_t> bytes;
  Weight weight;
};

// Random weights with a few large values per row (as real checkpoints have), quantized by the
// reference.
HostMatrix RandomMatrix(std::mt19937& rng, GgmlType type, int64_t n_in, int64_t n_out) {
  std::normal_distribution<float> normal(0.0f, 0.5f);
  std::vector<float> values(static_cast<size_t>(n_in * n_out));
  for (float& v : values) v = normal(rng);
  for (int64_t r = 0; r < n_out; ++r) values[r * n_in + (r * 7) % n_in] *= 8.0f;
  HostMatrix m;
  const size_t row_bytes = RowBytes(type, n_in).value();
  m.bytes.resize(row_bytes * n_out);
  for (int64_t r = 0; r < n_out; ++r) {
    QuantizeRow(type, values.data() + r * n_in, m.bytes.data() + r * row_bytes, n_in);
  }
  m.weight = Weight{type, n_in, n_out, m.bytes.data()};
  return m;
}

std::vector<float> RandomVector(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

std::vector<float> RunMatMul(Backend& b, const Weight& w, const std::vector<float>& x,
                             int64_t n_tokens) {
  std::vector<float> y(static_cast<size_t>(w.n_out * n_tokens));
  b.MatMul(w, x.data(), n_tokens, y.data());
  return y;
}

std::vector<int64_t> RowLengths(GgmlType type) {
  switch (GetTypeTraits(type).value().block_size) {
    case 1:
      // Up to 1100: rows of several hundred vectors with a partial last one.
      return {1, 15, 17, 100, 257, 600, 1100};
    case 32:
      return {32, 160, 288, 544, 1088};  // odd block counts; lane groups with tails
    default:
      return {256, 768};
  }
}

class CpuKernelTest : public ::testing::TestWithParam<Isa> {};

std::string IsaParamName(const ::testing::TestParamInfo<Isa>& info) {
  return std::string(IsaName(info.param));
}

INSTANTIATE_TEST_SUITE_P(Isa, CpuKernelTest, ::testing::ValuesIn(AvailableIsas()), IsaParamName);

// ---- matrix products -------------------------------------------------------------------------

// Shapes that cross every tile boundary: row tiles (8 for vectors, 4 for matrices), token tiles
// (3 or 4), token panels (48 or 64), odd block counts and partial activation groups.
TEST_P(CpuKernelTest, MatMulOddShapesMatchReference) {
  std::mt19937 rng(7);
  auto cpu = MakeCpu(GetParam(), 3);
  CpuReferenceBackend reference;
  for (GgmlType type : kTypes) {
    for (int64_t n_in : RowLengths(type)) {
      // At least 32 outputs each: the NMSE of a few outputs is noisy.
      for (auto [n_out, n_tokens] :
           {std::pair<int64_t, int64_t>{1, 40}, {33, 1}, {9, 4}, {20, 2}, {13, 5}, {6, 67}}) {
        const HostMatrix w = RandomMatrix(rng, type, n_in, n_out);
        const std::vector<float> x = RandomVector(rng, static_cast<size_t>(n_in * n_tokens));
        const std::vector<float> want = RunMatMul(reference, w.weight, x, n_tokens);
        // As stored, and as PrepareWeight leaves it (a lane layout for some types).
        std::vector<std::unique_ptr<Buffer>> storage;
        const Weight prepared = cpu->PrepareWeight(w.weight, storage).value();
        for (const Weight& weight : {w.weight, prepared}) {
          const std::vector<float> got = RunMatMul(*cpu, weight, x, n_tokens);
          const double nmse = Nmse(got.data(), want.data(), got.size());
          EXPECT_LE(nmse, testing::DefaultNmseBound(Op::kMatMul, type))
              << GgmlTypeName(type) << " n_in=" << n_in << " n_out=" << n_out << " T=" << n_tokens
              << " layout=" << static_cast<int>(weight.layout);
        }
      }
    }
  }
}

// Each token's outputs are bit-identical whether it runs alone or among others (at any place),
// and whatever the number of threads.
TEST_P(CpuKernelTest, MatMulIsIndependentOfBatchingAndThreads) {
  std::mt19937 rng(11);
  auto one = MakeCpu(GetParam(), 1);
  auto two = MakeCpu(GetParam(), 2);
  auto three = MakeCpu(GetParam(), 3);
  for (GgmlType type : kTypes) {
    for (int64_t n_in : GetTypeTraits(type).value().block_size == 1
                            ? std::vector<int64_t>{200, 768, 1100}
                            : std::vector<int64_t>{512}) {
      const int64_t n_out = 75, n_tokens = 53;
      const HostMatrix w = RandomMatrix(rng, type, n_in, n_out);
      const std::vector<float> x = RandomVector(rng, static_cast<size_t>(n_in * n_tokens));
      // As stored, and as PrepareWeight leaves it (a lane layout for some types).
      std::vector<std::unique_ptr<Buffer>> storage;
      const Weight prepared = one->PrepareWeight(w.weight, storage).value();
      for (const Weight& weight : {w.weight, prepared}) {
        const std::string what = std::string(GgmlTypeName(type)) + " layout " +
                                 std::to_string(static_cast<int>(weight.layout));
        const std::vector<float> batch = RunMatMul(*one, weight, x, n_tokens);
        EXPECT_TRUE(BitIdentical(RunMatMul(*two, weight, x, n_tokens), batch)) << what;
        EXPECT_TRUE(BitIdentical(RunMatMul(*three, weight, x, n_tokens), batch)) << what;
        for (int64_t t : {int64_t{0}, int64_t{4}, n_tokens - 1}) {
          const std::vector<float> xt(x.begin() + t * n_in, x.begin() + (t + 1) * n_in);
          const std::vector<float> want(batch.begin() + t * n_out, batch.begin() + (t + 1) * n_out);
          EXPECT_TRUE(BitIdentical(RunMatMul(*one, weight, xt, 1), want))
              << what << " token " << t << " alone, 1 thread";
          EXPECT_TRUE(BitIdentical(RunMatMul(*two, weight, xt, 1), want))
              << what << " token " << t << " alone, 2 threads";
        }
        // Tokens 10..12 as a batch of their own.
        const std::vector<float> xs(x.begin() + 10 * n_in, x.begin() + 13 * n_in);
        const std::vector<float> want(batch.begin() + 10 * n_out, batch.begin() + 13 * n_out);
        EXPECT_TRUE(BitIdentical(RunMatMul(*two, weight, xs, 3), want)) << what;
      }
    }
  }
}

// Q5_1 and IQ4_NL prompts take a path of their own (row tiles unpacked once per token panel):
// each token of a batch gets the bits it gets alone and with 3 threads, and stays near the
// reference, over row counts that leave partial row tiles, token counts that leave partial
// token tiles and panels, and rows of 1 to 288 blocks (block counts not multiples of 8).
TEST_P(CpuKernelTest, NlPromptsMatchTokensAlone) {
  std::mt19937 rng(19);
  auto one = MakeCpu(GetParam(), 1);
  auto three = MakeCpu(GetParam(), 3);
  CpuReferenceBackend reference;
  for (GgmlType type : {GgmlType::kQ5_1, GgmlType::kIQ4_NL}) {
    for (int64_t n_in : {32, 416, 2080, 9216}) {
      for (auto [n_out, n_tokens] :
           {std::pair<int64_t, int64_t>{3, 2}, {7, 3}, {11, 50}, {4, 97}, {53, 49}}) {
        const std::string what = absl::StrCat(std::string(GgmlTypeName(type)), " n_in=", n_in,
                                              " n_out=", n_out, " T=", n_tokens);
        const HostMatrix w = RandomMatrix(rng, type, n_in, n_out);
        const std::vector<float> x = RandomVector(rng, static_cast<size_t>(n_in * n_tokens));
        const std::vector<float> batch = RunMatMul(*one, w.weight, x, n_tokens);
        EXPECT_TRUE(BitIdentical(RunMatMul(*three, w.weight, x, n_tokens), batch)) << what;
        const std::vector<float> want = RunMatMul(reference, w.weight, x, n_tokens);
        EXPECT_LE(Nmse(batch.data(), want.data(), batch.size()),
                  testing::DefaultNmseBound(Op::kMatMul, type))
            << what;
        for (int64_t t = 0; t < n_tokens; ++t) {
          const std::vector<float> xt(x.begin() + t * n_in, x.begin() + (t + 1) * n_in);
          const std::vector<float> alone(batch.begin() + t * n_out,
                                         batch.begin() + (t + 1) * n_out);
          EXPECT_TRUE(BitIdentical(RunMatMul(*one, w.weight, xt, 1), alone))
              << what << " token " << t;
        }
      }
    }
  }
}

// The SIMD activation quantizers write the same bytes as the portable one.
TEST_P(CpuKernelTest, QuantizeX8MatchesGeneric) {
  std::mt19937 rng(3);
  for (int64_t k : {32, 96, 256, 288, 2048}) {
    for (auto [group, order] :
         {std::pair<int64_t, int>{32, 0}, {256, 0}, {32, kX8LanesQ8_0}, {32, kX8LanesQ4_0}}) {
      std::vector<float> x = RandomVector(rng, static_cast<size_t>(k), 3.0f);
      x[1] = 0.5f * 127.0f / 127.0f;  // exercise exact halves after scaling
      const X8Layout l = MakeX8Layout(k, group, order);
      std::vector<uint8_t> want(l.bytes, 0xAB), got(l.bytes, 0xAB);
      GenericKernels().quantize_x8(x.data(), l, want.data());
      KernelsFor(GetParam()).quantize_x8(x.data(), l, got.data());
      // Compare the defined parts (alignment padding between them is left as is).
      EXPECT_EQ(0, std::memcmp(got.data(), want.data(), static_cast<size_t>(l.kp))) << k;
      EXPECT_EQ(0, std::memcmp(got.data() + l.d_offset, want.data() + l.d_offset,
                               static_cast<size_t>(l.groups) * 4))
          << k;
      EXPECT_EQ(0, std::memcmp(got.data() + l.bsum16_offset, want.data() + l.bsum16_offset,
                               static_cast<size_t>(l.kp / 16) * 2))
          << k;
      EXPECT_EQ(0, std::memcmp(got.data() + l.bsum32_offset, want.data() + l.bsum32_offset,
                               static_cast<size_t>(l.kp / 32) * 4))
          << k;
      EXPECT_EQ(0, std::memcmp(got.data() + l.fsum32_offset, want.data() + l.fsum32_offset,
                               static_cast<size_t>(l.kp / 32) * 4))
          << k;
    }
  }
}

// An outlier activation channel (as LLMs have) costs Q8_0/Q4_0 accuracy only in its own 32-block:
// their activations are scaled per 32 values, as ggml's Q8_0.
TEST_P(CpuKernelTest, OutlierActivationsStayWithinBounds) {
  std::mt19937 rng(13);
  auto cpu = MakeCpu(GetParam(), 2);
  CpuReferenceBackend reference;
  for (GgmlType type : {GgmlType::kQ8_0, GgmlType::kQ4_0}) {
    const int64_t n_in = 512, n_out = 32, n_tokens = 4;
    const HostMatrix w = RandomMatrix(rng, type, n_in, n_out);
    std::vector<float> x = RandomVector(rng, static_cast<size_t>(n_in * n_tokens));
    for (int64_t t = 0; t < n_tokens; ++t) x[t * n_in + 5] *= 50.0f;
    const std::vector<float> got = RunMatMul(*cpu, w.weight, x, n_tokens);
    const std::vector<float> want = RunMatMul(reference, w.weight, x, n_tokens);
    EXPECT_LE(Nmse(got.data(), want.data(), got.size()),
              testing::DefaultNmseBound(Op::kMatMul, type))
        << GgmlTypeName(type);
  }
}

// Zero rows and zero activations give exact zeros (no NaN from a 0/0 scale).
TEST_P(CpuKernelTest, ZeroInputsGiveZero) {
  auto cpu = MakeCpu(GetParam(), 2);
  for (GgmlType type : kTypes) {
    const int64_t n_in = 256, n_out = 5, n_tokens = 3;
    std::vector<float> zeros(static_cast<size_t>(n_in * n_out), 0.0f);
    std::vector<uint8_t> bytes(RowBytes(type, n_in).value() * n_out);
    for (int64_t r = 0; r < n_out; ++r) {
      QuantizeRow(type, zeros.data(), bytes.data() + r * RowBytes(type, n_in).value(), n_in);
    }
    std::mt19937 rng(1);
    const Weight w{type, n_in, n_out, bytes.data()};
    for (const std::vector<float>& x :
         {RandomVector(rng, static_cast<size_t>(n_in * n_tokens)),
          std::vector<float>(static_cast<size_t>(n_in * n_tokens), 0.0f)}) {
      for (float v : RunMatMul(*cpu, w, x, n_tokens)) EXPECT_EQ(v, 0.0f) << GgmlTypeName(type);
    }
    const HostMatrix rw = RandomMatrix(rng, type, n_in, n_out);
    for (float v :
         RunMatMul(*cpu, rw.weight, std::vector<float>(n_in * n_tokens, 0.0f), n_tokens)) {
      EXPECT_EQ(v, 0.0f) << GgmlTypeName(type);
    }
  }
}

// A product whose input has the same bytes as the previous one reuses its quantization; an input
// changed in place (same pointer) is quantized again.
TEST_P(CpuKernelTest, InputsChangedInPlaceAreQuantizedAgain) {
  std::mt19937 rng(17);
  auto cpu = MakeCpu(GetParam(), 2);
  for (GgmlType type : {GgmlType::kQ8_0, GgmlType::kQ4_K}) {
    const int64_t n_in = 512, n_out = 40;
    const HostMatrix a = RandomMatrix(rng, type, n_in, n_out);
    const HostMatrix b = RandomMatrix(rng, type, n_in, n_out);
    std::vector<float> x = RandomVector(rng, static_cast<size_t>(n_in));
    const std::vector<float> want_a = RunMatMul(*cpu, a.weight, x, 1);
    const std::vector<float> want_b = RunMatMul(*cpu, b.weight, x, 1);
    EXPECT_TRUE(BitIdentical(RunMatMul(*cpu, a.weight, x, 1), want_a));
    x[7] += 1.0f;
    auto fresh = MakeCpu(GetParam(), 2);
    EXPECT_TRUE(BitIdentical(RunMatMul(*cpu, b.weight, x, 1), RunMatMul(*fresh, b.weight, x, 1)));
    EXPECT_FALSE(BitIdentical(RunMatMul(*cpu, b.weight, x, 1), want_b));
  }
}

// ---- attention -------------------------------------------------------------------------------

struct AttentionCase {
  AttentionShape shape;
  int64_t start;     // cache positions already filled
  int64_t n_tokens;  // query tokens after them
};

std::vector<float> RunAttention(Backend& b, const AttentionCase& c, const std::vector<float>& q,
                                const std::vector<float>& k, const std::vector<float>& v) {
  std::vector<int32_t> positions(static_cast<size_t>(c.n_tokens));
  std::iota(positions.begin(), positions.end(), static_cast<int32_t>(c.start));
  std::vector<float> out(q.size());
  b.Attention(q.data(), k.data(), v.data(), c.shape, c.n_tokens, positions.data(), out.data());
  return out;
}

// Contexts longer than the online softmax's chunk, grouped-query shapes, odd head sizes; and the
// output is bit-identical for 1 and 3 threads and for each token alone.
TEST_P(CpuKernelTest, AttentionLongContextsMatchReference) {
  std::mt19937 rng(5);
  auto one = MakeCpu(GetParam(), 1);
  auto three = MakeCpu(GetParam(), 3);
  CpuReferenceBackend reference;
  const AttentionCase cases[] = {{{4, 4, 8}, 300, 3},
                                 {{8, 2, 24}, 129, 2},
                                 {{32, 4, 64}, 260, 1},
                                 {{6, 1, 80}, 0, 40},
                                 {{2, 2, 16}, 255, 1},
                                 // Head groups of 3 and 5 (register blocks of 4 heads with a
                                 // remainder), head sizes with a masked tail vector.
                                 {{9, 3, 40}, 140, 2},
                                 {{10, 2, 100}, 37, 3}};
  for (const AttentionCase& c : cases) {
    const int64_t capacity = c.start + c.n_tokens;
    const int64_t q_dim = c.shape.n_head * c.shape.head_dim;
    const int64_t kv_dim = c.shape.n_head_kv * c.shape.head_dim;
    const std::vector<float> q = RandomVector(rng, static_cast<size_t>(q_dim * c.n_tokens), 0.7f);
    const std::vector<float> k = RandomVector(rng, static_cast<size_t>(kv_dim * capacity));
    const std::vector<float> v = RandomVector(rng, static_cast<size_t>(kv_dim * capacity));
    const std::vector<float> want = RunAttention(reference, c, q, k, v);
    const std::vector<float> got = RunAttention(*one, c, q, k, v);
    EXPECT_LE(Nmse(got.data(), want.data(), got.size()), kAttentionNmse)
        << "n_head=" << c.shape.n_head << " n_head_kv=" << c.shape.n_head_kv
        << " head_dim=" << c.shape.head_dim << " start=" << c.start;
    EXPECT_TRUE(BitIdentical(RunAttention(*three, c, q, k, v), got));
    const AttentionCase last{c.shape, c.start + c.n_tokens - 1, 1};
    const std::vector<float> q_last(q.end() - q_dim, q.end());
    const std::vector<float> got_last = RunAttention(*three, last, q_last, k, v);
    EXPECT_TRUE(BitIdentical(got_last, std::vector<float>(got.end() - q_dim, got.end())));
  }
}

// Rounded caches: each cache type pair over long contexts and grouped heads against the reference,
// and bit-identical for 1 and 3 threads. The kernels round Q for the K type, K and V as stored and
// the probabilities for an f16 V cache, as the reference: the bound is tight enough to see any of
// these roundings missing (a missing f16 rounding of the probabilities alone gives about 2e-8).
TEST_P(CpuKernelTest, AttentionOverRoundedCachesMatchesReference) {
  std::mt19937 rng(6);
  auto one = MakeCpu(GetParam(), 1);
  auto three = MakeCpu(GetParam(), 3);
  CpuReferenceBackend reference;
  const KvTypes type_pairs[] = {{GgmlType::kF16, GgmlType::kF32},
                                {GgmlType::kQ8_0, GgmlType::kF32},
                                {GgmlType::kF32, GgmlType::kQ8_0},
                                {GgmlType::kF16, GgmlType::kF16},
                                {GgmlType::kQ8_0, GgmlType::kQ8_0}};
  const AttentionShape shapes[] = {{8, 2, 64}, {9, 3, 32}, {4, 1, 128}};
  for (const KvTypes types : type_pairs) {
    for (AttentionShape shape : shapes) {
      shape.cache = types;
      const int64_t start = 200, n_tokens = 2, capacity = start + n_tokens;
      const int64_t q_dim = shape.n_head * shape.head_dim,
                    kv_dim = shape.n_head_kv * shape.head_dim;
      const std::vector<float> q = RandomVector(rng, static_cast<size_t>(q_dim * n_tokens), 0.7f);
      std::vector<uint8_t> k_cache(KvRowBytes(types.k, kv_dim) * capacity);
      std::vector<uint8_t> v_cache(KvRowBytes(types.v, kv_dim) * capacity);
      std::vector<int32_t> all(static_cast<size_t>(capacity));
      std::iota(all.begin(), all.end(), 0);
      const std::vector<float> k = RandomVector(rng, static_cast<size_t>(kv_dim * capacity));
      const std::vector<float> v = RandomVector(rng, static_cast<size_t>(kv_dim * capacity));
      reference.StoreKv(k.data(), v.data(), kv_dim, capacity, all.data(), types, k_cache.data(),
                        v_cache.data());
      const int32_t* positions = all.data() + start;
      std::vector<float> want(q.size()), got(q.size()), got3(q.size());
      reference.Attention(q.data(), k_cache.data(), v_cache.data(), shape, n_tokens, positions,
                          want.data());
      one->Attention(q.data(), k_cache.data(), v_cache.data(), shape, n_tokens, positions,
                     got.data());
      three->Attention(q.data(), k_cache.data(), v_cache.data(), shape, n_tokens, positions,
                       got3.data());
      const double nmse = Nmse(got.data(), want.data(), got.size());
      std::printf("%s heads %lld/%lld head_dim %lld: NMSE %.3g\n", KvTypesText(types).c_str(),
                  static_cast<long long>(shape.n_head), static_cast<long long>(shape.n_head_kv),
                  static_cast<long long>(shape.head_dim), nmse);
      EXPECT_LE(nmse, kAttentionNmse) << KvTypesText(types) << " heads " << shape.n_head << "/"
                                      << shape.n_head_kv << " head_dim " << shape.head_dim;
      EXPECT_TRUE(BitIdentical(got3, got)) << KvTypesText(types);
    }
  }
}

// ---- profile ----------------------------------------------------------------------------------

// `swarm bench --profile` reads these lines: the activations' quantization apart from the weight
// kernel, each matrix product by type, shape and decode/prompt.
TEST_P(CpuKernelTest, ProfileSeparatesQuantizationFromTheProduct) {
  std::mt19937 rng(19);
  auto cpu = MakeCpu(GetParam(), 2);
  // The profiler is an optional capability reached through the Backend interface (bench uses it
  // so); the optimized CPU backend has no graph capture and no device probe.
  Backend& backend = *cpu;
  OpProfiler* profiler = backend.op_profiler();
  ASSERT_NE(profiler, nullptr);
  EXPECT_EQ(backend.graph_capture(), nullptr);
  EXPECT_EQ(backend.device_probe(), nullptr);
  const HostMatrix w = RandomMatrix(rng, GgmlType::kQ8_0, 256, 40);
  profiler->SetProfiling(true);
  RunMatMul(*cpu, w.weight, RandomVector(rng, 256), 1);
  RunMatMul(*cpu, w.weight, RandomVector(rng, 256 * 3), 3);
  profiler->SetProfiling(false);
  RunMatMul(*cpu, w.weight, RandomVector(rng, 256), 1);
  std::vector<std::string> names;
  for (const OpProfile& op : profiler->profile()) {
    names.push_back(op.name);
    EXPECT_GE(op.seconds, 0.0) << op.name;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"quantize_x8", "matmul q8_0 40x256 T=1",
                                             "matmul q8_0 40x256 T>1"}));
  EXPECT_EQ(profiler->profile()[0].calls, 2);
  profiler->ResetProfile();
  EXPECT_TRUE(profiler->profile().empty());
}

// ---- element-wise ops on model-sized rows ------------------------------------------------------

TEST_P(CpuKernelTest, ElementwiseOpsMatchReference) {
  std::mt19937 rng(9);
  auto cpu = MakeCpu(GetParam(), 2);
  CpuReferenceBackend reference;
  for (int64_t n : {1, 17, 2048, 5633}) {
    const int64_t n_tokens = 3;
    const std::vector<float> x = RandomVector(rng, static_cast<size_t>(n * n_tokens));
    const std::vector<float> u = RandomVector(rng, static_cast<size_t>(n * n_tokens));
    const std::vector<float> w = RandomVector(rng, static_cast<size_t>(n));
    std::vector<float> got(x.size()), want(x.size());
    cpu->RmsNorm(x.data(), w.data(), n, n_tokens, 1e-5f, got.data());
    reference.RmsNorm(x.data(), w.data(), n, n_tokens, 1e-5f, want.data());
    EXPECT_LE(Nmse(got.data(), want.data(), got.size()), 1e-12) << "rms_norm " << n;
    cpu->SwiGlu(x.data(), u.data(), n * n_tokens, got.data());
    reference.SwiGlu(x.data(), u.data(), n * n_tokens, want.data());
    EXPECT_LE(Nmse(got.data(), want.data(), got.size()), 1e-12) << "swiglu " << n;
    got = x;
    want = x;
    cpu->Add(got.data(), u.data(), n * n_tokens);
    reference.Add(want.data(), u.data(), n * n_tokens);
    EXPECT_TRUE(BitIdentical(got, want)) << "add " << n;
  }
  // Rope computes its angles as the reference does: bit-identical, plain and with Llama 3-style
  // factors under YaRN scaling.
  for (RopeStyle style : {RopeStyle::kAdjacentPairs, RopeStyle::kNeox}) {
    const int64_t head_dim = 64, n_heads = 4, n_tokens = 40;
    RopeParams scaled = Plain(500000.0f, style);
    scaled.freq_scale = 0.125f;
    scaled.ext_factor = 1.0f;
    scaled.n_ctx_orig = 1024;
    for (int64_t i = 0; i < head_dim / 2; ++i) scaled.freq_factors.push_back(1.0f + 0.2f * i);
    for (const RopeParams& rope : {Plain(10000.0f, style), scaled}) {
      std::vector<float> got =
          RandomVector(rng, static_cast<size_t>(head_dim * n_heads * n_tokens));
      std::vector<float> want = got;
      std::vector<int32_t> positions(n_tokens);
      std::iota(positions.begin(), positions.end(), 1000);
      cpu->Rope(got.data(), head_dim, n_heads, n_tokens, positions.data(), rope);
      reference.Rope(want.data(), head_dim, n_heads, n_tokens, positions.data(), rope);
      EXPECT_TRUE(BitIdentical(got, want));
    }
  }
}

// ---- backend construction ----------------------------------------------------------------------

TEST(CpuBackendTest, FactoryNames) {
  BackendOptions options;
  for (const char* name : {"auto", "cpu", "cpu:generic"}) {
    options.name = name;
    auto backend = MakeBackend(options);
    ASSERT_TRUE(backend.ok()) << name << ": " << backend.status();
    EXPECT_EQ((*backend)->name().substr(0, 4), "cpu-") << name;
  }
  options.name = "reference";
  auto reference = MakeBackend(options);
  ASSERT_TRUE(reference.ok());
  EXPECT_EQ((*reference)->name(), "reference");
  options.name = "cpu:sse9";
  EXPECT_EQ(MakeBackend(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.name = "gpu";
  EXPECT_EQ(MakeBackend(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.name = "cpu";
  options.threads = -3;
  EXPECT_EQ(MakeBackend(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CpuBackendTest, ChoosesTheBestSupportedIsaAndRefusesOthers) {
  const CpuFeatures features = DetectCpuFeatures();
  auto best = CpuBackend::Create({});
  ASSERT_TRUE(best.ok()) << best.status();
  EXPECT_EQ((*best)->isa(), BestIsa(features));
  EXPECT_GE((*best)->threads(), 1);
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    CpuBackendOptions options;
    options.isa = isa;
    EXPECT_EQ(CpuBackend::Create(options).ok(), IsaSupported(isa, features)) << IsaName(isa);
  }
}

TEST(CpuFeaturesTest, SummaryAndCoreCount) {
  const CpuFeatures f = DetectCpuFeatures();
  EXPECT_FALSE(f.Summary().empty());
  EXPECT_GE(PhysicalCoreCount(), 1);
  // AVX-512 implies AVX2 in what the backend requires.
  if (f.avx512) {
    EXPECT_TRUE(f.avx2);
  }
  // Asking for AMX must be harmless where it is absent or refused.
  const bool granted = RequestAmxPermission();
  if (!f.amx_tile) {
    EXPECT_FALSE(granted);
  }
}

}  // namespace
}  // namespace swarm::kernels::cpu
