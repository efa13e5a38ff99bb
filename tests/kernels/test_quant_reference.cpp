// Tests of the reference quantization against values worked out independently: hand-packed blocks
// whose dequantized values follow from the block layout, golden bytes derived from the algorithms
// on inputs where every intermediate is exact, and error bounds on random data.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "base/half.h"
#include "kernels/quant_reference.h"
#include "support/nmse.h"

namespace swarm::kernels {
namespace {

constexpr GgmlType kWeightTypes[] = {GgmlType::kF32,  GgmlType::kF16,    GgmlType::kBF16,
                                     GgmlType::kQ8_0, GgmlType::kQ4_0,   GgmlType::kQ4_K,
                                     GgmlType::kQ6_K, GgmlType::kQ4_1,   GgmlType::kQ5_0,
                                     GgmlType::kQ5_1, GgmlType::kIQ4_NL, GgmlType::kQ5_K};

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

// ---- dequantization of hand-built blocks --------------------------------------------------------

TEST(DequantizeTest, Q8_0HandBuiltBlock) {
  BlockQ8_0 b;
  b.d = 0x3800;  // 0.5
  for (int j = 0; j < kQK8_0; ++j) b.qs[j] = static_cast<int8_t>(j - 16);
  b.qs[5] = -3;
  b.qs[6] = 127;
  b.qs[7] = -128;
  const std::vector<float> y = Dequantize(GgmlType::kQ8_0, &b, kQK8_0);
  EXPECT_EQ(y[0], -8.0f);
  EXPECT_EQ(y[5], -1.5f);
  EXPECT_EQ(y[6], 63.5f);
  EXPECT_EQ(y[7], -64.0f);
  EXPECT_EQ(y[16], 0.0f);
  EXPECT_EQ(y[31], 7.5f);
}

TEST(DequantizeTest, Q4_0HandBuiltBlock) {
  BlockQ4_0 b;
  b.d = 0x3400;  // 0.25
  // Byte j: low nibble j is element j, high nibble (15 - j) is element j + 16.
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const std::vector<float> y = Dequantize(GgmlType::kQ4_0, &b, kQK4_0);
  EXPECT_EQ(y[0], -2.0f);  // nibble 0 -> -8 * d
  EXPECT_EQ(y[8], 0.0f);   // nibble 8 -> 0
  EXPECT_EQ(y[15], 1.75f);
  EXPECT_EQ(y[16], 1.75f);  // high nibble of byte 0 is 15
  EXPECT_EQ(y[31], -2.0f);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j - 8) * 0.25f);
    EXPECT_EQ(y[16 + j], (7 - j) * 0.25f);
  }
}

// 6-bit scales sc = {1, 2, 3, 63, 10, 33, 47, 5} and mins m = {0, 1, 62, 7, 63, 20, 40, 9}, packed
// by hand: bytes 0-3 hold sc[0..3] plus the top 2 bits of sc[4..7] in bits 6-7; bytes 4-7 hold
// m[0..3] plus the top 2 bits of m[4..7]; bytes 8-11 hold the low nibbles of sc[4..7] (low) and
// m[4..7] (high).
//   byte0 = 1 | (10>>4)<<6 = 0x01     byte4 = 0 | (63>>4)<<6 = 0xC0   byte8  = 0xA | 0xF<<4 = 0xFA
//   byte1 = 2 | (33>>4)<<6 = 0x82     byte5 = 1 | (20>>4)<<6 = 0x41   byte9  = 0x1 | 0x4<<4 = 0x41
//   byte2 = 3 | (47>>4)<<6 = 0x83     byte6 = 62 | (40>>4)<<6 = 0xBE  byte10 = 0xF | 0x8<<4 = 0x8F
//   byte3 = 63 | (5>>4)<<6 = 0x3F     byte7 = 7 | (9>>4)<<6 = 0x07    byte11 = 0x5 | 0x9<<4 = 0x95
constexpr uint8_t kHandQ4KScales[12] = {0x01, 0x82, 0x83, 0x3F, 0xC0, 0x41,
                                        0xBE, 0x07, 0xFA, 0x41, 0x8F, 0x95};
constexpr int kHandQ4KSc[8] = {1, 2, 3, 63, 10, 33, 47, 5};
constexpr int kHandQ4KMin[8] = {0, 1, 62, 7, 63, 20, 40, 9};

TEST(DequantizeTest, Q4_KHandBuiltBlock) {
  BlockQ4_K b;
  b.d = 0x3800;     // 0.5
  b.dmin = 0x3400;  // 0.25
  std::memcpy(b.scales, kHandQ4KScales, sizeof b.scales);
  // Element e of sub-block s = e / 32 lives in byte 32 * (s / 2) + e % 32: the low nibble for even
  // sub-blocks, the high nibble for odd ones.
  auto quant = [](int e) { return (e * 7 + 3) % 16; };
  std::memset(b.qs, 0, sizeof b.qs);
  for (int e = 0; e < kQK_K; ++e) {
    const int s = e / 32;
    b.qs[32 * (s / 2) + e % 32] |= static_cast<uint8_t>(quant(e) << (s % 2 == 0 ? 0 : 4));
  }
  const std::vector<float> y = Dequantize(GgmlType::kQ4_K, &b, kQK_K);
  for (int e = 0; e < kQK_K; ++e) {
    const int s = e / 32;
    // Every term is a small multiple of 0.25: exact in float.
    const float expected = 0.5f * kHandQ4KSc[s] * quant(e) - 0.25f * kHandQ4KMin[s];
    ASSERT_EQ(y[e], expected) << "element " << e;
  }
  // Spot checks worked out fully by hand: element 0: q = 3, sub-block 0 (sc 1, m 0) -> 1.5;
  // element 100: q = 703 % 16 = 15, sub-block 3 (sc 63, m 7) -> 0.5*63*15 - 1.75 = 470.75.
  EXPECT_EQ(y[0], 1.5f);
  EXPECT_EQ(y[100], 470.75f);
  // element 255: q = 1788 % 16 = 12, sub-block 7 (sc 5, m 9) -> 30 - 2.25 = 27.75.
  EXPECT_EQ(y[255], 27.75f);
}

TEST(DequantizeTest, Q4_1HandBuiltBlock) {
  BlockQ4_1 b;
  b.d = 0x3800;  // 0.5
  b.m = 0xC000;  // -2
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const std::vector<float> y = Dequantize(GgmlType::kQ4_1, &b, kQK4_1);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.5f * j - 2.0f);
    EXPECT_EQ(y[16 + j], 0.5f * (15 - j) - 2.0f);
  }
}

TEST(DequantizeTest, Q5_0HandBuiltBlock) {
  BlockQ5_0 b;
  b.d = 0x3400;  // 0.25
  // Low nibbles as Q4_0; fifth bits: bit e of the little-endian word qh. Bits set for elements
  // 0, 9, 16 and 31: qh = 0x80010201.
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const uint8_t qh[4] = {0x01, 0x02, 0x01, 0x80};
  std::memcpy(b.qh, qh, 4);
  const std::vector<float> y = Dequantize(GgmlType::kQ5_0, &b, kQK5_0);
  EXPECT_EQ(y[0], 0.0f);         // 0 | 16 -> 0
  EXPECT_EQ(y[1], -15 * 0.25f);  // 1 -> -15
  EXPECT_EQ(y[9], 9 * 0.25f);    // 9 | 16 -> 25 -> +9
  EXPECT_EQ(y[15], -1 * 0.25f);  // 15 -> -1
  EXPECT_EQ(y[16], 15 * 0.25f);  // 15 | 16 -> 31 -> +15
  EXPECT_EQ(y[17], -2 * 0.25f);  // 14 -> -2
  EXPECT_EQ(y[31], 0.0f);        // 0 | 16 -> 0
}

TEST(DequantizeTest, Q5_1HandBuiltBlock) {
  BlockQ5_1 b;
  b.d = 0x3400;  // 0.25
  b.m = 0xbc00;  // -1
  // Quants as Q5_0's (fifth bits of elements 0, 9, 16 and 31 set); x = d * q + m.
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const uint8_t qh[4] = {0x01, 0x02, 0x01, 0x80};
  std::memcpy(b.qh, qh, 4);
  const std::vector<float> y = Dequantize(GgmlType::kQ5_1, &b, kQK5_1);
  EXPECT_EQ(y[0], 3.0f);    // 0 | 16 -> 16 * 0.25 - 1
  EXPECT_EQ(y[1], -0.75f);  // 1
  EXPECT_EQ(y[9], 5.25f);   // 9 | 16 -> 25
  EXPECT_EQ(y[16], 6.75f);  // 15 | 16 -> 31
  EXPECT_EQ(y[17], 2.5f);   // 14
  EXPECT_EQ(y[31], 3.0f);   // 0 | 16
}

TEST(DequantizeTest, IQ4_NLHandBuiltBlock) {
  BlockIQ4_NL b;
  b.d = 0x3800;  // 0.5
  // Nibbles as Q4_0's, each an index into the 16 levels -127 ... 113.
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const std::vector<float> y = Dequantize(GgmlType::kIQ4_NL, &b, kQK4_NL);
  EXPECT_EQ(y[0], -63.5f);  // level 0: -127
  EXPECT_EQ(y[7], -5.0f);   // level 7: -10
  EXPECT_EQ(y[8], 0.5f);    // level 8: 1
  EXPECT_EQ(y[16], 56.5f);  // level 15: 113
  EXPECT_EQ(y[31], -63.5f);
  // A block of zeros quantizes to scale 0 (every element dequantizes to 0).
  const std::vector<float> zeros(kQK4_NL, 0.0f);
  for (float v : Dequantize(GgmlType::kIQ4_NL, Quantize(GgmlType::kIQ4_NL, zeros).data(), kQK4_NL))
    EXPECT_EQ(v, 0.0f);
}

TEST(DequantizeTest, Q5_KHandBuiltBlock) {
  BlockQ5_K b;
  b.d = 0x3800;     // 0.5
  b.dmin = 0x3400;  // 0.25
  std::memcpy(b.scales, kHandQ4KScales, sizeof b.scales);
  // As Q4_K for the low 4 bits; the fifth bit of element e is bit e / 32 of qh[e % 32].
  auto quant = [](int e) { return (e * 11 + 5) % 32; };
  std::memset(b.qs, 0, sizeof b.qs);
  std::memset(b.qh, 0, sizeof b.qh);
  for (int e = 0; e < kQK_K; ++e) {
    const int s = e / 32;
    b.qs[32 * (s / 2) + e % 32] |= static_cast<uint8_t>((quant(e) & 15) << (s % 2 == 0 ? 0 : 4));
    b.qh[e % 32] |= static_cast<uint8_t>((quant(e) >> 4) << s);
  }
  const std::vector<float> y = Dequantize(GgmlType::kQ5_K, &b, kQK_K);
  for (int e = 0; e < kQK_K; ++e) {
    const int s = e / 32;
    const float expected = 0.5f * kHandQ4KSc[s] * quant(e) - 0.25f * kHandQ4KMin[s];
    ASSERT_EQ(y[e], expected) << "element " << e;
  }
  // element 100: q = 1105 % 32 = 17, sub-block 3 (sc 63, m 7) -> 0.5*63*17 - 1.75 = 533.75.
  EXPECT_EQ(y[100], 533.75f);
}

TEST(DequantizeTest, Q6_KConstantPatternByHand) {
  BlockQ6_K b;
  std::memset(b.ql, 0x21, sizeof b.ql);  // low nibble 1, high nibble 2
  std::memset(b.qh, 0xE4, sizeof b.qh);  // bit pairs (low to high): 0, 1, 2, 3
  for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<int8_t>(j % 2 == 0 ? 2 : -3);
  b.d = 0x3000;  // 0.125
  // Within each 128 elements, for l < 32:
  //   l      : low nibble of ql[l]      (1) | pair 0 (0) << 4 = 1  -> 1 - 32  = -31
  //   l + 32 : low nibble of ql[l + 32] (1) | pair 1 (1) << 4 = 17 -> 17 - 32 = -15
  //   l + 64 : high nibble of ql[l]     (2) | pair 2 (2) << 4 = 34 -> 34 - 32 = 2
  //   l + 96 : high nibble of ql[l + 32](2) | pair 3 (3) << 4 = 50 -> 50 - 32 = 18
  const int q_of_quarter[4] = {-31, -15, 2, 18};
  const std::vector<float> y = Dequantize(GgmlType::kQ6_K, &b, kQK_K);
  for (int e = 0; e < kQK_K; ++e) {
    const int scale = (e / 16) % 2 == 0 ? 2 : -3;
    ASSERT_EQ(y[e], 0.125f * scale * q_of_quarter[(e % 128) / 32]) << "element " << e;
  }
  EXPECT_EQ(y[0], -7.75f);    // 0.125 * 2 * -31
  EXPECT_EQ(y[16], 11.625f);  // 0.125 * -3 * -31
  EXPECT_EQ(y[200], 0.5f);    // e % 128 = 72 -> 2; sub-block 12 -> scale 2
}

TEST(DequantizeTest, Q8_KUsesFloatScale) {
  BlockQ8_K b{};
  b.d = 0.1f;
  b.qs[0] = -128;
  b.qs[255] = 7;
  const std::vector<float> y = Dequantize(GgmlType::kQ8_K, &b, kQK_K);
  EXPECT_EQ(y[0], 0.1f * -128);
  EXPECT_EQ(y[255], 0.1f * 7);
  EXPECT_EQ(y[1], 0.0f);
}

TEST(DequantizeTest, FloatTypes) {
  const uint16_t halves[] = {0x3C00, 0xC000, 0x3555, 0x0001, 0x7BFF};
  const std::vector<float> h = Dequantize(GgmlType::kF16, halves, 5);
  EXPECT_EQ(h[0], 1.0f);
  EXPECT_EQ(h[1], -2.0f);
  EXPECT_EQ(h[2], 0.333251953125f);
  EXPECT_EQ(h[3], std::ldexp(1.0f, -24));
  EXPECT_EQ(h[4], 65504.0f);
  const uint16_t bf[] = {0x3F80, 0x4049, 0xC2F7};
  const std::vector<float> b = Dequantize(GgmlType::kBF16, bf, 3);
  EXPECT_EQ(b[0], 1.0f);
  EXPECT_EQ(b[1], 3.140625f);
  EXPECT_EQ(b[2], -123.5f);
  const float f[] = {1.25f, -7.0f};
  EXPECT_EQ(Dequantize(GgmlType::kF32, f, 2), std::vector<float>({1.25f, -7.0f}));
}

// ---- exact rounding of the float types
// -----------------------------------------------------------

TEST(QuantizeTest, F16RoundsToNearestEven) {
  const std::vector<float> x = {
      1.0f,
      1.0f + std::ldexp(1.0f, -11),      // halfway between 0x3C00 and 0x3C01: even wins
      1.0f + 3 * std::ldexp(1.0f, -11),  // halfway between 0x3C01 and 0x3C02: even wins
      1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20),  // just above halfway
      65504.0f,
      65519.0f,  // below the halfway point to 65536: stays finite
      65520.0f,  // halfway to the next (infinite) step: infinity
      std::ldexp(1.0f, -24),
      std::ldexp(1.0f, -25),      // halfway between 0 and the smallest subnormal: zero
      3 * std::ldexp(1.0f, -25),  // halfway between subnormals 1 and 2: 2
      -0.0f,
      -1.5f};
  const std::vector<uint8_t> bytes = Quantize(GgmlType::kF16, x);
  std::vector<uint16_t> h(x.size());
  std::memcpy(h.data(), bytes.data(), bytes.size());
  EXPECT_EQ(h, std::vector<uint16_t>({0x3C00, 0x3C00, 0x3C02, 0x3C01, 0x7BFF, 0x7BFF, 0x7C00,
                                      0x0001, 0x0000, 0x0002, 0x8000, 0xBE00}));
}

TEST(QuantizeTest, Bf16RoundsToNearestEven) {
  const std::vector<float> x = {1.0f + std::ldexp(1.0f, -8), 1.0f + 3 * std::ldexp(1.0f, -8),
                                1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20), -2.0f,
                                std::numeric_limits<float>::infinity()};
  const std::vector<uint8_t> bytes = Quantize(GgmlType::kBF16, x);
  std::vector<uint16_t> b(x.size());
  std::memcpy(b.data(), bytes.data(), bytes.size());
  EXPECT_EQ(b, std::vector<uint16_t>({0x3F80, 0x3F82, 0x3F81, 0xC000, 0x7F80}));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  uint16_t nan_bits;
  QuantizeRow(GgmlType::kBF16, &nan, &nan_bits, 1);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(nan_bits)));
}

// ---- golden bytes
// --------------------------------------------------------------------------------

TEST(QuantizeTest, Q8_0GoldenBytes) {
  std::vector<float> x(3 * kQK8_0, 0.0f);
  // Block 0: amax 127 -> d = 1, so each quant is roundf(x) (halfway cases go away from zero).
  const float block0[] = {127.0f, -2.5f, 2.5f, 0.5f, -0.5f, 1.49f, -1.51f, 100.2f, -127.0f};
  std::copy(std::begin(block0), std::end(block0), x.begin());
  // Block 1: all zero -> d = 0, quants 0.  Block 2: amax 63.5 -> d = 0.5, id = 2.
  x[2 * kQK8_0 + 0] = -63.5f;
  x[2 * kQK8_0 + 1] = 0.25f;  // 0.5 -> 1
  x[2 * kQK8_0 + 2] = 10.0f;  // 20
  const std::vector<uint8_t> bytes = Quantize(GgmlType::kQ8_0, x);
  ASSERT_EQ(bytes.size(), 3 * sizeof(BlockQ8_0));
  BlockQ8_0 b[3];
  std::memcpy(b, bytes.data(), sizeof b);
  EXPECT_EQ(b[0].d, 0x3C00);
  const int8_t expected0[] = {127, -3, 3, 1, -1, 1, -2, 100, -127};
  for (int j = 0; j < 9; ++j) EXPECT_EQ(b[0].qs[j], expected0[j]) << j;
  for (int j = 9; j < kQK8_0; ++j) EXPECT_EQ(b[0].qs[j], 0);
  EXPECT_EQ(b[1].d, 0);
  for (int j = 0; j < kQK8_0; ++j) EXPECT_EQ(b[1].qs[j], 0);
  EXPECT_EQ(b[2].d, 0x3800);
  EXPECT_EQ(b[2].qs[0], -127);
  EXPECT_EQ(b[2].qs[1], 1);
  EXPECT_EQ(b[2].qs[2], 20);
}

TEST(QuantizeTest, Q4_0GoldenBytes) {
  std::vector<float> x(2 * kQK4_0, 0.0f);
  // Block 0: the largest magnitude is -8 -> d = -8 / -8 = 1; q = min(15, trunc(x + 8.5)).
  x[0] = -8.0f;   // 0
  x[1] = 7.0f;    // 15
  x[2] = 7.6f;    // trunc(16.1) = 16 -> capped at 15
  x[3] = 0.5f;    // trunc(9.0) = 9 (halfway goes up)
  x[4] = -0.5f;   // trunc(8.0) = 8
  x[5] = -0.6f;   // trunc(7.9) = 7
  x[16] = 3.2f;   // trunc(11.7) = 11
  x[17] = -3.0f;  // 5
  // (all other elements 0 -> 8)
  // Block 1: the largest magnitude is +4 -> d = 4 / -8 = -0.5, id = -2.
  x[32 + 0] = 4.0f;     // -8 + 8.5 -> 0
  x[32 + 1] = -3.75f;   // 7.5 + 8.5 = 16 -> 15
  x[32 + 2] = 1.0f;     // -2 + 8.5 -> 6
  x[32 + 16] = -1.25f;  // 2.5 + 8.5 -> 11
  const std::vector<uint8_t> bytes = Quantize(GgmlType::kQ4_0, x);
  BlockQ4_0 b[2];
  ASSERT_EQ(bytes.size(), sizeof b);
  std::memcpy(b, bytes.data(), sizeof b);
  EXPECT_EQ(b[0].d, 0x3C00);
  // byte j = q[j] | q[j + 16] << 4
  const uint8_t expected0[16] = {0xB0, 0x5F, 0x8F, 0x89, 0x88, 0x87, 0x88, 0x88,
                                 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88};
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b[0].qs[j], expected0[j]) << j;
  EXPECT_EQ(b[1].d, 0xB800);
  EXPECT_EQ(b[1].qs[0], 0xB0);
  EXPECT_EQ(b[1].qs[1], 0x8F);
  EXPECT_EQ(b[1].qs[2], 0x86);
  EXPECT_EQ(b[1].qs[3], 0x88);
}

TEST(QuantizeTest, Q8_KGoldenBytes) {
  std::vector<float> x(2 * kQK_K, 0.0f);
  // Block 0: the largest magnitude is -127 -> iscale = -127 / -127 = 1, d = 1; quants round half
  // to even (unlike Q8_0).
  x[0] = -127.0f;
  x[1] = 2.5f;     // 2
  x[2] = 3.5f;     // 4
  x[3] = -2.5f;    // -2
  x[16] = 126.6f;  // 127
  x[40] = 0.5f;    // 0
  x[41] = 1.5f;    // 2
  // Block 1: the largest magnitude is +63.5 -> iscale = -2, d = -0.5.
  x[256 + 0] = 63.5f;   // -127
  x[256 + 1] = -1.25f;  // 2.5 -> 2
  x[256 + 2] = 0.75f;   // -1.5 -> -2
  const std::vector<uint8_t> bytes = Quantize(GgmlType::kQ8_K, x);
  BlockQ8_K b[2];
  ASSERT_EQ(bytes.size(), sizeof b);
  std::memcpy(b, bytes.data(), sizeof b);
  EXPECT_EQ(b[0].d, 1.0f);
  EXPECT_EQ(b[0].qs[0], -127);
  EXPECT_EQ(b[0].qs[1], 2);
  EXPECT_EQ(b[0].qs[2], 4);
  EXPECT_EQ(b[0].qs[3], -2);
  EXPECT_EQ(b[0].qs[16], 127);
  EXPECT_EQ(b[0].qs[40], 0);
  EXPECT_EQ(b[0].qs[41], 2);
  const int16_t bsums0[16] = {-123, 127, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b[0].bsums[j], bsums0[j]) << j;
  EXPECT_EQ(b[1].d, -0.5f);
  EXPECT_EQ(b[1].qs[0], -127);
  EXPECT_EQ(b[1].qs[1], 2);
  EXPECT_EQ(b[1].qs[2], -2);
  EXPECT_EQ(b[1].bsums[0], -127);
}

// Packs Q4_K's 6-bit scales and mins by the layout spelled out above kHandQ4KScales.
void PackQ4KScales(const int sc[8], const int m[8], uint8_t out[12]) {
  for (int j = 0; j < 4; ++j) {
    out[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    out[j + 4] = static_cast<uint8_t>(m[j] | ((m[j + 4] >> 4) << 6));
    out[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
  }
}

TEST(QuantizeTest, Q4KScalePackerMatchesHandPackedBytes) {
  uint8_t packed[12];
  PackQ4KScales(kHandQ4KSc, kHandQ4KMin, packed);
  for (int j = 0; j < 12; ++j) EXPECT_EQ(packed[j], kHandQ4KScales[j]) << j;
}

// Every sub-block j holds x = s_j * l - m_j with integer l in [0, 15] (both ends present),
// s_j = cs[j] / 16 and m_j = cm[j] / 16. The fit reproduces s_j and m_j (up to float noise far
// below the 6-bit resolution); the largest cs and cm are 63, so d = dmin = 63/16 / 63 = 1/16
// exactly, the 6-bit scales and mins are cs and cm, and requantization gives back l.
TEST(QuantizeTest, Q4_KGoldenBytes) {
  const int cs[8] = {63, 1, 17, 32, 5, 40, 63, 12};
  const int cm[8] = {0, 63, 5, 31, 16, 2, 63, 0};
  auto level = [](int e) {
    const int l = e % 32;
    return l == 0 ? 0 : l == 1 ? 15 : (l * 11 + e / 32) % 16;
  };
  std::vector<float> x(2 * kQK_K, 0.0f);  // block 1 stays all zero
  for (int e = 0; e < kQK_K; ++e) {
    x[e] = cs[e / 32] / 16.0f * level(e) - cm[e / 32] / 16.0f;
  }
  const std::vector<uint8_t> bytes = Quantize(GgmlType::kQ4_K, x);
  BlockQ4_K b[2];
  ASSERT_EQ(bytes.size(), sizeof b);
  std::memcpy(b, bytes.data(), sizeof b);

  EXPECT_EQ(b[0].d, 0x2C00);  // 1/16
  EXPECT_EQ(b[0].dmin, 0x2C00);
  uint8_t expected_scales[12];
  PackQ4KScales(cs, cm, expected_scales);
  for (int j = 0; j < 12; ++j) EXPECT_EQ(b[0].scales[j], expected_scales[j]) << "scale byte " << j;
  for (int e = 0; e < kQK_K; ++e) {
    const int s = e / 32;
    const uint8_t byte = b[0].qs[32 * (s / 2) + e % 32];
    const int q = s % 2 == 0 ? (byte & 0xF) : (byte >> 4);
    ASSERT_EQ(q, level(e)) << "element " << e;
  }
  // The dequantized block is the input exactly.
  EXPECT_EQ(Dequantize(GgmlType::kQ4_K, &b[0], kQK_K),
            std::vector<float>(x.begin(), x.begin() + 256));

  // An all-zero block quantizes to all-zero bytes.
  const std::vector<uint8_t> zero(sizeof(BlockQ4_K), 0);
  EXPECT_EQ(std::memcmp(&b[1], zero.data(), zero.size()), 0);
}

// Every 16-element sub-block ib holds x = s_ib * k with integer k in [-32, 31] and -32 present, so
// the signed maximum is negative; s_ib = c_ib / 128 and the largest c is 128 (s = 1). Then
// iscale = -128 / 1, d = fp16(-1/128) = 0xA000, each 8-bit scale is round(-128 * s_ib) = -c_ib,
// d * scale = s_ib exactly, and requantization gives back k (stored as k + 32).
TEST(QuantizeTest, Q6_KGoldenBytes) {
  const int c[16] = {128, 1, 3, 64, 100, 127, 7, 50, 128, 9, 33, 2, 90, 17, 120, 64};
  auto k_of = [](int e) {
    const int l = e % 16;
    return l == 3 ? -32 : ((l * 13 + e / 16 * 5) % 63) - 31;  // in [-31, 31] otherwise
  };
  std::vector<float> x(2 * kQK_K, 0.0f);  // block 1 stays all zero
  for (int e = 0; e < kQK_K; ++e) x[e] = c[e / 16] / 128.0f * k_of(e);
  const std::vector<uint8_t> bytes = Quantize(GgmlType::kQ6_K, x);
  BlockQ6_K b[2];
  ASSERT_EQ(bytes.size(), sizeof b);
  std::memcpy(b, bytes.data(), sizeof b);

  EXPECT_EQ(b[0].d, 0xA000);
  for (int ib = 0; ib < 16; ++ib) EXPECT_EQ(b[0].scales[ib], -c[ib]) << "scale " << ib;
  // Layout per 128 elements (h = 0, 1): ql[64h + l] = L[l] | L[l+64] << 4 (low nibbles),
  // ql[64h + 32 + l] = L[l+32] | L[l+96] << 4, qh[32h + l] = top bits of L[l], L[l+32], L[l+64],
  // L[l+96] in bit pairs 0, 1, 2, 3 (L relative to the half).
  for (int h = 0; h < 2; ++h) {
    for (int l = 0; l < 32; ++l) {
      const int L0 = k_of(128 * h + l) + 32;
      const int L1 = k_of(128 * h + l + 32) + 32;
      const int L2 = k_of(128 * h + l + 64) + 32;
      const int L3 = k_of(128 * h + l + 96) + 32;
      ASSERT_EQ(b[0].ql[64 * h + l], (L0 & 0xF) | ((L2 & 0xF) << 4)) << h << " " << l;
      ASSERT_EQ(b[0].ql[64 * h + 32 + l], (L1 & 0xF) | ((L3 & 0xF) << 4)) << h << " " << l;
      ASSERT_EQ(b[0].qh[32 * h + l],
                (L0 >> 4) | ((L1 >> 4) << 2) | ((L2 >> 4) << 4) | ((L3 >> 4) << 6))
          << h << " " << l;
    }
  }
  EXPECT_EQ(Dequantize(GgmlType::kQ6_K, &b[0], kQK_K),
            std::vector<float>(x.begin(), x.begin() + 256));

  const std::vector<uint8_t> zero(sizeof(BlockQ6_K), 0);
  EXPECT_EQ(std::memcmp(&b[1], zero.data(), zero.size()), 0);
}

// ---- quantize -> dequantize error bounds on random data
// -------------------------------------------

TEST(RoundTripTest, Q8_0ErrorWithinHalfStep) {
  const std::vector<float> x = RandomNormal(64 * kQK8_0, 1);
  const std::vector<uint8_t> q = Quantize(GgmlType::kQ8_0, x);
  const std::vector<float> y =
      Dequantize(GgmlType::kQ8_0, q.data(), static_cast<int64_t>(x.size()));
  for (size_t blk = 0; blk < x.size() / kQK8_0; ++blk) {
    float amax = 0;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[blk * kQK8_0 + j]));
    const float d = amax / 127;
    const float d16 = HalfToFloat(FloatToHalf(d));
    // Half a step, plus up to 127 times the fp16 rounding error of the stored scale.
    const float bound = 0.5f * d * (1 + 1e-6f) + 127 * std::fabs(d - d16);
    for (int j = 0; j < kQK8_0; ++j) {
      const size_t i = blk * kQK8_0 + j;
      ASSERT_LE(std::fabs(x[i] - y[i]), bound) << "element " << i;
    }
  }
}

TEST(RoundTripTest, Q4_0ErrorWithinOneStep) {
  const std::vector<float> x = RandomNormal(64 * kQK4_0, 2);
  const std::vector<uint8_t> q = Quantize(GgmlType::kQ4_0, x);
  const std::vector<float> y =
      Dequantize(GgmlType::kQ4_0, q.data(), static_cast<int64_t>(x.size()));
  for (size_t blk = 0; blk < x.size() / kQK4_0; ++blk) {
    float amax = 0;
    for (int j = 0; j < kQK4_0; ++j) amax = std::max(amax, std::fabs(x[blk * kQK4_0 + j]));
    const float d = amax / 8;
    const float d16 = std::fabs(HalfToFloat(FloatToHalf(d)));
    for (int j = 0; j < kQK4_0; ++j) {
      const size_t i = blk * kQK4_0 + j;
      // Half a step, except on the side opposite the maximum where +8 is cut to +7 (a full step
      // at most).
      const float steps = std::fabs(x[i]) > 7.5f * d ? 1.0f : 0.5f;
      ASSERT_LE(std::fabs(x[i] - y[i]), steps * d * (1 + 1e-6f) + 8 * std::fabs(d - d16)) << i;
    }
  }
}

TEST(RoundTripTest, Q8_KErrorWithinHalfStep) {
  const std::vector<float> x = RandomNormal(8 * kQK_K, 3);
  const std::vector<uint8_t> q = Quantize(GgmlType::kQ8_K, x);
  const std::vector<float> y =
      Dequantize(GgmlType::kQ8_K, q.data(), static_cast<int64_t>(x.size()));
  for (size_t blk = 0; blk < x.size() / kQK_K; ++blk) {
    float amax = 0;
    for (int j = 0; j < kQK_K; ++j) amax = std::max(amax, std::fabs(x[blk * kQK_K + j]));
    for (int j = 0; j < kQK_K; ++j) {
      const size_t i = blk * kQK_K + j;
      ASSERT_LE(std::fabs(x[i] - y[i]), 0.5f * amax / 127 * (1 + 1e-5f)) << i;
    }
  }
}

TEST(RoundTripTest, FloatTypesRelativeError) {
  const std::vector<float> x = RandomNormal(1000, 4);
  const std::vector<float> f32 =
      Dequantize(GgmlType::kF32, Quantize(GgmlType::kF32, x).data(), 1000);
  const std::vector<float> f16 =
      Dequantize(GgmlType::kF16, Quantize(GgmlType::kF16, x).data(), 1000);
  const std::vector<float> bf16 =
      Dequantize(GgmlType::kBF16, Quantize(GgmlType::kBF16, x).data(), 1000);
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(f32[i], x[i]);
    if (std::fabs(x[i]) > 1e-4f) {  // normal range of fp16
      EXPECT_LE(std::fabs(f16[i] - x[i]), std::ldexp(std::fabs(x[i]), -11)) << i;
    }
    EXPECT_LE(std::fabs(bf16[i] - x[i]), std::ldexp(std::fabs(x[i]), -8)) << i;
  }
}

using test_support::Nmse;

// K-quants have no simple per-element bound; on Gaussian data their relative error is well known
// (llama.cpp reports about 0.5% and 0.03% of the variance for Q4_K and Q6_K). The bounds are ~1.5x
// the values measured over these seeds.
TEST(RoundTripTest, KQuantNmseOnGaussianData) {
  for (uint32_t seed = 10; seed < 14; ++seed) {
    const std::vector<float> x = RandomNormal(16 * kQK_K, seed, 0.02f);
    const int64_t n = static_cast<int64_t>(x.size());
    const double q4k = Nmse(Dequantize(GgmlType::kQ4_K, Quantize(GgmlType::kQ4_K, x).data(), n), x);
    const double q6k = Nmse(Dequantize(GgmlType::kQ6_K, Quantize(GgmlType::kQ6_K, x).data(), n), x);
    const double q4_0 =
        Nmse(Dequantize(GgmlType::kQ4_0, Quantize(GgmlType::kQ4_0, x).data(), n), x);
    EXPECT_LT(q4k, 0.008) << seed;
    EXPECT_LT(q6k, 4.5e-4) << seed;
    // Q4_K's min/scale search must beat the plain absmax Q4_0 at the same bit width.
    EXPECT_LT(q4k, q4_0) << seed;
    // One more bit: Q5_K below Q4_K, Q5_0 below Q4_0 and Q4_1 (whose min costs no bit).
    const double q5k = Nmse(Dequantize(GgmlType::kQ5_K, Quantize(GgmlType::kQ5_K, x).data(), n), x);
    const double q5_0 =
        Nmse(Dequantize(GgmlType::kQ5_0, Quantize(GgmlType::kQ5_0, x).data(), n), x);
    const double q4_1 =
        Nmse(Dequantize(GgmlType::kQ4_1, Quantize(GgmlType::kQ4_1, x).data(), n), x);
    EXPECT_LT(q5k, q4k / 3) << seed;
    EXPECT_LT(q5_0, q4_0 / 3) << seed;
    EXPECT_LT(q5_0, q4_1) << seed;
    EXPECT_LT(q5k, q6k * 5) << seed;
  }
}

// ---- dot products
// --------------------------------------------------------------------------------

TEST(DotTest, DotRowReferenceMatchesHandSum) {
  const std::vector<float> w = {1.0f, 2.0f, -3.0f};
  const std::vector<float> x = {0.5f, 0.25f, 2.0f};
  EXPECT_EQ(DotRowReference(GgmlType::kF32, w.data(), x.data(), 3), 0.5f + 0.5f - 6.0f);
  BlockQ8_0 b;
  b.d = 0x3C00;
  for (int j = 0; j < kQK8_0; ++j) b.qs[j] = static_cast<int8_t>(j);
  std::vector<float> ones(kQK8_0, 1.0f);
  EXPECT_EQ(DotRowReference(GgmlType::kQ8_0, &b, ones.data(), kQK8_0), 496.0f);  // 0 + ... + 31
}

TEST(DotTest, VecDotHandBuiltQ4_0) {
  BlockQ4_0 w;
  w.d = 0x3800;                 // 0.5
  std::memset(w.qs, 0x9A, 16);  // low nibble 10 -> +2, high nibble 9 -> +1
  BlockQ8_0 a;
  a.d = 0x3400;  // 0.25
  for (int j = 0; j < kQK8_0; ++j) a.qs[j] = static_cast<int8_t>(j < 16 ? 3 : -1);
  // 16 * (2 * 3) + 16 * (1 * -1) = 80; times 0.5 * 0.25.
  EXPECT_EQ(VecDotQuantizedReference(GgmlType::kQ4_0, &w, &a, kQK8_0), 10.0f);
}

TEST(DotTest, VecDotHandBuiltQ4_KUsesMins) {
  BlockQ4_K w;
  w.d = 0x3800;     // 0.5
  w.dmin = 0x3400;  // 0.25
  std::memcpy(w.scales, kHandQ4KScales, sizeof w.scales);
  std::memset(w.qs, 0x00, sizeof w.qs);  // every quant 0: each value is -dmin * m
  BlockQ8_K a{};
  a.d = 2.0f;
  for (int e = 0; e < kQK_K; ++e) a.qs[e] = 1;
  for (int j = 0; j < 16; ++j) a.bsums[j] = 16;
  // sum over elements of -(0.25 * m[e / 32]) * (2 * 1) = -0.5 * 32 * sum(m) = -16 * 202.
  EXPECT_EQ(VecDotQuantizedReference(GgmlType::kQ4_K, &w, &a, kQK_K), -3232.0f);
}

TEST(DotTest, VecDotHandBuiltQ4_1UsesPrecomputedSum) {
  BlockQ4_1 w;
  w.d = 0x3800;                 // 0.5
  w.m = 0x3C00;                 // 1
  std::memset(w.qs, 0x21, 16);  // low nibble 1, high nibble 2
  BlockQ8_1 a;
  a.d = 0x3400;  // 0.25
  a.s = 0x4400;  // 4: Q8_1 carries d * sum(qs); the dot product trusts it
  for (int j = 0; j < kQK8_1; ++j) a.qs[j] = static_cast<int8_t>(j < 16 ? 3 : -1);
  // sumi = 16 * 1 * 3 + 16 * 2 * -1 = 16; (0.5 * 0.25) * 16 + 1 * 4 = 6.
  EXPECT_EQ(VecDotQuantizedReference(GgmlType::kQ4_1, &w, &a, kQK4_1), 6.0f);
}

TEST(DotTest, VecDotTypes) {
  EXPECT_EQ(VecDotType(GgmlType::kQ4_1), GgmlType::kQ8_1);
  EXPECT_EQ(VecDotType(GgmlType::kQ5_0), GgmlType::kQ8_0);
  EXPECT_EQ(VecDotType(GgmlType::kQ5_1), GgmlType::kQ8_1);
  EXPECT_EQ(VecDotType(GgmlType::kIQ4_NL), GgmlType::kQ8_0);
  EXPECT_EQ(VecDotType(GgmlType::kQ5_K), GgmlType::kQ8_K);
  EXPECT_EQ(VecDotType(GgmlType::kQ8_0), GgmlType::kQ8_0);
  EXPECT_EQ(VecDotType(GgmlType::kQ4_0), GgmlType::kQ8_0);
  EXPECT_EQ(VecDotType(GgmlType::kQ4_K), GgmlType::kQ8_K);
  EXPECT_EQ(VecDotType(GgmlType::kQ6_K), GgmlType::kQ8_K);
  EXPECT_EQ(VecDotType(GgmlType::kF32), GgmlType::kF32);
  EXPECT_EQ(VecDotType(GgmlType::kF16), GgmlType::kF32);
  EXPECT_EQ(VecDotType(GgmlType::kBF16), GgmlType::kF32);
}

// The integer dot product against quantized activations equals the dot product with the
// dequantized activations up to float rounding (1e-5 of the sum of magnitudes), and differs from
// the float dot product by no more than the activation quantization error allows.
TEST(DotTest, VecDotQuantizedMatchesDotRow) {
  for (GgmlType type : kWeightTypes) {
    for (int64_t n : {256, 1024}) {
      for (uint32_t seed = 0; seed < 4; ++seed) {
        const std::vector<float> w = RandomNormal(static_cast<size_t>(n), 100 + seed);
        std::vector<float> x = RandomNormal(static_cast<size_t>(n), 200 + seed, 3.0f);
        if (seed == 3) std::fill(x.begin(), x.begin() + 256, 0.0f);  // an all-zero block
        const std::vector<uint8_t> wq = Quantize(type, w);
        const GgmlType act_type = VecDotType(type);
        const std::vector<uint8_t> xq = Quantize(act_type, x);
        const std::vector<float> wd = Dequantize(type, wq.data(), n);
        const std::vector<float> xd = Dequantize(act_type, xq.data(), n);

        double exact = 0, magnitude = 0, quant_error_bound = 0;
        for (int64_t i = 0; i < n; ++i) {
          exact += static_cast<double>(wd[i]) * xd[i];
          magnitude += std::fabs(static_cast<double>(wd[i]) * xd[i]);
          quant_error_bound += std::fabs(static_cast<double>(wd[i])) * std::fabs(x[i] - xd[i]);
        }
        const float vec_dot = VecDotQuantizedReference(type, wq.data(), xq.data(), n);
        const float dot = DotRowReference(type, wq.data(), x.data(), n);
        SCOPED_TRACE(::testing::Message() << GgmlTypeName(type) << " n=" << n << " seed=" << seed);
        // Q8_1 carries d * sum(qs) rounded to fp16, which Q4_1's and Q5_1's dot products use for
        // their min term: allow that rounding (2^-11 relative) on each block's m * s.
        double s_rounding = 0;
        if (act_type == GgmlType::kQ8_1) {
          const size_t block_bytes = GetTypeTraits(type).value().type_size;
          const auto* xb = reinterpret_cast<const BlockQ8_1*>(xq.data());
          for (int64_t b = 0; b < n / kQK8_1; ++b) {
            uint16_t m;  // both types keep m in bytes 2-3 of a block
            std::memcpy(&m, wq.data() + b * block_bytes + 2, sizeof m);
            s_rounding += std::fabs(HalfToFloat(m)) * std::fabs(HalfToFloat(xb[b].s)) / 2048;
          }
        }
        EXPECT_NEAR(vec_dot, exact, 1e-5 * magnitude + s_rounding);
        EXPECT_LE(std::fabs(vec_dot - dot), quant_error_bound + 1e-5 * magnitude + s_rounding);
        // Stated per-type bound on |vec_dot - dot| / (|w| |x|): float weights take the float
        // path (exact up to rounding); Q8_0 activations (blocks of 32) move the result by at most
        // 0.086% and Q8_K ones (blocks of 256, coarser steps) by 0.12%, measured over 400 rows of
        // this distribution. The bounds leave ~2.3x room.
        const double bound = act_type == GgmlType::kF32                                   ? 1e-6
                             : act_type == GgmlType::kQ8_0 || act_type == GgmlType::kQ8_1 ? 2e-3
                                                                                          : 3e-3;
        double w2 = 0, x2 = 0;
        for (int64_t i = 0; i < n; ++i) {
          w2 += static_cast<double>(wd[i]) * wd[i];
          x2 += static_cast<double>(x[i]) * x[i];
        }
        EXPECT_LE(std::fabs(vec_dot - dot), bound * std::sqrt(w2 * x2));
      }
    }
  }
}

TEST(GgmlTypeTest, UnsupportedTypesAreNamed) {
  EXPECT_EQ(GgmlTypeIdName(13), "Q5_K");
  EXPECT_EQ(GgmlTypeIdName(7), "Q5_1");
  EXPECT_EQ(GgmlTypeIdName(16), "IQ2_XXS");
  EXPECT_EQ(GgmlTypeIdName(30), "BF16");
  EXPECT_EQ(GgmlTypeIdName(35), "TQ2_0");
  EXPECT_EQ(GgmlTypeIdName(4), "type id 4");  // retired
  EXPECT_EQ(GgmlTypeIdName(1000), "type id 1000");
  const absl::Status st = GetTypeTraits(16u).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(st.message()).find("IQ2_XXS"), std::string::npos) << st;
}

TEST(GgmlTypeTest, NewTypesParseAndHaveGgmlBlockSizes) {
  EXPECT_EQ(ParseGgmlType("Q5_K").value(), GgmlType::kQ5_K);
  EXPECT_EQ(ParseGgmlType("q4_1").value(), GgmlType::kQ4_1);
  EXPECT_EQ(ParseGgmlType("q5_0").value(), GgmlType::kQ5_0);
  EXPECT_EQ(RowBytes(GgmlType::kQ5_K, 512).value(), 2u * 176u);
  EXPECT_EQ(RowBytes(GgmlType::kQ4_1, 64).value(), 2u * 20u);
  EXPECT_EQ(RowBytes(GgmlType::kQ5_0, 64).value(), 2u * 22u);
  EXPECT_EQ(ParseGgmlType("Q5_1").value(), GgmlType::kQ5_1);
  EXPECT_EQ(ParseGgmlType("iq4_nl").value(), GgmlType::kIQ4_NL);
  EXPECT_EQ(RowBytes(GgmlType::kQ5_1, 64).value(), 2u * 24u);
  EXPECT_EQ(RowBytes(GgmlType::kIQ4_NL, 64).value(), 2u * 18u);
  EXPECT_EQ(RowBytes(GgmlType::kQ8_1, 64).value(), 2u * 36u);
}

// Every weight type has a quantizer; a type without one is refused by the check and stops
// QuantizeRow instead of leaving the row unwritten.
TEST(QuantizeTest, CheckQuantizeRowNamesTypesWithoutAQuantizer) {
  for (GgmlType t : kWeightTypes) {
    EXPECT_TRUE(CheckQuantizeRow(t, 256).ok()) << GgmlTypeName(t);
  }
  EXPECT_TRUE(CheckQuantizeRow(GgmlType::kQ8_K, 256).ok());
  const absl::Status iq2 = CheckQuantizeRow(static_cast<GgmlType>(16), 256);
  EXPECT_EQ(iq2.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(iq2.message().find("IQ2_XXS"), std::string_view::npos) << iq2;
  const absl::Status partial = CheckQuantizeRow(GgmlType::kQ4_K, 32);
  EXPECT_EQ(partial.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(partial.message().find("block size"), std::string_view::npos) << partial;
}

TEST(QuantizeDeathTest, QuantizeRowStopsOnATypeWithoutAQuantizer) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::vector<float> x(32, 1.0f);
  std::vector<uint8_t> out(64);
  EXPECT_DEATH(QuantizeRow(static_cast<GgmlType>(16), x.data(), out.data(), 32),
               "no quantizer for IQ2_XXS");
}

}  // namespace
}  // namespace swarm::kernels
