// The CPU backend's lane layout of Q4_0 weights (lane_layout.h): the rewrite is lossless, keeps the
// blocks past the last full group as they were, and a backend that rewrites its weights at
// PrepareWeight computes exactly what it computes on the weights as stored.
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
#include "kernels/quant_reference.h"

namespace swarm::kernels::cpu {
namespace {

using testing::BitIdentical;
using testing::RandomRows;

std::unique_ptr<CpuBackend> MakeCpu(Isa isa) { return testing::MakeCpu(isa, 2); }

TEST(LaneLayoutTest, OnlyQ4_0HasOne) {
  EXPECT_TRUE(HasLaneLayout(GgmlType::kQ4_0));
  for (GgmlType type : {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ8_0,
                        GgmlType::kQ4_K, GgmlType::kQ6_K}) {
    EXPECT_FALSE(HasLaneLayout(type)) << GgmlTypeName(type);
  }
}

TEST(LaneLayoutTest, RoundTripsAndLeavesTailBlocksAsTheyWere) {
  std::mt19937 rng(5);
  for (int64_t n_in : {32, 96, 512, 544, 1088, 2048}) {
    const std::vector<uint8_t> gguf = RandomRows(rng, GgmlType::kQ4_0, n_in, 1);
    std::vector<uint8_t> lanes(gguf.size()), back(gguf.size());
    RowToLanes(GgmlType::kQ4_0, gguf.data(), lanes.data(), n_in);
    RowFromLanes(GgmlType::kQ4_0, lanes.data(), back.data(), n_in);
    EXPECT_EQ(back, gguf) << n_in;
    const size_t grouped = sizeof(BlockQ4_0) * 16 * static_cast<size_t>(n_in / 512);
    EXPECT_EQ(grouped == 0, lanes == gguf) << n_in << ": only full groups are rewritten";
    EXPECT_TRUE(std::equal(lanes.begin() + grouped, lanes.end(), gguf.begin() + grouped)) << n_in;
  }
}

// Lane L of a group holds block BlockOfLane(kX8LanesQ4_0, L): its scale first, then its pieces.
TEST(LaneLayoutTest, PutsEachBlockInItsLane) {
  std::mt19937 rng(6);
  const std::vector<uint8_t> gguf = RandomRows(rng, GgmlType::kQ4_0, 512, 1);
  std::vector<uint8_t> lanes(gguf.size());
  RowToLanes(GgmlType::kQ4_0, gguf.data(), lanes.data(), 512);
  const auto* blocks = reinterpret_cast<const BlockQ4_0*>(gguf.data());
  for (int lane = 0; lane < 16; ++lane) {
    const BlockQ4_0& b = blocks[BlockOfLane(kX8LanesQ4_0, lane)];
    uint16_t d;
    std::memcpy(&d, lanes.data() + 2 * lane, 2);
    EXPECT_EQ(d, b.d) << lane;
    for (int c = 0; c < 4; ++c) {
      EXPECT_EQ(0, std::memcmp(lanes.data() + 32 + 64 * c + 4 * lane, b.qs + 4 * c, 4))
          << lane << " " << c;
    }
  }
}

// On every level this processor runs: PrepareWeight rewrites Q4_0 exactly where the kernel table
// has a lane kernel, and row lookups give the same bits either way. Products agree bit for bit on
// AVX-512, whose kernel for GGUF blocks shuffles them into the same lanes; on AVX2, whose GGUF
// kernel sums block by block, within the Q4_0 bound of the reference.
TEST(LaneLayoutTest, PreparedWeightsComputeTheSameBits) {
  std::mt19937 rng(7);
  const CpuFeatures features = DetectCpuFeatures();
  for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512}) {
    if (!IsaSupported(isa, features)) continue;
    auto cpu = MakeCpu(isa);
    ASSERT_NE(cpu, nullptr);
    const bool rewrites = KernelsFor(isa).matmul_packed[MatMulSlot(GgmlType::kQ4_0)] != nullptr;
    for (int64_t n_in : {512, 544, 1088, 2048}) {
      const int64_t n_out = 37;
      const std::vector<uint8_t> bytes = RandomRows(rng, GgmlType::kQ4_0, n_in, n_out);
      const Weight raw{GgmlType::kQ4_0, n_in, n_out, bytes.data()};
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
          EXPECT_TRUE(BitIdentical(got, want))
              << IsaName(isa) << " n_in=" << n_in << " T=" << n_tokens;
        } else {
          EXPECT_LE(testing::Nmse(got.data(), want.data(), got.size()),
                    testing::DefaultNmseBound(testing::Op::kMatMul, GgmlType::kQ4_0))
              << IsaName(isa) << " n_in=" << n_in << " T=" << n_tokens;
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

// A weight in the lane layout handed to a backend without lane kernels is refused, not misread.
TEST(LaneLayoutTest, BackendsWithoutLaneKernelsRefuseLaneWeights) {
  testing::ExpectGenericRefuses(GgmlType::kQ4_0, WeightLayout::kCpuLanes, "lane layout");
}

}  // namespace
}  // namespace swarm::kernels::cpu
