// Tests of the reference Q2_K, Q3_K and IQ4_XS code against values worked out from the block
// layouts by hand (independently of the decoders), error bounds on random data, and the integer dot
// products against the dequantized values. Bit-compatibility with llama.cpp is
// test_quant_llama_cpp_golden's.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/block_lowbit.h"
#include "kernels/quant_reference.h"
#include "support/nmse.h"

namespace swarm::kernels {
namespace {

constexpr GgmlType kLowBitTypes[] = {GgmlType::kQ2_K, GgmlType::kQ3_K, GgmlType::kIQ4_XS};

std::vector<uint8_t> Quantize(GgmlType type, const std::vector<float>& x) {
  std::vector<uint8_t> out(RowBytes(type, static_cast<int64_t>(x.size())).value());
  QuantizeRow(type, x.data(), out.data(), static_cast<int64_t>(x.size()));
  return out;
}

std::vector<float> Dequantize(GgmlType type, const void* data, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  DequantizeRow(type, data, out.data(), n);
  return out;
}

std::vector<float> RandomNormal(size_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

TEST(LowBitTypeTest, NamesSizesAndParsing) {
  EXPECT_EQ(GgmlTypeName(GgmlType::kQ2_K), "q2_K");
  EXPECT_EQ(GgmlTypeName(GgmlType::kQ3_K), "q3_K");
  EXPECT_EQ(GgmlTypeName(GgmlType::kIQ4_XS), "iq4_xs");
  EXPECT_EQ(RowBytes(GgmlType::kQ2_K, 512).value(), 168u);
  EXPECT_EQ(RowBytes(GgmlType::kQ3_K, 512).value(), 220u);
  EXPECT_EQ(RowBytes(GgmlType::kIQ4_XS, 512).value(), 272u);
  EXPECT_FALSE(RowBytes(GgmlType::kIQ4_XS, 32).ok());
  EXPECT_EQ(ParseGgmlType("Q3_K").value(), GgmlType::kQ3_K);
  EXPECT_EQ(ParseGgmlType("iq4_xs").value(), GgmlType::kIQ4_XS);
  EXPECT_EQ(static_cast<uint32_t>(GgmlType::kQ2_K), 10u);  // ggml's ids
  EXPECT_EQ(static_cast<uint32_t>(GgmlType::kQ3_K), 11u);
  EXPECT_EQ(static_cast<uint32_t>(GgmlType::kIQ4_XS), 23u);
  for (GgmlType t : kLowBitTypes) EXPECT_EQ(VecDotType(t), GgmlType::kQ8_K);
}

// Each 2-bit byte 0xE4 holds 0, 1, 2, 3 in its bit pairs: element e of a 128-element half gets
// the value of its 32-element quarter, (e % 128) / 32.
TEST(LowBitDequantizeTest, Q2_KHandBuiltBlock) {
  BlockQ2_K b;
  b.d = 0x3800;     // 0.5
  b.dmin = 0x3400;  // 0.25
  for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  std::memset(b.qs, 0xE4, sizeof b.qs);
  const std::vector<float> y = Dequantize(GgmlType::kQ2_K, &b, kQK_K);
  for (int e = 0; e < kQK_K; ++e) {
    const int j = e / 16;
    EXPECT_EQ(y[e], 0.5f * j * ((e % 128) / 32) - 0.25f * (15 - j)) << e;
  }
}

// Scales: low nibbles 1 (sub-blocks 0-7) and 2 (8-15) from bytes 0x21; the high bit pairs of bytes
// 8-11 (0xE4) give sub-blocks 4j..4j+3 the high part j. hmask 0x0F: elements 0-127 have their high
// bit (value q), elements 128-255 do not (value q - 4).
TEST(LowBitDequantizeTest, Q3_KHandBuiltBlock) {
  BlockQ3_K b;
  b.d = 0x3800;  // 0.5
  std::memset(b.scales, 0x21, 8);
  std::memset(b.scales + 8, 0xE4, 4);
  std::memset(b.hmask, 0x0F, sizeof b.hmask);
  std::memset(b.qs, 0xE4, sizeof b.qs);
  const int kScale[16] = {1, 1, 1, 1, 17, 17, 17, 17, 34, 34, 34, 34, 50, 50, 50, 50};
  const std::vector<float> y = Dequantize(GgmlType::kQ3_K, &b, kQK_K);
  for (int e = 0; e < kQK_K; ++e) {
    const int q = (e % 128) / 32 - (e < 128 ? 0 : 4);
    EXPECT_EQ(y[e], 0.5f * (kScale[e / 16] - 32) * q) << e;
  }
}

// Sub-block j has scale j + 32 (low nibbles j from scales_l, high bits 2 from scales_h 0xAAAA), so
// d * (scale - 32) = 0.5 * j; its first 16 elements take levels 0..15, the next 16 levels 15..0.
TEST(LowBitDequantizeTest, IQ4_XSHandBuiltBlock) {
  const int kLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                           1,    13,   25,  38,  53,  69,  89,  113};
  BlockIQ4_XS b;
  b.d = 0x3800;  // 0.5
  b.scales_h = 0xAAAA;
  const uint8_t scales_l[4] = {0x10, 0x32, 0x54, 0x76};
  std::memcpy(b.scales_l, scales_l, 4);
  for (int s = 0; s < 8; ++s) {
    for (int j = 0; j < 16; ++j) b.qs[16 * s + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  }
  const std::vector<float> y = Dequantize(GgmlType::kIQ4_XS, &b, kQK_K);
  for (int e = 0; e < kQK_K; ++e) {
    const int s = e / 32;
    const int level = e % 32 < 16 ? kLevels[e % 32] : kLevels[15 - (e % 32 - 16)];
    EXPECT_EQ(y[e], 0.5f * s * level) << e;
  }
}

// Against activations that are all 1 (d = 2), the integer dot product is twice the sum of the
// dequantized weights; with these hand-built blocks every partial sum is exact.
TEST(LowBitDotTest, VecDotWithOnesIsTwiceTheSum) {
  BlockQ8_K a{};
  a.d = 2.0f;
  for (int e = 0; e < kQK_K; ++e) a.qs[e] = 1;
  for (int j = 0; j < 16; ++j) a.bsums[j] = 16;
  for (GgmlType type : kLowBitTypes) {
    SCOPED_TRACE(GgmlTypeName(type));
    // A block quantized from small integers: its scales and values stay on coarse binary grids.
    std::vector<float> x(kQK_K);
    for (int e = 0; e < kQK_K; ++e) x[e] = static_cast<float>((e * 7) % 9) - 4.0f;
    const std::vector<uint8_t> w = Quantize(type, x);
    const std::vector<float> wd = Dequantize(type, w.data(), kQK_K);
    double sum = 0;
    for (float v : wd) sum += v;
    EXPECT_NEAR(VecDotQuantizedReference(type, w.data(), &a, kQK_K), 2.0 * sum,
                1e-5 * std::fabs(2.0 * sum) + 1e-3);
  }
}

// Relative error on Gaussian data, without importance weights: measured 8.6-8.9% (Q2_K), 2.2-2.3%
// (Q3_K) and 0.56-0.61% (IQ4_XS) of the variance over these seeds; the bounds are ~1.5x that. More
// bits must give less error.
TEST(LowBitRoundTripTest, NmseOnGaussianData) {
  for (uint32_t seed = 10; seed < 14; ++seed) {
    const std::vector<float> x = RandomNormal(16 * kQK_K, seed, 0.02f);
    const int64_t n = static_cast<int64_t>(x.size());
    auto nmse = [&](GgmlType t) {
      return test_support::Nmse(Dequantize(t, Quantize(t, x).data(), n), x);
    };
    const double q2k = nmse(GgmlType::kQ2_K);
    const double q3k = nmse(GgmlType::kQ3_K);
    const double iq4 = nmse(GgmlType::kIQ4_XS);
    EXPECT_LT(q2k, 0.13) << seed;
    EXPECT_LT(q3k, 0.035) << seed;
    EXPECT_LT(iq4, 0.009) << seed;
    EXPECT_LT(q3k, q2k) << seed;
    EXPECT_LT(iq4, q3k) << seed;
  }
}

// An all-zero block quantizes to zeros and back.
TEST(LowBitRoundTripTest, ZeroBlockStaysZero) {
  const std::vector<float> x(2 * kQK_K, 0.0f);
  for (GgmlType type : kLowBitTypes) {
    SCOPED_TRACE(GgmlTypeName(type));
    const std::vector<float> y = Dequantize(type, Quantize(type, x).data(), 2 * kQK_K);
    for (float v : y) EXPECT_EQ(v, 0.0f);
  }
}

// The integer dot product equals the dot product of the dequantized rows up to float rounding.
TEST(LowBitDotTest, VecDotQuantizedMatchesDequantized) {
  for (GgmlType type : kLowBitTypes) {
    for (uint32_t seed = 0; seed < 4; ++seed) {
      constexpr int64_t n = 1024;
      const std::vector<float> w = RandomNormal(n, 100 + seed);
      std::vector<float> x = RandomNormal(n, 200 + seed, 3.0f);
      if (seed == 3) std::fill(x.begin(), x.begin() + 256, 0.0f);  // an all-zero block
      const std::vector<uint8_t> wq = Quantize(type, w);
      const std::vector<uint8_t> xq = Quantize(GgmlType::kQ8_K, x);
      const std::vector<float> wd = Dequantize(type, wq.data(), n);
      const std::vector<float> xd = Dequantize(GgmlType::kQ8_K, xq.data(), n);
      double exact = 0, magnitude = 0;
      for (int64_t i = 0; i < n; ++i) {
        exact += static_cast<double>(wd[i]) * xd[i];
        magnitude += std::fabs(static_cast<double>(wd[i]) * xd[i]);
      }
      SCOPED_TRACE(::testing::Message() << GgmlTypeName(type) << " seed=" << seed);
      EXPECT_NEAR(VecDotQuantizedReference(type, wq.data(), xq.data(), n), exact, 1e-5 * magnitude);
      EXPECT_NEAR(DotRowReference(type, wq.data(), x.data(), n),
                  DotRowReference(GgmlType::kF32, wd.data(), x.data(), n), 1e-5 * magnitude);
    }
  }
}

}  // namespace
}  // namespace swarm::kernels
