// The CPU backend's lane layout of Q4_0 and Q8_0 weights (lane_layout.h) and its interleaved rows
// of Q4_K and Q6_K (q4k_panels.h, q6k_panels.h): the rewrite is lossless, keeps the blocks (rows)
// past the last full group as they were, and a backend that rewrites its weights at PrepareWeight
// computes what it computes on the weights as stored (exactly, or within the type's bound where the
// kernels sum in another order), with every output's bits independent of the rows and tokens beside
// it.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "backend_conformance.h"
#include "cpu_test_util.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/lane_layout.h"
#include "kernels/cpu/q4k_panels.h"
#include "kernels/cpu/q6k_panels.h"
#include "kernels/cpu/row_panels.h"
#include "kernels/quant_reference.h"

namespace swarm::kernels::cpu {
namespace {

using testing::BitIdentical;
using testing::RandomRows;

std::unique_ptr<CpuBackend> MakeCpu(Isa isa) { return testing::MakeCpu(isa, 2); }

constexpr GgmlType kLaneTypes[] = {GgmlType::kQ4_0, GgmlType::kQ8_0};

size_t BlockBytes(GgmlType type) {
  return type == GgmlType::kQ8_0 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0);
}

TEST(LaneLayoutTest, OnlyQ4_0AndQ8_0HaveOne) {
  for (GgmlType type : kLaneTypes) EXPECT_TRUE(HasLaneLayout(type)) << GgmlTypeName(type);
  for (GgmlType type : {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ4_K,
                        GgmlType::kQ6_K, GgmlType::kQ3_K}) {
    EXPECT_FALSE(HasLaneLayout(type)) << GgmlTypeName(type);
  }
}

TEST(LaneLayoutTest, RoundTripsAndLeavesTailBlocksAsTheyWere) {
  std::mt19937 rng(5);
  for (GgmlType type : kLaneTypes) {
    for (int64_t n_in : {32, 96, 512, 544, 1088, 2048}) {
      const std::vector<uint8_t> gguf = RandomRows(rng, type, n_in, 1);
      std::vector<uint8_t> lanes(gguf.size()), back(gguf.size());
      RowToLanes(type, gguf.data(), lanes.data(), n_in);
      RowFromLanes(type, lanes.data(), back.data(), n_in);
      EXPECT_EQ(back, gguf) << GgmlTypeName(type) << " " << n_in;
      const size_t grouped = BlockBytes(type) * 16 * static_cast<size_t>(n_in / 512);
      EXPECT_EQ(grouped == 0, lanes == gguf) << n_in << ": only full groups are rewritten";
      EXPECT_TRUE(std::equal(lanes.begin() + grouped, lanes.end(), gguf.begin() + grouped))
          << GgmlTypeName(type) << " " << n_in;
    }
  }
}

// Lane L of a group holds block BlockOfLane(order, L): its scale first, then its pieces.
TEST(LaneLayoutTest, PutsEachBlockInItsLane) {
  std::mt19937 rng(6);
  for (GgmlType type : kLaneTypes) {
    const std::vector<uint8_t> gguf = RandomRows(rng, type, 512, 1);
    std::vector<uint8_t> lanes(gguf.size());
    RowToLanes(type, gguf.data(), lanes.data(), 512);
    const int order = X8LaneOrder(type);
    const int pieces = type == GgmlType::kQ8_0 ? 8 : 4;
    for (int lane = 0; lane < 16; ++lane) {
      const uint8_t* block = gguf.data() + BlockBytes(type) * BlockOfLane(order, lane);
      EXPECT_EQ(0, std::memcmp(lanes.data() + 2 * lane, block, 2)) << lane;  // d
      for (int c = 0; c < pieces; ++c) {
        EXPECT_EQ(0, std::memcmp(lanes.data() + 32 + 64 * c + 4 * lane, block + 2 + 4 * c, 4))
            << GgmlTypeName(type) << " " << lane << " " << c;
      }
    }
  }
}

// On every level this processor runs: PrepareWeight rewrites Q4_0 and Q8_0 exactly where the
// kernel table has a lane kernel for the type, and row lookups give the same bits either way.
// Products agree bit for bit on AVX-512, whose kernels for GGUF blocks shuffle them into the same
// lanes; on AVX2, whose GGUF kernels sum block by block, within the type's bound of the reference.
TEST(LaneLayoutTest, PreparedWeightsComputeTheSameBits) {
  std::mt19937 rng(7);
  const CpuFeatures features = DetectCpuFeatures();
  for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512}) {
    if (!IsaSupported(isa, features)) continue;
    auto cpu = MakeCpu(isa);
    ASSERT_NE(cpu, nullptr);
    for (GgmlType type : kLaneTypes) {
      const bool rewrites = KernelsFor(isa).matmul_packed[MatMulSlot(type)] != nullptr;
      for (int64_t n_in : {512, 544, 1088, 2048}) {
        const int64_t n_out = 37;
        const std::vector<uint8_t> bytes = RandomRows(rng, type, n_in, n_out);
        const Weight raw{type, n_in, n_out, bytes.data()};
        std::vector<std::unique_ptr<Buffer>> storage;
        auto prepared = cpu->PrepareWeight(raw, storage);
        ASSERT_TRUE(prepared.ok()) << prepared.status();
        EXPECT_EQ(prepared->layout == WeightLayout::kCpuLanes, rewrites) << IsaName(isa);
        EXPECT_EQ(prepared->data != raw.data, rewrites) << IsaName(isa);
        for (int64_t n_tokens : {1, 5, 53}) {
          std::normal_distribution<float> normal(0.0f, 1.0f);
          std::vector<float> x(static_cast<size_t>(n_in * n_tokens));
          for (float& v : x) v = normal(rng);
          std::vector<float> want(static_cast<size_t>(n_out * n_tokens));
          std::vector<float> got(want.size());
          cpu->MatMul(raw, x.data(), n_tokens, want.data());
          cpu->MatMul(*prepared, x.data(), n_tokens, got.data());
          if (isa == Isa::kAvx512 || !rewrites) {
            EXPECT_TRUE(BitIdentical(got, want)) << IsaName(isa) << " " << GgmlTypeName(type)
                                                 << " n_in=" << n_in << " T=" << n_tokens;
          } else {
            EXPECT_LE(testing::Nmse(got.data(), want.data(), got.size()),
                      testing::DefaultNmseBound(testing::Op::kMatMul, type))
                << IsaName(isa) << " " << GgmlTypeName(type) << " n_in=" << n_in
                << " T=" << n_tokens;
          }
          // A token's bits do not depend on its batch: the first token alone.
          std::vector<float> alone(static_cast<size_t>(n_out));
          cpu->MatMul(*prepared, x.data(), 1, alone.data());
          for (int64_t r = 0; r < n_out; ++r) {
            ASSERT_EQ(alone[r], got[r])
                << IsaName(isa) << " " << GgmlTypeName(type) << " row " << r;
          }
        }
        const int32_t ids[] = {0, 36, 5, 5};
        std::vector<float> want(static_cast<size_t>(4 * n_in)), got(want.size());
        cpu->GetRows(raw, ids, 4, want.data());
        cpu->GetRows(*prepared, ids, 4, got.data());
        EXPECT_TRUE(BitIdentical(got, want)) << IsaName(isa) << " n_in=" << n_in;
      }
    }
  }
}

// A weight in the lane layout handed to a backend without lane kernels is refused, not misread.
TEST(LaneLayoutTest, BackendsWithoutLaneKernelsRefuseLaneWeights) {
  for (GgmlType type : kLaneTypes) {
    testing::ExpectGenericRefuses(type, WeightLayout::kCpuLanes, "lane layout");
  }
}

// ---- Q4_K and Q6_K: rows interleaved 8 at a time (q4k_panels.h, q6k_panels.h) ----------------
// (Q3_K likewise, q3k_panels.h.)

int64_t Panels(int64_t n_out) { return (n_out + kPanelRows - 1) / kPanelRows; }

constexpr GgmlType kKPanelTypes[] = {GgmlType::kQ4_K, GgmlType::kQ6_K, GgmlType::kQ3_K};

TEST(Q4KPanelsTest, RoundTripsEveryRowAndLeavesTailRowsAsTheyWere) {
  std::mt19937 rng(15);
  for (GgmlType type : kKPanelTypes) {
    for (int64_t n_in : {256, 512, 2048}) {
      for (int64_t n_out : {3, 8, 13, 64, 70, 131}) {
        const std::vector<uint8_t> rows = RandomRows(rng, type, n_in, n_out);
        std::vector<uint8_t> panels(rows.size());
        RowsToPanels(type, rows.data(), panels.data(), n_in, n_out, 0, Panels(n_out));
        const size_t row_bytes = RowBytes(type, n_in).value();
        std::vector<uint8_t> row(row_bytes);
        for (int64_t r = 0; r < n_out; ++r) {
          RowFromPanels(type, panels.data(), n_in, n_out, r, row.data());
          ASSERT_EQ(0, std::memcmp(row.data(), rows.data() + r * row_bytes, row_bytes))
              << GgmlTypeName(type) << " n_in=" << n_in << " n_out=" << n_out << " row " << r;
        }
        const size_t grouped = row_bytes * static_cast<size_t>(n_out / 8 * 8);
        EXPECT_EQ(grouped == 0, panels == rows) << n_out << ": only full groups are rewritten";
        EXPECT_TRUE(std::equal(panels.begin() + grouped, panels.end(), rows.begin() + grouped));
      }
    }
  }
}

// Super-block b of rows 8g..8g+7: the 8 fp16 d, the 8 dmin, then (past the scales) 4 quant bytes
// of each row in turn.
TEST(Q4KPanelsTest, PutsSuperScalesAndQuantsInTheirLanes) {
  std::mt19937 rng(16);
  const int64_t n_in = 512, n_out = 16;
  const std::vector<uint8_t> rows = RandomRows(rng, GgmlType::kQ4_K, n_in, n_out);
  std::vector<uint8_t> panels(rows.size());
  RowsToPanels(GgmlType::kQ4_K, rows.data(), panels.data(), n_in, n_out, 0, 1);
  const size_t row_bytes = 2 * sizeof(BlockQ4_K);
  for (int64_t g = 0; g < 2; ++g) {
    for (int b = 0; b < 2; ++b) {
      const uint8_t* group = panels.data() + g * 8 * row_bytes + b * 8 * sizeof(BlockQ4_K);
      for (int i = 0; i < 8; ++i) {
        const auto* blk =
            reinterpret_cast<const BlockQ4_K*>(rows.data() + (8 * g + i) * row_bytes) + b;
        EXPECT_EQ(0, std::memcmp(group + 2 * i, &blk->d, 2));
        EXPECT_EQ(0, std::memcmp(group + 16 + 2 * i, &blk->dmin, 2));
        EXPECT_EQ(0, std::memcmp(group + 128 + 4 * i, blk->qs, 4));
        EXPECT_EQ(0, std::memcmp(group + 128 + 32 + 4 * i, blk->qs + 4, 4));
        EXPECT_EQ(0, std::memcmp(group + 128 + 8 * 32 + 4 * i, blk->qs + 32, 4));
      }
    }
  }
}

// PrepareWeight rewrites Q3_K, Q4_K and Q6_K where the table has a kernel for the layout (AVX2);
// the products agree with the GGUF kernels' up to float rounding (Q4_K's mins term and Q6_K's and
// Q3_K's offsets are summed in integers there),
// a token alone gives the bits it has in a batch, and row lookups are exact.
TEST(Q4KPanelsTest, PreparedWeightsMatchTheGgufKernels) {
  std::mt19937 rng(17);
  const CpuFeatures features = DetectCpuFeatures();
  for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512}) {
    if (!IsaSupported(isa, features)) continue;
    auto cpu = MakeCpu(isa);
    ASSERT_NE(cpu, nullptr);
    for (GgmlType type : kKPanelTypes) {
      const bool rewrites = KernelsFor(isa).matmul_packed[MatMulSlot(type)] != nullptr;
      for (int64_t n_in : {256, 2048}) {
        for (int64_t n_out : {37, 136}) {
          const std::vector<uint8_t> bytes = RandomRows(rng, type, n_in, n_out);
          const Weight raw{type, n_in, n_out, bytes.data()};
          std::vector<std::unique_ptr<Buffer>> storage;
          auto prepared = cpu->PrepareWeight(raw, storage);
          ASSERT_TRUE(prepared.ok()) << prepared.status();
          EXPECT_EQ(prepared->layout == WeightLayout::kCpuRowPanels, rewrites) << IsaName(isa);
          EXPECT_EQ(prepared->data != raw.data, rewrites) << IsaName(isa);
          for (int64_t n_tokens : {1, 5, 53}) {
            std::normal_distribution<float> normal(0.0f, 1.0f);
            std::vector<float> x(static_cast<size_t>(n_in * n_tokens));
            for (float& v : x) v = normal(rng);
            std::vector<float> want(static_cast<size_t>(n_out * n_tokens));
            std::vector<float> got(want.size());
            cpu->MatMul(raw, x.data(), n_tokens, want.data());
            cpu->MatMul(*prepared, x.data(), n_tokens, got.data());
            // The same integer products and scales; only the float steps' rounding differs, so
            // far below the type's bound (a misplaced lane or scale would be of order 1).
            EXPECT_LE(testing::Nmse(got.data(), want.data(), got.size()), 1e-10)
                << IsaName(isa) << " n_in=" << n_in << " T=" << n_tokens;
            if (!rewrites) {
              EXPECT_TRUE(BitIdentical(got, want)) << IsaName(isa);
            }
            for (int64_t t = 0; t < n_tokens; t += std::max<int64_t>(1, n_tokens - 1)) {
              std::vector<float> alone(static_cast<size_t>(n_out));
              cpu->MatMul(*prepared, x.data() + t * n_in, 1, alone.data());
              for (int64_t r = 0; r < n_out; ++r) {
                ASSERT_EQ(alone[r], got[t * n_out + r])
                    << IsaName(isa) << " token " << t << " row " << r;
              }
            }
          }
          const int32_t ids[] = {0, static_cast<int32_t>(n_out - 1), 5, 5, 9};
          std::vector<float> want(static_cast<size_t>(5 * n_in)), got(want.size());
          cpu->GetRows(raw, ids, 5, want.data());
          cpu->GetRows(*prepared, ids, 5, got.data());
          EXPECT_TRUE(BitIdentical(got, want)) << IsaName(isa) << " n_in=" << n_in;
        }
      }
    }
  }
}

// A call over any row range [r0, r1) gives the bits of the whole product: ranges that start and
// end inside a group of 8, single rows, the GGUF rows past the last group.
TEST(Q4KPanelsTest, AnyRowRangeGivesTheSameBits) {
  std::mt19937 rng(18);
  const CpuFeatures features = DetectCpuFeatures();
  for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512}) {
    if (!IsaSupported(isa, features)) continue;
    const KernelTable& table = KernelsFor(isa);
    for (GgmlType type : kKPanelTypes) {
      const MatMulFn fn = table.matmul_packed[MatMulSlot(type)];
      if (fn == nullptr) continue;
      const int64_t n_in = 512, n_out = 45;
      const std::vector<uint8_t> rows = RandomRows(rng, type, n_in, n_out);
      std::vector<uint8_t> panels(rows.size());
      RowsToPanels(type, rows.data(), panels.data(), n_in, n_out, 0, Panels(n_out));
      for (int64_t n_tokens : {1, 7}) {
        std::normal_distribution<float> normal(0.0f, 1.0f);
        std::vector<float> x(static_cast<size_t>(n_in * n_tokens));
        for (float& v : x) v = normal(rng);
        MatMulArgs a;
        a.type = type;
        a.w = panels.data();
        a.row_bytes = RowBytes(type, n_in).value();
        a.n_in = n_in;
        a.n_out = n_out;
        a.x8 = MakeX8Layout(n_in, X8Group(type));
        std::vector<uint8_t> xq(a.x8.bytes * n_tokens + 64);
        uint8_t* x8 = xq.data() + (64 - reinterpret_cast<uintptr_t>(xq.data()) % 64) % 64;
        for (int64_t t = 0; t < n_tokens; ++t) {
          table.quantize_x8(x.data() + t * n_in, a.x8, x8 + t * a.x8.bytes);
        }
        a.x = x8;
        a.x_stride = a.x8.bytes;
        a.n_tokens = n_tokens;
        std::vector<float> whole(static_cast<size_t>(n_out * n_tokens));
        a.y = whole.data();
        fn(a, 0, n_out);
        for (const std::vector<int64_t>& cuts :
             {std::vector<int64_t>{0, 1, 3, 8, 9, 17, 40, 41, 45},
              std::vector<int64_t>{0, 12, 20, 44, 45}}) {
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

TEST(Q4KPanelsTest, BackendsWithoutTheKernelRefuseQ4KPanels) {
  for (GgmlType type : kKPanelTypes) {
    testing::ExpectGenericRefuses(type, WeightLayout::kCpuRowPanels, "row-panel layout");
  }
}

}  // namespace
}  // namespace swarm::kernels::cpu
