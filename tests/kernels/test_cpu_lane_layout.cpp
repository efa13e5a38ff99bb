// The CPU backend's lane layout of Q4_0 and Q8_0 weights (lane_layout.h): the rewrite is lossless,
// keeps the blocks past the last full group as they were, and a backend that rewrites its weights
// at PrepareWeight computes what it computes on the weights as stored (exactly, or within the
// type's bound where the kernels sum in another order).
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

constexpr GgmlType kLaneTypes[] = {GgmlType::kQ4_0, GgmlType::kQ8_0};

size_t BlockBytes(GgmlType type) {
  return type == GgmlType::kQ8_0 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0);
}

TEST(LaneLayoutTest, OnlyQ4_0AndQ8_0HaveOne) {
  for (GgmlType type : kLaneTypes) EXPECT_TRUE(HasLaneLayout(type)) << GgmlTypeName(type);
  for (GgmlType type :
       {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ4_K, GgmlType::kQ6_K}) {
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

}  // namespace
}  // namespace swarm::kernels::cpu
