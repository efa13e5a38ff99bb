// Activation codecs: round trips with stated error bounds, non-finite values, and hostile frames
// (wrong sizes, corrupt and oversized zstd frames).
#include <gtest/gtest.h>
#include <zstd.h>

#include <cmath>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <vector>

#include "base/half.h"
#include "transport/codec.h"

namespace swarm::transport {
namespace {

// Activations look like this: mostly gaussian, a few channels with large outliers.
std::vector<float> Activations(size_t n, uint32_t seed, float outlier = 40.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = normal(rng);
  for (size_t i = 17; i < n; i += 509) x[i] = (i % 2 ? outlier : -outlier);
  return x;
}

Codec MustParse(const char* name) {
  auto codec = ParseCodec(name);
  EXPECT_TRUE(codec.ok()) << name << ": " << codec.status();
  return codec.value_or(Codec{});
}

std::vector<float> RoundTrip(const std::vector<float>& x, const Codec& codec) {
  auto bytes = EncodeTensor(x.data(), x.size(), codec);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  if (!bytes.ok()) return {};
  auto y = DecodeTensor(*bytes, x.size(), codec);
  EXPECT_TRUE(y.ok()) << y.status();
  return y.value_or(std::vector<float>{});
}

TEST(CodecTest, ParseAndNameRoundTrip) {
  for (const char* name : {"f32", "f16", "bf16", "int8", "int8h", "int8/32", "int8h/128",
                           "f16+zstd", "int8+zstd:3", "bf16+zstd:19"}) {
    auto codec = ParseCodec(name);
    ASSERT_TRUE(codec.ok()) << name;
    EXPECT_EQ(CodecName(*codec), name);
  }
  for (const char* bad : {"", "f64", "int4", "f16/32", "int8/0", "int8/5000", "int8/x", "f16+lz4",
                          "f16+zstd:0", "f16+zstd:99", "f16+zstd:1x"}) {
    EXPECT_EQ(ParseCodec(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(CodecTest, SizesAreExact) {
  EXPECT_EQ(RawEncodedSize(MustParse("f32"), 2048).value(), 8192u);
  EXPECT_EQ(RawEncodedSize(MustParse("f16"), 2048).value(), 4096u);
  EXPECT_EQ(RawEncodedSize(MustParse("bf16"), 2048).value(), 4096u);
  EXPECT_EQ(RawEncodedSize(MustParse("int8"), 2048).value(), 2048u + 32 * 4);
  EXPECT_EQ(RawEncodedSize(MustParse("int8h"), 2048).value(), 2048u + 32 * 2);
  EXPECT_EQ(RawEncodedSize(MustParse("int8"), 100).value(), 100u + 2 * 4);  // partial block
  EXPECT_FALSE(RawEncodedSize(MustParse("f32"), std::numeric_limits<uint64_t>::max()).ok());
}

TEST(CodecTest, F32IsBitExactIncludingNonFinite) {
  std::vector<float> x = Activations(1000, 1);
  x[3] = std::numeric_limits<float>::quiet_NaN();
  x[4] = std::numeric_limits<float>::infinity();
  x[5] = -0.0f;
  x[6] = std::numeric_limits<float>::denorm_min();
  for (const char* name : {"f32", "f32+zstd"}) {
    std::vector<float> y = RoundTrip(x, MustParse(name));
    ASSERT_EQ(y.size(), x.size());
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)), 0) << name;
  }
}

// Round to nearest: relative error at most half an ulp, 2^-11 for f16 and 2^-8 for bf16.
TEST(CodecTest, HalfPrecisionRelativeErrorBounds) {
  std::vector<float> x = Activations(4096, 2);
  x.push_back(60000.0f);
  x.push_back(1e-4f);
  for (const auto& [name, bound] :
       std::vector<std::pair<const char*, double>>{{"f16", 0x1p-11}, {"bf16", 0x1p-8}}) {
    for (bool zstd : {false, true}) {
      Codec codec = MustParse(name);
      codec.zstd = zstd;
      std::vector<float> y = RoundTrip(x, codec);
      ASSERT_EQ(y.size(), x.size());
      double worst = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        if (std::fabs(x[i]) < 6.2e-5f) continue;  // below f16's normal range
        worst = std::max(worst, std::fabs((double)y[i] - x[i]) / std::fabs(x[i]));
      }
      EXPECT_LE(worst, bound) << CodecName(codec);
      EXPECT_GT(worst, bound / 4) << CodecName(codec) << ": suspiciously exact";
    }
  }
}

TEST(CodecTest, HalfPrecisionNonFinite) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {nan, inf, -inf, 1e6f, -1e6f, 1.0f};
  std::vector<float> f16 = RoundTrip(x, MustParse("f16"));
  EXPECT_TRUE(std::isnan(f16[0]));
  EXPECT_EQ(f16[1], inf);
  EXPECT_EQ(f16[2], -inf);
  EXPECT_EQ(f16[3], inf);  // beyond 65504: documented overflow to infinity
  EXPECT_EQ(f16[4], -inf);
  EXPECT_EQ(f16[5], 1.0f);
  std::vector<float> bf16 = RoundTrip(x, MustParse("bf16"));
  EXPECT_TRUE(std::isnan(bf16[0]));
  EXPECT_EQ(bf16[1], inf);
  EXPECT_NEAR(bf16[3], 1e6f, 1e6f * 0x1p-8);
}

// Absmax int8: every value is within half a quantization step of the original (f32 scales) or
// one step (f16 scales, whose rounding can push a value to the clamp).
TEST(CodecTest, Int8PerValueErrorBound) {
  for (const char* name : {"int8", "int8h", "int8/32", "int8h/256", "int8+zstd"}) {
    const Codec codec = MustParse(name);
    std::vector<float> x = Activations(4096 + 37, 3);  // a partial last block
    std::vector<float> y = RoundTrip(x, codec);
    ASSERT_EQ(y.size(), x.size());
    for (size_t begin = 0; begin < x.size(); begin += codec.block_size) {
      const size_t end = std::min(x.size(), begin + codec.block_size);
      float absmax = 0;
      for (size_t i = begin; i < end; ++i) absmax = std::max(absmax, std::fabs(x[i]));
      const double step = absmax / 127.0;
      const double bound = codec.scale_f16 ? step : 0.5 * step * (1 + 1e-6);
      for (size_t i = begin; i < end; ++i) {
        ASSERT_LE(std::fabs((double)y[i] - x[i]), bound) << name << " at " << i;
      }
    }
  }
}

TEST(CodecTest, Int8NmseBound) {
  // Gaussian data, block 64: absmax is about 2.5 sigma, so the step is about 0.02 sigma and the
  // uniform rounding noise step^2/12 gives an NMSE near 3e-5.
  std::vector<float> x = Activations(64 * 1024, 4, /*outlier=*/0.0f);
  for (const char* name : {"int8", "int8h"}) {
    auto e = MeasureCodec(x.data(), x.size(), MustParse(name));
    ASSERT_TRUE(e.ok());
    EXPECT_LT(e->nmse, 1e-4) << name;
    EXPECT_GT(e->nmse, 1e-6) << name;
  }
  // Outliers (one +-40 value every 509) coarsen only the blocks that hold them: 129 blocks with
  // a step of 40/127 add 129 * 64 * step^2/12 = 68 to an energy of 65536 + 129 * 1600, an NMSE
  // near 2.5e-4.
  std::vector<float> xo = Activations(64 * 1024, 4, /*outlier=*/40.0f);
  auto e = MeasureCodec(xo.data(), xo.size(), MustParse("int8"));
  ASSERT_TRUE(e.ok());
  EXPECT_LT(e->nmse, 4e-4);
}

TEST(CodecTest, Int8NonFiniteBlockBecomesNan) {
  std::vector<float> x = Activations(256, 5, /*outlier=*/0.0f);
  x[70] = std::numeric_limits<float>::infinity();  // block 1 of 64
  for (const char* name : {"int8", "int8h"}) {
    std::vector<float> y = RoundTrip(x, MustParse(name));
    for (size_t i = 0; i < x.size(); ++i) {
      if (i >= 64 && i < 128) {
        EXPECT_TRUE(std::isnan(y[i])) << name << " " << i;
      } else {
        EXPECT_NEAR(y[i], x[i], 0.05) << name << " " << i;
      }
    }
  }
}

TEST(CodecTest, Int8ZerosAndTinyValues) {
  std::vector<float> zeros(200, 0.0f);
  for (const char* name : {"int8", "int8h"}) {
    EXPECT_EQ(RoundTrip(zeros, MustParse(name)), zeros);
  }
  std::vector<float> tiny(64, 1e-30f);  // the f16 scale underflows: values flush to zero
  std::vector<float> y = RoundTrip(tiny, MustParse("int8h"));
  for (float v : y) EXPECT_LE(std::fabs(v), 1e-30f);
  std::vector<float> huge(64, 3e38f);  // the f16 scale overflows: clamped, stays finite
  y = RoundTrip(huge, MustParse("int8h"));
  for (float v : y) EXPECT_TRUE(std::isfinite(v));
}

// A block whose scale (absmax / 127) is subnormal: 1 / scale overflows to inf. Each value must
// still be quantized in proportion (not saturated to +-127), and zeros stay zero (0 * inf would be
// NaN, and converting NaN to int8 is undefined). Found by fuzz_activations.
TEST(CodecTest, Int8SubnormalScale) {
  const std::vector<float> x = {1e-38f, 5e-39f, -2.5e-39f, 0.0f, 0.0f, -1e-38f, 1e-39f, 0.0f};
  std::vector<float> y = RoundTrip(x, MustParse("int8/8"));
  ASSERT_EQ(y.size(), x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_NEAR(y[i], x[i], 1e-38f / 127) << i;
    if (x[i] == 0.0f) {
      EXPECT_EQ(y[i], 0.0f) << i;
    }
  }
}

TEST(CodecTest, ZstdDecodesToTheSameValuesAndReportsRatio) {
  std::vector<float> x = Activations(2048 * 16, 6);
  for (const char* name : {"f32", "f16", "bf16", "int8", "int8h"}) {
    Codec plain = MustParse(name);
    Codec packed = plain;
    packed.zstd = true;
    auto a = EncodeTensor(x.data(), x.size(), plain);
    auto b = EncodeTensor(x.data(), x.size(), packed);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(RoundTrip(x, plain), RoundTrip(x, packed)) << name;
    std::cout << name << ": " << a->size() << " bytes, +zstd " << b->size() << " bytes (ratio "
              << static_cast<double>(a->size()) / b->size() << ")\n";
  }
  // Constant data must actually compress.
  std::vector<float> flat(4096, 1.0f);
  auto packed = EncodeTensor(flat.data(), flat.size(), MustParse("f32+zstd"));
  ASSERT_TRUE(packed.ok());
  EXPECT_LT(packed->size(), 200u);
}

TEST(CodecTest, WorkspaceGivesTheSameBytes) {
  std::vector<float> x = Activations(3000, 7);
  CodecWorkspace ws;
  for (const char* name : {"f16+zstd", "int8+zstd:5", "bf16"}) {
    const Codec codec = MustParse(name);
    auto a = EncodeTensor(x.data(), x.size(), codec);
    auto b = EncodeTensor(x.data(), x.size(), codec, &ws);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(*a, *b) << name;
    auto y = DecodeTensor(*b, x.size(), codec, &ws);
    ASSERT_TRUE(y.ok());
    EXPECT_EQ(*y, RoundTrip(x, codec));
  }
}

TEST(CodecTest, WrongSizesAreDataLoss) {
  std::vector<float> x = Activations(640, 8);
  for (const char* name : {"f32", "f16", "bf16", "int8", "int8h", "f16+zstd", "int8+zstd"}) {
    const Codec codec = MustParse(name);
    auto bytes = EncodeTensor(x.data(), x.size(), codec);
    ASSERT_TRUE(bytes.ok());
    // The frame is right; the expected count is not.
    for (size_t n : {size_t{0}, x.size() - 1, x.size() + 1, x.size() * 2}) {
      EXPECT_EQ(DecodeTensor(*bytes, n, codec).status().code(), absl::StatusCode::kDataLoss)
          << name << " n=" << n;
    }
    // The count is right; the frame is one byte short or long.
    std::vector<uint8_t> shorter(bytes->begin(), bytes->end() - 1);
    std::vector<uint8_t> longer(*bytes);
    longer.push_back(0);
    EXPECT_FALSE(DecodeTensor(shorter, x.size(), codec).ok()) << name;
    EXPECT_FALSE(DecodeTensor(longer, x.size(), codec).ok()) << name;
    EXPECT_FALSE(DecodeTensor({}, x.size(), codec).ok()) << name;
  }
}

TEST(CodecTest, InvalidCodecsAreRejected) {
  std::vector<float> x(64, 1.0f);
  Codec unknown;
  unknown.dtype = static_cast<Dtype>(9);
  EXPECT_EQ(EncodeTensor(x.data(), x.size(), unknown).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeTensor(std::vector<uint8_t>(256), 64, unknown).status().code(),
            absl::StatusCode::kInvalidArgument);
  Codec bad_block = MustParse("int8");
  bad_block.block_size = 0;
  EXPECT_FALSE(EncodeTensor(x.data(), x.size(), bad_block).ok());
  EXPECT_FALSE(DecodeTensor(std::vector<uint8_t>(256), 64, bad_block).ok());
}

// Every single-byte corruption of a zstd frame is either caught (checksum, structure) or
// harmless; none may crash or produce wrong values silently.
TEST(CodecTest, CorruptZstdFramesAreCaught) {
  std::vector<float> x = Activations(512, 9);
  for (const char* name : {"f16+zstd", "int8+zstd"}) {
    const Codec codec = MustParse(name);
    auto bytes = EncodeTensor(x.data(), x.size(), codec);
    ASSERT_TRUE(bytes.ok());
    const std::vector<float> good = RoundTrip(x, codec);
    int caught = 0;
    for (size_t i = 0; i < bytes->size(); ++i) {
      for (uint8_t flip : {0x01, 0x80, 0xff}) {
        std::vector<uint8_t> bad(*bytes);
        bad[i] ^= flip;
        auto y = DecodeTensor(bad, x.size(), codec);
        if (y.ok()) {
          ASSERT_EQ(*y, good) << name << ": corruption at byte " << i << " went unnoticed";
        } else {
          EXPECT_EQ(y.status().code(), absl::StatusCode::kDataLoss);
          ++caught;
        }
      }
    }
    EXPECT_GT(caught, 0);
    // Truncated at every length.
    for (size_t len = 0; len < bytes->size(); ++len) {
      std::vector<uint8_t> cut(bytes->begin(), bytes->begin() + len);
      EXPECT_FALSE(DecodeTensor(cut, x.size(), codec).ok()) << name << " len " << len;
    }
  }
}

// A tiny frame that inflates to far more than expected is refused without inflating it.
TEST(CodecTest, ZstdBombsAreRefused) {
  const Codec codec = MustParse("f32+zstd");
  const size_t expected_n = 1024;
  // 1) A frame that declares 256 MiB of content.
  std::vector<uint8_t> zeros(size_t{1} << 20, 0);
  {
    ZSTD_CCtx* cctx = ZSTD_createCCtx();
    ZSTD_CCtx_setPledgedSrcSize(cctx, uint64_t{256} << 20);
    std::vector<uint8_t> frame(1 << 16);
    ZSTD_outBuffer out{frame.data(), frame.size(), 0};
    for (int i = 0; i < 256; ++i) {
      ZSTD_inBuffer in{zeros.data(), zeros.size(), 0};
      const ZSTD_EndDirective mode = (i == 255) ? ZSTD_e_end : ZSTD_e_continue;
      size_t left;
      do {
        left = ZSTD_compressStream2(cctx, &out, &in, mode);
        ASSERT_FALSE(ZSTD_isError(left));
      } while (in.pos < in.size || (mode == ZSTD_e_end && left != 0));
    }
    ZSTD_freeCCtx(cctx);
    frame.resize(out.pos);
    ASSERT_LT(frame.size(), 64u * 1024);
    auto y = DecodeTensor(frame, expected_n, codec);
    EXPECT_EQ(y.status().code(), absl::StatusCode::kDataLoss) << y.status();
  }
  // 2) A frame that does not declare its size (streamed) and inflates past the expected size.
  {
    ZSTD_CCtx* cctx = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
    std::vector<uint8_t> frame(1 << 16);
    ZSTD_outBuffer out{frame.data(), frame.size(), 0};
    ZSTD_inBuffer in{zeros.data(), zeros.size(), 0};
    size_t left;
    do {
      left = ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end);
      ASSERT_FALSE(ZSTD_isError(left));
    } while (left != 0);
    ZSTD_freeCCtx(cctx);
    frame.resize(out.pos);
    ASSERT_EQ(ZSTD_getFrameContentSize(frame.data(), frame.size()), ZSTD_CONTENTSIZE_UNKNOWN);
    auto y = DecodeTensor(frame, expected_n, codec);
    EXPECT_EQ(y.status().code(), absl::StatusCode::kDataLoss) << y.status();
  }
}

TEST(CodecTest, MeasureReportsErrors) {
  std::vector<float> x = Activations(4096, 10);
  auto exact = MeasureCodec(x.data(), x.size(), MustParse("f32"));
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->nmse, 0.0);
  EXPECT_EQ(exact->max_abs_error, 0.0);
  EXPECT_EQ(exact->bytes_per_value, 4.0);
  double last_nmse = 0;
  for (const char* name : {"f16", "bf16"}) {
    auto e = MeasureCodec(x.data(), x.size(), MustParse(name));
    ASSERT_TRUE(e.ok());
    EXPECT_GT(e->nmse, last_nmse) << name;  // each loses more than the last
    EXPECT_EQ(e->bytes_per_value, 2.0);
    last_nmse = e->nmse;
    std::cout << name << ": nmse " << e->nmse << ", max abs error " << e->max_abs_error << "\n";
  }
  auto q = MeasureCodec(x.data(), x.size(), MustParse("int8"));
  ASSERT_TRUE(q.ok());
  EXPECT_NEAR(q->bytes_per_value, 1.0625, 1e-9);
  std::cout << "int8: nmse " << q->nmse << ", max abs error " << q->max_abs_error << "\n";
}

}  // namespace
}  // namespace swarm::transport
