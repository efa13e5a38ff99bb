// The CPU backend's row-panel layout of float weights (row_panels.h): the rewrite is lossless and
// puts each element where the layout says; products over panels match the reference, and every
// output is the same FMA chain whatever rows a call covers (a thread's range may start or end
// inside a panel), whatever the tokens beside it and however many threads share the work.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "backend_conformance.h"
#include "cpu_test_util.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/row_panels.h"
#include "kernels/cpu_reference_backend.h"
#include "kernels/quant_reference.h"

namespace swarm::kernels::cpu {
namespace {

constexpr GgmlType kFloatTypes[] = {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16};

std::vector<float> RandomFloats(std::mt19937& rng, size_t n) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& f : v) f = normal(rng);
  return v;
}

using testing::BitIdentical;
using testing::MakeCpu;
using testing::RandomRows;

int64_t Panels(int64_t n_out) { return (n_out + kPanelRows - 1) / kPanelRows; }

// The K-quants with panels have their own, of 8 interleaved rows (q2k_panels.h ... q6k_panels.h;
// test_cpu_lane_layout tests them).
TEST(RowPanelsTest, TheFloatTypesAndTheKQuantPanelTypesHaveThem) {
  for (GgmlType type : kFloatTypes) EXPECT_TRUE(HasRowPanels(type)) << GgmlTypeName(type);
  EXPECT_TRUE(HasRowPanels(GgmlType::kQ4_K));
  EXPECT_TRUE(HasRowPanels(GgmlType::kQ5_K));
  EXPECT_TRUE(HasRowPanels(GgmlType::kQ6_K));
  EXPECT_TRUE(HasRowPanels(GgmlType::kQ2_K));
  EXPECT_TRUE(HasRowPanels(GgmlType::kQ3_K));
  EXPECT_TRUE(HasRowPanels(GgmlType::kIQ4_XS));
  for (GgmlType type : {GgmlType::kQ8_0, GgmlType::kQ4_0}) {
    EXPECT_FALSE(HasRowPanels(type)) << GgmlTypeName(type);
  }
}

// Element (r, k) of panel p = r / 64 of width w sits at p * 64 rows' bytes + (k * w + r % 64).
TEST(RowPanelsTest, PutsEachElementWhereTheLayoutSays) {
  std::mt19937 rng(3);
  const int64_t n_in = 7, n_out = 64 + 5;
  const std::vector<uint8_t> rows = RandomRows(rng, GgmlType::kF32, n_in, n_out);
  std::vector<uint8_t> panels(rows.size());
  RowsToPanels(GgmlType::kF32, rows.data(), panels.data(), n_in, n_out, 0, Panels(n_out));
  const auto* src = reinterpret_cast<const float*>(rows.data());
  const auto* dst = reinterpret_cast<const float*>(panels.data());
  for (int64_t r = 0; r < n_out; ++r) {
    const int64_t p = r / 64, width = p == 0 ? 64 : 5;
    for (int64_t k = 0; k < n_in; ++k) {
      EXPECT_EQ(dst[p * 64 * n_in + k * width + r % 64], src[r * n_in + k]) << r << " " << k;
    }
  }
}

TEST(RowPanelsTest, RoundTripsEveryRow) {
  std::mt19937 rng(4);
  for (GgmlType type : kFloatTypes) {
    for (auto [n_in, n_out] : {std::pair<int64_t, int64_t>{1, 1}, {33, 64}, {48, 130}, {5, 3}}) {
      const std::vector<uint8_t> rows = RandomRows(rng, type, n_in, n_out);
      std::vector<uint8_t> panels(rows.size());
      RowsToPanels(type, rows.data(), panels.data(), n_in, n_out, 0, Panels(n_out));
      const size_t row_bytes = RowBytes(type, n_in).value();
      std::vector<uint8_t> back(rows.size());
      for (int64_t r = 0; r < n_out; ++r) {
        RowFromPanels(type, panels.data(), n_in, n_out, r, back.data() + r * row_bytes);
      }
      EXPECT_EQ(back, rows) << GgmlTypeName(type) << " " << n_in << "x" << n_out;
    }
  }
}

// The backend prepares float matrices into panels exactly where its table has panel kernels, and
// the products and row lookups over them match the reference.
TEST(RowPanelsTest, PreparedWeightsMatchTheReference) {
  std::mt19937 rng(8);
  CpuReferenceBackend reference;
  const CpuFeatures features = DetectCpuFeatures();
  for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512}) {
    if (!IsaSupported(isa, features)) continue;
    auto cpu = MakeCpu(isa, 2);
    ASSERT_NE(cpu, nullptr);
    for (GgmlType type : kFloatTypes) {
      const bool rewrites = KernelsFor(isa).matmul_packed[MatMulSlot(type)] != nullptr;
      // Past a k block (512), a token panel (96) and a full panel, with a narrow last panel.
      const int64_t n_in = 1100, n_out = 150, n_tokens = 101;
      const std::vector<uint8_t> bytes = RandomRows(rng, type, n_in, n_out);
      const Weight raw{type, n_in, n_out, bytes.data()};
      std::vector<std::unique_ptr<Buffer>> storage;
      auto prepared = cpu->PrepareWeight(raw, storage);
      ASSERT_TRUE(prepared.ok()) << prepared.status();
      EXPECT_EQ(prepared->layout == WeightLayout::kCpuRowPanels, rewrites) << IsaName(isa);
      const std::vector<float> x = RandomFloats(rng, static_cast<size_t>(n_in * n_tokens));
      std::vector<float> want(static_cast<size_t>(n_out * n_tokens)), got(want.size());
      reference.MatMul(raw, x.data(), n_tokens, want.data());
      cpu->MatMul(*prepared, x.data(), n_tokens, got.data());
      EXPECT_LE(testing::Nmse(got.data(), want.data(), got.size()),
                testing::DefaultNmseBound(testing::Op::kMatMul, type))
          << IsaName(isa) << " " << GgmlTypeName(type);
      const int32_t ids[] = {0, 149, 64, 63, 100};
      std::vector<float> rows_want(static_cast<size_t>(5 * n_in)), rows_got(rows_want.size());
      reference.GetRows(raw, ids, 5, rows_want.data());
      cpu->GetRows(*prepared, ids, 5, rows_got.data());
      EXPECT_TRUE(BitIdentical(rows_got, rows_want)) << IsaName(isa) << " " << GgmlTypeName(type);
    }
  }
}

// A call over any row range [r0, r1), one token or many, gives the bits of the whole product:
// ranges that start and end inside panels, single rows, the narrow last panel.
TEST(RowPanelsTest, AnyRowRangeGivesTheSameBits) {
  std::mt19937 rng(9);
  const CpuFeatures features = DetectCpuFeatures();
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    if (!IsaSupported(isa, features)) continue;
    const KernelTable& table = KernelsFor(isa);
    for (GgmlType type : kFloatTypes) {
      const MatMulFn fn = table.matmul_packed[MatMulSlot(type)];
      if (fn == nullptr) continue;
      const int64_t n_in = 300, n_out = 150;
      const std::vector<uint8_t> rows = RandomRows(rng, type, n_in, n_out);
      std::vector<uint8_t> panels(rows.size());
      RowsToPanels(type, rows.data(), panels.data(), n_in, n_out, 0, Panels(n_out));
      for (int64_t n_tokens : {1, 7}) {
        const std::vector<float> x = RandomFloats(rng, static_cast<size_t>(n_in * n_tokens));
        MatMulArgs a;
        a.type = type;
        a.w = panels.data();
        a.row_bytes = RowBytes(type, n_in).value();
        a.n_in = n_in;
        a.n_out = n_out;
        a.x = reinterpret_cast<const uint8_t*>(x.data());
        a.x_stride = n_in * sizeof(float);
        a.n_tokens = n_tokens;
        std::vector<float> whole(static_cast<size_t>(n_out * n_tokens));
        a.y = whole.data();
        fn(a, 0, n_out);
        for (const std::vector<int64_t>& cuts :
             {std::vector<int64_t>{0, 1, 17, 64, 65, 127, 128, 149, 150},
              std::vector<int64_t>{0, 40, 90, 150}}) {
          std::vector<float> pieces(whole.size(), -1.0f);
          a.y = pieces.data();
          for (size_t i = 0; i + 1 < cuts.size(); ++i) fn(a, cuts[i], cuts[i + 1]);
          EXPECT_TRUE(BitIdentical(pieces, whole))
              << IsaName(isa) << " " << GgmlTypeName(type) << " T=" << n_tokens;
        }
      }
    }
  }
}

// A weight in the row-panel layout handed to a backend without panel kernels is refused.
TEST(RowPanelsTest, BackendsWithoutPanelKernelsRefusePanelWeights) {
  testing::ExpectGenericRefuses(GgmlType::kF16, WeightLayout::kCpuRowPanels, "row-panel layout");
}

}  // namespace
}  // namespace swarm::kernels::cpu
