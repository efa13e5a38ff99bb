// The CUDA kernels' dequantizers (src/kernels/cuda/dequantize.cuh: which thread decodes which
// elements of a block, nibble order, scale unpacking) run on the host against quant_reference.cpp,
// bit for bit, for every weight type. Needs a CUDA build but no GPU, so the riskiest part of the
// GPU kernels is checked on every CI machine with the toolkit.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "kernels/ggml_type.h"
#include "kernels/quant_reference.h"
#include "portable_inputs.h"
#if SWARM_HAVE_CUDA
#include "kernels/cuda/dequantize_check.cuh"
#endif

namespace swarm::kernels {
namespace {

#if SWARM_HAVE_CUDA

TEST(CudaDequantizeLayout, MatchesTheReferenceBitForBit) {
  const GgmlType types[] = {GgmlType::kF32,  GgmlType::kF16,    GgmlType::kBF16, GgmlType::kQ8_0,
                            GgmlType::kQ4_0, GgmlType::kQ4_K,   GgmlType::kQ6_K, GgmlType::kQ2_K,
                            GgmlType::kQ3_K, GgmlType::kIQ4_XS, GgmlType::kQ4_1, GgmlType::kQ5_0,
                            GgmlType::kQ5_1, GgmlType::kIQ4_NL, GgmlType::kQ5_K};
  for (GgmlType type : types) {
    const bool k_quant = GetTypeTraits(type).value().block_size == kQK_K;
    std::vector<int64_t> lengths = {k_quant ? 256 : 32, k_quant ? 1024 : 96};
    if (type == GgmlType::kF32 || type == GgmlType::kF16 || type == GgmlType::kBF16) {
      lengths.push_back(66);  // not a multiple of 4: one-element chunks
      lengths.push_back(1);
    }
    for (int64_t n : lengths) {
      for (auto kind : {testing::InputKind::kNormal, testing::InputKind::kOutliers}) {
        std::vector<float> x = testing::MakeInput(kind, (n + 255) / 256 * 256, 7);
        x.resize(static_cast<size_t>(n));
        std::vector<uint8_t> row(RowBytes(type, n).value());
        QuantizeRow(type, x.data(), row.data(), n);
        std::vector<float> expected(static_cast<size_t>(n)), actual(static_cast<size_t>(n), -1.0f);
        DequantizeRow(type, row.data(), expected.data(), n);
        ASSERT_TRUE(
            gpu::DequantizeRowOnHost(static_cast<gpu::WType>(type), row.data(), n, actual.data()));
        EXPECT_EQ(actual, expected) << GgmlTypeName(type) << " n=" << n;
      }
    }
  }
}

TEST(CudaDequantizeLayout, RefusesWhatTheKernelsDoNotTake) {
  std::vector<uint8_t> row(512);
  std::vector<float> out(256);
  EXPECT_FALSE(gpu::DequantizeRowOnHost(gpu::WType::kQ4_K, row.data(), 128, out.data()));
  EXPECT_FALSE(gpu::DequantizeRowOnHost(static_cast<gpu::WType>(15), row.data(), 256, out.data()));
  EXPECT_FALSE(gpu::DequantizeRowOnHost(gpu::WType::kQ8_0, row.data(), 0, out.data()));
}

#else

TEST(CudaDequantizeLayout, Skipped) { GTEST_SKIP() << "this build has no CUDA backend"; }

#endif

}  // namespace
}  // namespace swarm::kernels
