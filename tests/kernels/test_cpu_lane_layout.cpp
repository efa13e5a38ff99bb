// The CPU backend's lane layout of Q4_0, Q8_0, Q4_1, Q5_1, Q5_0 and IQ4_NL weights (lane_layout.h)
// and its interleaved rows of K-quants and IQ4_XS (q4k_panels.h ... q2k_panels.h, iq4xs_panels.h):
// the rewrite is lossless, keeps the blocks (rows) past the last full group as they were, and a
// backend that rewrites its weights at PrepareWeight computes what it computes on the weights as
// stored (exactly, or within the type's bound where the kernels sum in another order), with every
// output's bits independent of the rows and tokens beside it.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "backend_conformance.h"
#include "cpu_test_util.h"
#include "kernels/block_lowbit.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/lane_layout.h"
#include "kernels/cpu/lane_layout_q5_0.h"
#include "kernels/cpu/q2k_panels.h"
#include "kernels/cpu/q4k_panels.h"
#include "kernels/cpu/q6k_panels.h"
#include "kernels/cpu/row_panels.h"
#include "kernels/quant_reference.h"

namespace swarm::kernels::cpu {
namespace {

using testing::BitIdentical;
using testing::RandomRows;

std::unique_ptr<CpuBackend> MakeCpu(Isa isa) { return testing::MakeCpu(isa, 2); }

constexpr GgmlType kLaneTypes[] = {GgmlType::kQ4_0, GgmlType::kQ8_0, GgmlType::kQ4_1,
                                   GgmlType::kQ5_1, GgmlType::kQ5_0, GgmlType::kIQ4_NL};

size_t BlockBytes(GgmlType type) { return RowBytes(type, 32).value(); }

TEST(LaneLayoutTest, OnlyTheLaneTypesHaveOne) {
  for (GgmlType type : kLaneTypes) EXPECT_TRUE(HasLaneLayout(type)) << GgmlTypeName(type);
  for (GgmlType type :
       {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ4_K, GgmlType::kQ5_K,
        GgmlType::kQ6_K, GgmlType::kQ2_K, GgmlType::kQ3_K, GgmlType::kIQ4_XS}) {
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
  for (GgmlType type : {GgmlType::kQ4_0, GgmlType::kQ8_0, GgmlType::kIQ4_NL}) {
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

// Q4_1 and Q5_1 (lane_layout_min.h): lane L holds block BlockOfLane(kX8LanesQ4_0, L): d, m,
// Q5_1's fifth bits reordered so that byte k's bit j is the bit of value 4j + k, the pieces.
TEST(LaneLayoutTest, PutsEachMinBlockInItsLane) {
  std::mt19937 rng(8);
  for (GgmlType type : {GgmlType::kQ4_1, GgmlType::kQ5_1}) {
    const bool q5 = type == GgmlType::kQ5_1;
    const std::vector<uint8_t> gguf = RandomRows(rng, type, 512, 1);
    std::vector<uint8_t> lanes(gguf.size());
    RowToLanes(type, gguf.data(), lanes.data(), 512);
    EXPECT_EQ(X8LaneOrder(type), kX8LanesQ4_0);
    const size_t qs = q5 ? 8 : 4, pieces = q5 ? 128 : 64;
    for (int lane = 0; lane < 16; ++lane) {
      const uint8_t* block = gguf.data() + BlockBytes(type) * BlockOfLane(kX8LanesQ4_0, lane);
      EXPECT_EQ(0, std::memcmp(lanes.data() + 2 * lane, block, 2)) << lane;           // d
      EXPECT_EQ(0, std::memcmp(lanes.data() + 32 + 2 * lane, block + 2, 2)) << lane;  // m
      for (int c = 0; c < 4; ++c) {
        EXPECT_EQ(0, std::memcmp(lanes.data() + pieces + 64 * c + 4 * lane, block + qs + 4 * c, 4))
            << GgmlTypeName(type) << " " << lane << " " << c;
      }
      if (!q5) continue;
      uint32_t qh, spread;
      std::memcpy(&qh, block + 4, 4);
      std::memcpy(&spread, lanes.data() + 64 + 4 * lane, 4);
      for (int v = 0; v < 32; ++v) {
        EXPECT_EQ((qh >> v) & 1, (spread >> (8 * (v % 4) + v / 4)) & 1) << lane << " " << v;
      }
    }
  }
}

// Q5_0: the scales in Q4_0's lanes; piece c's byte k of lane L gives the quants of values 4c + k
// and 16 + 4c + k of that lane's block as lane_layout_q5_0.h says.
TEST(LaneLayoutTest, PutsQ5_0BlocksAndTheirQuantsInTheirLanes) {
  std::mt19937 rng(8);
  const std::vector<uint8_t> gguf = RandomRows(rng, GgmlType::kQ5_0, 512, 1);
  std::vector<uint8_t> lanes(gguf.size());
  RowToLanes(GgmlType::kQ5_0, gguf.data(), lanes.data(), 512);
  for (int lane = 0; lane < 16; ++lane) {
    const uint8_t* block = gguf.data() + sizeof(BlockQ5_0) * BlockOfLane(kX8LanesQ4_0, lane);
    EXPECT_EQ(0, std::memcmp(lanes.data() + 2 * lane, block, 2)) << lane;  // d
    uint32_t qh;
    std::memcpy(&qh, block + 2, 4);
    const uint8_t* qs = block + 6;
    const uint8_t* h = lanes.data() + kQ5_0LaneBitsOffset + 4 * lane;
    for (int c = 0; c < 4; ++c) {
      const uint8_t* v = lanes.data() + kQ5_0LaneQuantsOffset + 64 * c + 4 * lane;
      for (int k = 0; k < 4; ++k) {
        const int e = 4 * c + k;
        const int low = (qs[e] & 0x0f) | ((qh >> e) & 1) << 4;
        const int high = (qs[e] >> 4) | ((qh >> (e + 16)) & 1) << 4;
        EXPECT_EQ(v[k] & 0x1f, low) << lane << " " << e;
        EXPECT_EQ((v[k] & 0xe0) >> 3 | ((h[k] >> (2 * c)) & 3), high) << lane << " " << e;
      }
    }
  }
}

// On every level this processor runs: PrepareWeight rewrites each lane type exactly where the
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

// ---- K-quants: rows interleaved 8 at a time (q2k_panels.h ... q6k_panels.h)
// -----------------------

int64_t Panels(int64_t n_out) { return (n_out + kPanelRows - 1) / kPanelRows; }

constexpr GgmlType kKPanelTypes[] = {GgmlType::kQ4_K, GgmlType::kQ5_K, GgmlType::kQ6_K,
                                     GgmlType::kQ2_K, GgmlType::kQ3_K, GgmlType::kIQ4_XS};

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

// Super-block b of rows 8g..8g+7 in Q2_K's panels: the 8 fp16 d, the 8 dmin, 4 scale bytes of each
// row per vector, then 4 quant bytes of each row in turn.
TEST(Q2KPanelsTest, PutsSuperScalesScalesAndQuantsInTheirLanes) {
  std::mt19937 rng(18);
  const int64_t n_in = 512, n_out = 16;
  const std::vector<uint8_t> rows = RandomRows(rng, GgmlType::kQ2_K, n_in, n_out);
  std::vector<uint8_t> panels(rows.size());
  RowsToPanels(GgmlType::kQ2_K, rows.data(), panels.data(), n_in, n_out, 0, 1);
  const size_t row_bytes = 2 * sizeof(BlockQ2_K);
  for (int64_t g = 0; g < 2; ++g) {
    for (int b = 0; b < 2; ++b) {
      const uint8_t* group = panels.data() + g * 8 * row_bytes + b * 8 * sizeof(BlockQ2_K);
      for (int i = 0; i < 8; ++i) {
        const auto* blk =
            reinterpret_cast<const BlockQ2_K*>(rows.data() + (8 * g + i) * row_bytes) + b;
        EXPECT_EQ(0, std::memcmp(group + 2 * i, &blk->d, 2));
        EXPECT_EQ(0, std::memcmp(group + 16 + 2 * i, &blk->dmin, 2));
        EXPECT_EQ(0, std::memcmp(group + 32 + 4 * i, blk->scales, 4));
        EXPECT_EQ(0, std::memcmp(group + 32 + 3 * 32 + 4 * i, blk->scales + 12, 4));
        EXPECT_EQ(0, std::memcmp(group + 160 + 4 * i, blk->qs, 4));
        EXPECT_EQ(0, std::memcmp(group + 160 + 32 + 4 * i, blk->qs + 4, 4));
        EXPECT_EQ(0, std::memcmp(group + 160 + 15 * 32 + 4 * i, blk->qs + 60, 4));
      }
    }
  }
}

// Super-block b of rows 8g..8g+7 in IQ4_XS's panels (iq4xs_panels.h): the 8 fp16 d, the scales'
// top 2 bits (16 bytes) and low 4 bits (32 bytes) in the places the header gives, then 4 quant
// bytes of each row in turn.
TEST(IQ4XSPanelsTest, PutsSuperScalesScalesAndQuantsInTheirLanes) {
  std::mt19937 rng(21);
  const int64_t n_in = 512, n_out = 16;
  const std::vector<uint8_t> rows = RandomRows(rng, GgmlType::kIQ4_XS, n_in, n_out);
  std::vector<uint8_t> panels(rows.size());
  RowsToPanels(GgmlType::kIQ4_XS, rows.data(), panels.data(), n_in, n_out, 0, 1);
  const size_t row_bytes = 2 * sizeof(BlockIQ4_XS);
  for (int64_t g = 0; g < 2; ++g) {
    for (int b = 0; b < 2; ++b) {
      const uint8_t* group = panels.data() + g * 8 * row_bytes + b * 8 * sizeof(BlockIQ4_XS);
      auto block = [&](int i) {
        return reinterpret_cast<const BlockIQ4_XS*>(rows.data() + (8 * g + i) * row_bytes) + b;
      };
      for (int i = 0; i < 8; ++i) {
        EXPECT_EQ(0, std::memcmp(group + 2 * i, &block(i)->d, 2));
        EXPECT_EQ(0, std::memcmp(group + 64 + 4 * i, block(i)->qs, 4));
        EXPECT_EQ(0, std::memcmp(group + 64 + 32 + 4 * i, block(i)->qs + 4, 4));
        EXPECT_EQ(0, std::memcmp(group + 64 + 31 * 32 + 4 * i, block(i)->qs + 124, 4));
      }
      for (int k = 0; k < 32; ++k) {
        const int i = 4 * (k / 16) + (k % 16) / 4, s = k % 4;
        EXPECT_EQ(group[32 + k] & 0x0f, IQ4_XSScale(*block(i), s) & 0x0f) << k;
        EXPECT_EQ(group[32 + k] >> 4, IQ4_XSScale(*block(i), 4 + s) & 0x0f) << k;
      }
      for (int m = 0; m < 16; ++m) {
        const int r = m / 4, s = m % 4;
        EXPECT_EQ(group[16 + m] & 3, IQ4_XSScale(*block(r), s) >> 4) << m;
        EXPECT_EQ((group[16 + m] >> 2) & 3, IQ4_XSScale(*block(r), 4 + s) >> 4) << m;
        EXPECT_EQ((group[16 + m] >> 4) & 3, IQ4_XSScale(*block(4 + r), s) >> 4) << m;
        EXPECT_EQ(group[16 + m] >> 6, IQ4_XSScale(*block(4 + r), 4 + s) >> 4) << m;
      }
    }
  }
}

// PrepareWeight rewrites the K-quants that have panels where the table has a kernel for the layout
// (AVX2); the products agree with the GGUF kernels' up to float rounding (Q4_K's mins term and
// Q6_K's and Q3_K's offsets are summed in integers there), a token alone gives the bits it has in a
// batch, and row lookups are exact.
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

// Q5_K prompts decode a group's values once per panel of tokens for rows up to 8192 values and
// read the layout directly past that: both agree with the GGUF kernels and with one token alone.
TEST(Q4KPanelsTest, Q5_KPromptsOverLongRowsMatchTheGgufKernels) {
  std::mt19937 rng(19);
  const CpuFeatures features = DetectCpuFeatures();
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    if (!IsaSupported(isa, features)) continue;
    auto cpu = MakeCpu(isa);
    ASSERT_NE(cpu, nullptr);
    for (int64_t n_in : {8192, 8448}) {
      const int64_t n_out = 19, n_tokens = 7;
      const std::vector<uint8_t> bytes = RandomRows(rng, GgmlType::kQ5_K, n_in, n_out);
      const Weight raw{GgmlType::kQ5_K, n_in, n_out, bytes.data()};
      std::vector<std::unique_ptr<Buffer>> storage;
      auto prepared = cpu->PrepareWeight(raw, storage);
      ASSERT_TRUE(prepared.ok()) << prepared.status();
      EXPECT_EQ(prepared->layout, WeightLayout::kCpuRowPanels) << IsaName(isa);
      std::normal_distribution<float> normal(0.0f, 1.0f);
      std::vector<float> x(static_cast<size_t>(n_in * n_tokens));
      for (float& v : x) v = normal(rng);
      std::vector<float> want(static_cast<size_t>(n_out * n_tokens)), got(want.size());
      cpu->MatMul(raw, x.data(), n_tokens, want.data());
      cpu->MatMul(*prepared, x.data(), n_tokens, got.data());
      EXPECT_LE(testing::Nmse(got.data(), want.data(), got.size()), 1e-10)
          << IsaName(isa) << " n_in=" << n_in;
      std::vector<float> alone(static_cast<size_t>(n_out));
      cpu->MatMul(*prepared, x.data() + 6 * n_in, 1, alone.data());
      EXPECT_TRUE(BitIdentical(alone, std::vector<float>(got.begin() + 6 * n_out, got.end())))
          << IsaName(isa) << " n_in=" << n_in;
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
