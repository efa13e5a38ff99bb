// The optimized CPU backend's Q2_K, Q3_K and IQ4_XS products, at every instruction-set level this
// processor runs, against the reference backend (NMSE within the conformance bound of quantized
// types), and the determinism contract: bit-identical outputs for any thread count and batching,
// also for rows at and past the length up to which prompts unpack a row tile once per token panel
// (8192 values; Q4_1, Q5_0 and Q5_K too).
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cpu_test_util.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu_reference_backend.h"
#include "support/nmse.h"

namespace swarm::kernels::cpu {
namespace {

using testing::AvailableIsas;
using testing::BitIdentical;
using testing::MakeCpu;

constexpr GgmlType kLowBitTypes[] = {GgmlType::kQ2_K, GgmlType::kQ3_K, GgmlType::kIQ4_XS};

std::vector<float> RandomVector(std::mt19937& rng, size_t n) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
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

class CpuLowBitTest : public ::testing::TestWithParam<Isa> {};

INSTANTIATE_TEST_SUITE_P(Isa, CpuLowBitTest, ::testing::ValuesIn(AvailableIsas()),
                         [](const ::testing::TestParamInfo<Isa>& info) {
                           return std::string(IsaName(info.param));
                         });

TEST_P(CpuLowBitTest, EveryLevelHasTheKernels) {
  for (GgmlType type : kLowBitTypes) {
    EXPECT_NE(KernelsFor(GetParam()).matmul[MatMulSlot(type)], nullptr) << GgmlTypeName(type);
    EXPECT_TRUE(UsesX8(type));
    EXPECT_EQ(X8Group(type), 256);
  }
}

TEST_P(CpuLowBitTest, MatMulMatchesReference) {
  std::mt19937 rng(5);
  auto cpu = MakeCpu(GetParam(), 3);
  ASSERT_NE(cpu, nullptr);
  CpuReferenceBackend reference;
  for (GgmlType type : kLowBitTypes) {
    for (int64_t n_in : {256, 768, 2048}) {
      for (auto [n_out, n_tokens] : {std::pair<int64_t, int64_t>{33, 1}, {40, 3}, {9, 17}}) {
        const std::vector<uint8_t> bytes = testing::RandomRows(rng, type, n_in, n_out);
        Weight w{type, n_in, n_out, bytes.data()};
        std::vector<std::unique_ptr<Buffer>> storage;
        const Weight prepared = cpu->PrepareWeight(w, storage).value();
        const std::vector<float> x = RandomVector(rng, static_cast<size_t>(n_in * n_tokens));
        const std::vector<float> want = RunMatMul(reference, w, x, n_tokens);
        const std::vector<float> got = RunMatMul(*cpu, prepared, x, n_tokens);
        // Activations quantized to 8 bits per 256 values, as the other K-quants (conformance's
        // bound for the quantized types).
        EXPECT_LE(test_support::Nmse(got, want), 5e-4)
            << GgmlTypeName(type) << " n_in=" << n_in << " n_out=" << n_out << " T=" << n_tokens;
      }
    }
  }
}

// Each token's outputs are bit-identical alone or in a batch, with 1, 2 or 3 threads; and the SIMD
// levels agree with the portable one to float rounding.
TEST_P(CpuLowBitTest, MatMulIsIndependentOfBatchingAndThreads) {
  std::mt19937 rng(11);
  auto one = MakeCpu(GetParam(), 1);
  auto three = MakeCpu(GetParam(), 3);
  auto generic = MakeCpu(Isa::kGeneric, 1);
  for (GgmlType type : kLowBitTypes) {
    constexpr int64_t kIn = 1024, kOut = 75, kTokens = 21;
    const std::vector<uint8_t> bytes = testing::RandomRows(rng, type, kIn, kOut);
    const Weight w{type, kIn, kOut, bytes.data()};
    const std::vector<float> x = RandomVector(rng, static_cast<size_t>(kIn * kTokens));
    const std::vector<float> batch = RunMatMul(*one, w, x, kTokens);
    EXPECT_TRUE(BitIdentical(RunMatMul(*three, w, x, kTokens), batch)) << GgmlTypeName(type);
    for (int64_t t : {int64_t{0}, int64_t{7}, kTokens - 1}) {
      const std::vector<float> xt(x.begin() + t * kIn, x.begin() + (t + 1) * kIn);
      const std::vector<float> want(batch.begin() + t * kOut, batch.begin() + (t + 1) * kOut);
      EXPECT_TRUE(BitIdentical(RunMatMul(*three, w, xt, 1), want))
          << GgmlTypeName(type) << " token " << t;
    }
    const std::vector<float> portable = RunMatMul(*generic, w, x, kTokens);
    EXPECT_LE(test_support::Nmse(batch, portable), 1e-10) << GgmlTypeName(type);
  }
}

// Prompts unpack each row tile once per token panel for rows up to 8192 values and take the
// per-tile path past that: both agree bit for bit with one token at a time (the decode path) and
// with the reference.
TEST_P(CpuLowBitTest, LongRowsAgreeAcrossPromptPaths) {
  std::mt19937 rng(23);
  auto cpu = MakeCpu(GetParam(), 2);
  CpuReferenceBackend reference;
  struct Case {
    GgmlType type;
    int64_t n_in;
  };
  // 8192 + 96: an odd number of 32-value blocks.
  for (const Case c :
       {Case{GgmlType::kQ2_K, 8192}, Case{GgmlType::kQ2_K, 8448}, Case{GgmlType::kQ3_K, 8448},
        Case{GgmlType::kIQ4_XS, 8448}, Case{GgmlType::kQ4_1, 8192}, Case{GgmlType::kQ4_1, 8288},
        Case{GgmlType::kQ5_0, 8288}, Case{GgmlType::kQ5_K, 8448}}) {
    constexpr int64_t kOut = 7, kTokens = 5;
    const std::vector<uint8_t> bytes = testing::RandomRows(rng, c.type, c.n_in, kOut);
    const Weight w{c.type, c.n_in, kOut, bytes.data()};
    const std::vector<float> x = RandomVector(rng, static_cast<size_t>(c.n_in * kTokens));
    const std::vector<float> batch = RunMatMul(*cpu, w, x, kTokens);
    const std::string what = std::string(GgmlTypeName(c.type)) + " n_in=" + std::to_string(c.n_in);
    for (int64_t t : {int64_t{0}, kTokens - 1}) {
      const std::vector<float> xt(x.begin() + t * c.n_in, x.begin() + (t + 1) * c.n_in);
      const std::vector<float> want(batch.begin() + t * kOut, batch.begin() + (t + 1) * kOut);
      EXPECT_TRUE(BitIdentical(RunMatMul(*cpu, w, xt, 1), want)) << what << " token " << t;
    }
    EXPECT_LE(test_support::Nmse(batch, RunMatMul(reference, w, x, kTokens)), 5e-4) << what;
  }
}

}  // namespace
}  // namespace swarm::kernels::cpu
