// Every CUDA kernel (src/kernels/cuda/*.cu), run by the host emulator (cuda_emulation.h), against
// its CPU twin in CpuReferenceBackend: the same launchers, the same grids and block shapes, the
// same shared-memory tiling, warp reductions and split merges as on a GPU, on every CI machine with
// the toolkit. The bounds are those of test_cuda_ops.cpp, which runs the same comparisons on a real
// GPU. Shapes are small (each emulated thread is a real thread) but reach every code path: each
// weight type, vector and scalar loads, 1/2/4/8-token mat-vec blocks, 32/64/128 threads per row,
// head sizes 8..256, GQA groups wider than a block, split decode attention, prompt tiles with a
// partial last tile, and dynamic shared memory above 48 KiB.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backend_conformance.h"
#include "kernels/cpu_reference_backend.h"
#include "kernels/cuda/add.cuh"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/get_rows.cuh"
#include "kernels/cuda/matvec.cuh"
#include "kernels/cuda/rms_norm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/store_kv.cuh"
#include "kernels/cuda/swiglu.cuh"
#include "kernels/ggml_type.h"
#include "kernels/quant_reference.h"
#include "portable_inputs.h"
// Last: it defines the CUDA language's names (threadIdx, min, ...) for the kernels' source.
#include "cuda_emulation.h"

namespace swarm::kernels {
namespace {

// Unscaled RoPE with this base and pairing.
RopeParams Plain(float freq_base, RopeStyle style) {
  RopeParams rope;
  rope.freq_base = freq_base;
  rope.style = style;
  return rope;
}

using testing::Nmse;
using testing::NormalVector;
using testing::PortableRandom;

struct HostWeight {
  std::vector<uint8_t> bytes;
  Weight weight;
  gpu::DeviceMatrix device;
};

HostWeight MakeWeight(PortableRandom& rng, GgmlType type, int64_t n_in, int64_t n_out) {
  HostWeight w;
  const size_t row_bytes = RowBytes(type, n_in).value();
  w.bytes.resize(row_bytes * static_cast<size_t>(n_out));
  for (int64_t r = 0; r < n_out; ++r) {
    const std::vector<float> row = NormalVector(rng, static_cast<size_t>(n_in), 0.1f);
    QuantizeRow(type, row.data(), w.bytes.data() + r * row_bytes, n_in);
  }
  w.weight = Weight{type, n_in, n_out, w.bytes.data()};
  w.device = gpu::DeviceMatrix{static_cast<gpu::WType>(type), n_in, n_out, w.bytes.data(),
                               static_cast<int64_t>(row_bytes)};
  return w;
}

constexpr GgmlType kAllTypes[] = {
    GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16, GgmlType::kQ8_0,   GgmlType::kQ4_0,
    GgmlType::kQ4_K, GgmlType::kQ6_K, GgmlType::kQ2_K, GgmlType::kQ3_K,   GgmlType::kIQ4_XS,
    GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kIQ4_NL, GgmlType::kQ5_K};

bool IsKQuant(GgmlType type) { return GetTypeTraits(type).value().block_size == kQK_K; }

class CudaKernelsOnHostTest : public ::testing::Test {
 protected:
  // The emulator's sticky error: a misaligned load or a bad launch inside a launcher.
  void SetUp() override { ASSERT_EQ(cuda_emulation::LastError(), cudaSuccess); }
  void TearDown() override { EXPECT_EQ(cuda_emulation::LastError(), cudaSuccess); }

  PortableRandom rng_{20261122};
  CpuReferenceBackend reference_;
};

TEST_F(CudaKernelsOnHostTest, MatVecEveryTypeThreadsPerRowAndTokenBlock) {
  for (GgmlType type : kAllTypes) {
    // Row lengths picking 32, 64 and 128 threads per row (by chunks per row), and for the float
    // types one that is not a multiple of 4 (one-element chunks, scalar activation loads).
    std::vector<int64_t> lengths;
    if (IsKQuant(type)) {
      lengths = {256, 1024, 4096};
    } else if (GetTypeTraits(type).value().block_size == 32) {  // Q8_0, Q4_0, Q4_1, Q5_0
      lengths = {64, 512, 2048};
    } else {
      lengths = {66, 172, 512, 2048};
    }
    for (int64_t n_in : lengths) {
      for (int64_t n_tokens : {1, 2, 3, 5}) {
        const int64_t n_out = 9;
        const HostWeight w = MakeWeight(rng_, type, n_in, n_out);
        const std::vector<float> x = NormalVector(rng_, static_cast<size_t>(n_in * n_tokens));
        std::vector<float> expected(static_cast<size_t>(n_out * n_tokens));
        std::vector<float> actual(expected.size(), NAN);
        reference_.MatMul(w.weight, x.data(), n_tokens, expected.data());
        ASSERT_EQ(gpu::LaunchMatVec(w.device, x.data(), n_tokens, actual.data(), nullptr),
                  cudaSuccess);
        EXPECT_LE(Nmse(actual, expected), 1e-9)
            << GgmlTypeName(type) << " n_in=" << n_in << " T=" << n_tokens;
      }
    }
  }
}

TEST_F(CudaKernelsOnHostTest, MatVecOfATokenDoesNotDependOnItsBatch) {
  const int64_t n_in = 512, n_out = 5, n_tokens = 6;
  const HostWeight w = MakeWeight(rng_, GgmlType::kQ4_K, n_in, n_out);
  const std::vector<float> x = NormalVector(rng_, static_cast<size_t>(n_in * n_tokens));
  std::vector<float> batched(static_cast<size_t>(n_out * n_tokens));
  ASSERT_EQ(gpu::LaunchMatVec(w.device, x.data(), n_tokens, batched.data(), nullptr), cudaSuccess);
  for (int64_t t = 0; t < n_tokens; ++t) {
    std::vector<float> alone(static_cast<size_t>(n_out));
    ASSERT_EQ(gpu::LaunchMatVec(w.device, x.data() + t * n_in, 1, alone.data(), nullptr),
              cudaSuccess);
    EXPECT_TRUE(std::equal(alone.begin(), alone.end(), batched.begin() + t * n_out)) << t;
  }
}

TEST_F(CudaKernelsOnHostTest, MisalignedActivationsTakeTheScalarPath) {
  // x one float past a 16-byte boundary: the launcher must not use float4 loads.
  const int64_t n_in = 64, n_out = 3;
  const HostWeight w = MakeWeight(rng_, GgmlType::kF32, n_in, n_out);
  std::vector<float> storage = NormalVector(rng_, static_cast<size_t>(n_in + 4));
  const float* x = storage.data() + 1;
  std::vector<float> expected(static_cast<size_t>(n_out)), actual(expected.size());
  reference_.MatMul(w.weight, x, 1, expected.data());
  ASSERT_EQ(gpu::LaunchMatVec(w.device, x, 1, actual.data(), nullptr), cudaSuccess);
  EXPECT_LE(Nmse(actual, expected), 1e-12);
}

TEST_F(CudaKernelsOnHostTest, GetRowsIsBitIdentical) {
  const std::vector<int32_t> ids = {3, 0, 7, 3, 1};
  for (GgmlType type : kAllTypes) {
    const int64_t n_in = IsKQuant(type) ? 512 : 96;
    const HostWeight table = MakeWeight(rng_, type, n_in, 8);
    const size_t size = static_cast<size_t>(n_in) * ids.size();
    std::vector<float> expected(size), actual(size, NAN);
    reference_.GetRows(table.weight, ids.data(), static_cast<int64_t>(ids.size()), expected.data());
    ASSERT_EQ(gpu::LaunchGetRows(table.device, ids.data(), static_cast<int64_t>(ids.size()),
                                 actual.data(), nullptr),
              cudaSuccess);
    EXPECT_EQ(actual, expected) << GgmlTypeName(type);
  }
}

TEST_F(CudaKernelsOnHostTest, DequantizeToF16MatchesTheReferenceRoundedToF16) {
  for (GgmlType type : kAllTypes) {
    const int64_t n_in = IsKQuant(type) ? 512 : 96, n_out = 3;
    const HostWeight w = MakeWeight(rng_, type, n_in, n_out);
    std::vector<uint16_t> actual(static_cast<size_t>(n_in * n_out));
    ASSERT_EQ(gpu::LaunchDequantizeToF16(w.device, actual.data(), nullptr), cudaSuccess);
    std::vector<float> row(static_cast<size_t>(n_in));
    for (int64_t r = 0; r < n_out; ++r) {
      DequantizeRow(type, w.bytes.data() + r * w.device.row_bytes, row.data(), n_in);
      for (int64_t i = 0; i < n_in; ++i) {
        const __half expected = __float2half_rn(row[static_cast<size_t>(i)]);
        uint16_t bits;
        std::memcpy(&bits, &expected, sizeof bits);
        ASSERT_EQ(actual[static_cast<size_t>(r * n_in + i)], bits)
            << GgmlTypeName(type) << " row " << r << " element " << i;
      }
    }
  }
}

TEST_F(CudaKernelsOnHostTest, ConvertF32ToF16AndBf16) {
  const std::vector<float> x = NormalVector(rng_, 1000, 3.0f);
  for (bool bf16 : {false, true}) {
    std::vector<uint16_t> actual(x.size());
    ASSERT_EQ(gpu::LaunchConvertF32(x.data(), static_cast<int64_t>(x.size()), bf16, actual.data(),
                                    nullptr),
              cudaSuccess);
    for (size_t i = 0; i < x.size(); ++i) {
      uint16_t bits;
      if (bf16) {
        const __nv_bfloat16 expected = __float2bfloat16_rn(x[i]);
        std::memcpy(&bits, &expected, sizeof bits);
      } else {
        const __half expected = __float2half_rn(x[i]);
        std::memcpy(&bits, &expected, sizeof bits);
      }
      ASSERT_EQ(actual[i], bits) << "bf16=" << bf16 << " element " << i;
    }
  }
}

TEST_F(CudaKernelsOnHostTest, RmsNormSwiGluAddAddBias) {
  for (int64_t n : {1, 64, 172, 700}) {
    for (int64_t n_tokens : {1, 3}) {
      const size_t size = static_cast<size_t>(n * n_tokens);
      const std::vector<float> x = NormalVector(rng_, size, 3.0f);
      const std::vector<float> x2 = NormalVector(rng_, size);
      const std::vector<float> weight = NormalVector(rng_, static_cast<size_t>(n));
      const std::string where = absl::StrCat("n=", n, " T=", n_tokens);

      std::vector<float> expected(size), actual(size, NAN);
      reference_.RmsNorm(x.data(), weight.data(), n, n_tokens, 1e-5f, expected.data());
      ASSERT_EQ(
          gpu::LaunchRmsNorm(x.data(), weight.data(), n, n_tokens, 1e-5f, actual.data(), nullptr),
          cudaSuccess);
      EXPECT_LE(Nmse(actual, expected), 1e-12) << where;

      reference_.SwiGlu(x.data(), x2.data(), n * n_tokens, expected.data());
      ASSERT_EQ(gpu::LaunchSwiGlu(x.data(), x2.data(), n * n_tokens, actual.data(), nullptr),
                cudaSuccess);
      EXPECT_LE(Nmse(actual, expected), 1e-12) << where;

      expected = x;
      actual = x;
      reference_.Add(expected.data(), x2.data(), n * n_tokens);
      ASSERT_EQ(gpu::LaunchAdd(actual.data(), x2.data(), n * n_tokens, nullptr), cudaSuccess);
      EXPECT_EQ(actual, expected) << where;

      reference_.AddBias(expected.data(), weight.data(), n, n_tokens);
      ASSERT_EQ(gpu::LaunchAddBias(actual.data(), weight.data(), n, n_tokens, nullptr),
                cudaSuccess);
      EXPECT_EQ(actual, expected) << where;
    }
  }
}

TEST_F(CudaKernelsOnHostTest, RopeBothStylesAtLargePositions) {
  const std::vector<int32_t> positions = {0, 1, 17, 4095, 100000};
  const int64_t n_tokens = static_cast<int64_t>(positions.size());
  for (RopeStyle style : {RopeStyle::kAdjacentPairs, RopeStyle::kNeox}) {
    for (int64_t head_dim : {8, 64, 128}) {
      const int64_t n_heads = 3;
      const std::vector<float> x =
          NormalVector(rng_, static_cast<size_t>(head_dim * n_heads * n_tokens));
      // Plain, and YaRN over Llama 3-style frequency factors.
      RopeParams plain = Plain(10000.0f, style);
      RopeParams scaled = plain;
      scaled.freq_scale = 0.125f;
      scaled.ext_factor = 1.0f;
      scaled.n_ctx_orig = 512;
      for (int64_t i = 0; i < head_dim / 2; ++i) scaled.freq_factors.push_back(1.0f + 0.25f * i);
      for (const RopeParams& rope : {plain, scaled}) {
        std::vector<float> expected = x, actual = x;
        reference_.Rope(expected.data(), head_dim, n_heads, n_tokens, positions.data(), rope);
        const RopeTable table = MakeRopeTable(rope, head_dim);
        gpu::RopeAngles angles{};
        std::copy(table.freq.begin(), table.freq.end(), angles.freq);
        angles.mscale = table.mscale;
        ASSERT_EQ(gpu::LaunchRope(actual.data(), head_dim, n_heads, n_tokens, positions.data(),
                                  angles, style == RopeStyle::kNeox, nullptr),
                  cudaSuccess);
        EXPECT_LE(Nmse(actual, expected), 1e-12)
            << "neox=" << (style == RopeStyle::kNeox) << " head_dim=" << head_dim
            << " scaled=" << (rope.ext_factor != 0.0f);
      }
    }
  }
}

struct AttentionCase {
  int64_t n_head, n_head_kv, head_dim;
  std::vector<int32_t> positions;
  int64_t capacity;
  int n_splits;  // decode only
};

std::string Describe(const AttentionCase& c) {
  return absl::StrCat("heads ", c.n_head, "/", c.n_head_kv, " head_dim ", c.head_dim,
                      " T=", c.positions.size(), " last position ", c.positions.back(), " splits ",
                      c.n_splits);
}

std::vector<int32_t> Range(int32_t first, int32_t count) {
  std::vector<int32_t> v(static_cast<size_t>(count));
  for (int32_t i = 0; i < count; ++i) v[static_cast<size_t>(i)] = first + i;
  return v;
}

TEST_F(CudaKernelsOnHostTest, StoreKvAndAttentionDecodeAndPrompt) {
  const AttentionCase cases[] = {
      // decode: one split, several splits (some of them empty), GQA groups of 1, 4, 8 and 16
      // (two head blocks), every elements-per-lane width
      {8, 4, 8, {0}, 8, 1},
      {8, 2, 32, {5}, 8, 4},
      {4, 4, 80, {40}, 48, 3},
      {16, 1, 64, {70}, 80, 32},
      {8, 1, 256, {9}, 16, 2},
      {4, 1, 128, {7, 8, 9}, 16, 2},
      {2, 1, 16, {3, 4}, 8, 1},
      // prompt (more than kDecodeMaxTokens tokens): one partial tile, two tiles, a late start, the
      // 48 KiB+ shared-memory path (head_dim 256)
      {4, 2, 64, Range(0, 5), 8, 1},
      {2, 1, 32, Range(0, 20), 24, 1},
      {2, 2, 128, Range(30, 12), 48, 1},
      {2, 1, 256, Range(0, 17), 17, 1},
      // rows of a few hundred positions, where a probability not rounded to f16 for an f16 V
      // cache shows (about 2e-8): decode with one split and with several, and prompt
      {4, 2, 64, {300}, 320, 1},
      {4, 2, 64, {299, 300}, 320, 5},
      {2, 1, 64, Range(290, 20), 320, 1},
  };
  const KvTypes cache_types[] = {{GgmlType::kF32, GgmlType::kF32},
                                 {GgmlType::kF16, GgmlType::kF16},
                                 {GgmlType::kQ8_0, GgmlType::kQ8_0},
                                 {GgmlType::kQ8_0, GgmlType::kF16},
                                 {GgmlType::kF16, GgmlType::kF32}};
  for (const KvTypes types : cache_types) {
    const bool q8 = types.k == GgmlType::kQ8_0 || types.v == GgmlType::kQ8_0;
    for (const AttentionCase& c : cases) {
      if (q8 && c.head_dim % kQK8_0 != 0) continue;
      const std::string what = Describe(c) + " cache=" + KvTypesText(types);
      const int64_t n_tokens = static_cast<int64_t>(c.positions.size());
      const int64_t kv_dim = c.head_dim * c.n_head_kv;
      const size_t q_size = static_cast<size_t>(c.head_dim * c.n_head * n_tokens);
      const std::vector<float> q = NormalVector(rng_, q_size, 2.0f);
      const std::vector<float> k = NormalVector(rng_, static_cast<size_t>(kv_dim * n_tokens));
      const std::vector<float> v = NormalVector(rng_, static_cast<size_t>(kv_dim * n_tokens));
      // Earlier cache contents (random bytes are not valid values of every type: start from
      // stored floats).
      const size_t k_row = KvRowBytes(types.k, kv_dim), v_row = KvRowBytes(types.v, kv_dim);
      std::vector<uint8_t> expected_k(k_row * c.capacity), expected_v(v_row * c.capacity);
      {
        const std::vector<float> old = NormalVector(rng_, static_cast<size_t>(kv_dim * c.capacity));
        const std::vector<int32_t> all = Range(0, static_cast<int32_t>(c.capacity));
        reference_.StoreKv(old.data(), old.data(), kv_dim, c.capacity, all.data(), types,
                           expected_k.data(), expected_v.data());
      }
      std::vector<uint8_t> actual_k = expected_k, actual_v = expected_v;

      reference_.StoreKv(k.data(), v.data(), kv_dim, n_tokens, c.positions.data(), types,
                         expected_k.data(), expected_v.data());
      ASSERT_EQ(gpu::LaunchStoreKv(k.data(), v.data(), kv_dim, n_tokens, c.positions.data(),
                                   static_cast<uint32_t>(types.k), static_cast<uint32_t>(types.v),
                                   actual_k.data(), actual_v.data(), nullptr),
                cudaSuccess);
      EXPECT_EQ(actual_k, expected_k) << what;
      EXPECT_EQ(actual_v, expected_v) << what;

      std::vector<float> expected(q_size), actual(q_size, NAN);
      AttentionShape shape{c.n_head, c.n_head_kv, c.head_dim};
      shape.cache = types;
      reference_.Attention(q.data(), expected_k.data(), expected_v.data(), shape, n_tokens,
                           c.positions.data(), expected.data());
      std::vector<float> partials(static_cast<size_t>(
          gpu::AttentionPartialFloats(c.n_head, c.head_dim, n_tokens, c.n_splits)));
      gpu::AttentionArgs args;
      args.q = q.data();
      args.k_cache = actual_k.data();
      args.v_cache = actual_v.data();
      args.k_type = static_cast<uint32_t>(types.k);
      args.v_type = static_cast<uint32_t>(types.v);
      args.n_head = c.n_head;
      args.n_head_kv = c.n_head_kv;
      args.head_dim = c.head_dim;
      args.n_tokens = n_tokens;
      args.positions = c.positions.data();
      args.out = actual.data();
      args.n_splits = c.n_splits;
      args.partials = partials.empty() ? nullptr : partials.data();
      ASSERT_EQ(gpu::LaunchAttention(args, nullptr), cudaSuccess) << what;
      // The kernels round where the reference rounds (kernels/kv_types.h); with an f16 V cache
      // a probability may now and then land on the other side of an f16 rounding boundary: one
      // f16 step on one weight, up to about 1e-7 in a row of a few positions, far less in a row
      // of hundreds.
      const bool short_row = *std::min_element(c.positions.begin(), c.positions.end()) < 256;
      const double bound = types.v == GgmlType::kF16 && short_row ? 2e-7 : 1e-9;
      EXPECT_LE(Nmse(actual, expected), bound) << what;
    }
  }
}

TEST_F(CudaKernelsOnHostTest, DecodeSplitCountDependsOnShapeNotOnCacheLength) {
  // Two waves over 132 SMs (H100 SXM): 32 heads / 8 KV heads, one token -> 8 blocks -> 32 splits.
  EXPECT_EQ(gpu::AttentionDecodeSplits(32, 8, 1, 132), 32);
  EXPECT_EQ(gpu::AttentionDecodeSplits(32, 32, 4, 132), 3);
  EXPECT_EQ(gpu::AttentionDecodeSplits(32, 8, 1, 0), 1);
  EXPECT_EQ(gpu::AttentionPartialFloats(32, 128, 1, 1), 0);
  EXPECT_EQ(gpu::AttentionPartialFloats(32, 128, 2, 4), 4 * 32 * 2 * 130);
}

TEST_F(CudaKernelsOnHostTest, LaunchersRefuseShapesTheKernelsCannotTake) {
  gpu::AttentionArgs args;
  std::vector<float> buffer(64);
  const int32_t position = 0;
  args.q = buffer.data();
  args.k_cache = args.v_cache = buffer.data();
  args.out = buffer.data();
  args.positions = &position;
  args.n_tokens = 1;
  args.n_head = 3;
  args.n_head_kv = 2;  // not a divisor
  args.head_dim = 8;
  EXPECT_EQ(gpu::LaunchAttention(args, nullptr), cudaErrorInvalidValue);
  args.n_head = 2;
  args.head_dim = 512;  // above kMaxHeadDim
  EXPECT_EQ(gpu::LaunchAttention(args, nullptr), cudaErrorInvalidValue);
  args.head_dim = 8;
  args.n_splits = 2;  // without partials
  EXPECT_EQ(gpu::LaunchAttention(args, nullptr), cudaErrorInvalidValue);
  args.n_splits = 1;
  args.k_type = static_cast<uint32_t>(GgmlType::kQ8_0);  // head_dim 8: no whole q8_0 block
  EXPECT_EQ(gpu::LaunchAttention(args, nullptr), cudaErrorInvalidValue);
  args.k_type = static_cast<uint32_t>(GgmlType::kQ4_0);  // not a KV cache type
  EXPECT_EQ(gpu::LaunchAttention(args, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(gpu::LaunchStoreKv(buffer.data(), buffer.data(), 8, 1, &position,
                               static_cast<uint32_t>(GgmlType::kQ8_0),
                               static_cast<uint32_t>(GgmlType::kF16), buffer.data(), buffer.data(),
                               nullptr),
            cudaErrorInvalidValue);

  const HostWeight w = MakeWeight(rng_, GgmlType::kQ8_0, 64, 2);
  gpu::DeviceMatrix bad = w.device;
  bad.n_in = 48;  // not a whole number of Q8_0 blocks
  EXPECT_EQ(gpu::LaunchMatVec(bad, buffer.data(), 1, buffer.data(), nullptr),
            cudaErrorInvalidValue);
  const gpu::RopeAngles angles{};
  EXPECT_EQ(gpu::LaunchRope(buffer.data(), 7, 1, 1, &position, angles, false, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(
      gpu::LaunchRope(buffer.data(), gpu::kMaxHeadDim + 2, 1, 1, &position, angles, false, nullptr),
      cudaErrorInvalidValue);
}

// Half a warp at __syncthreads, the other half at __syncwarp: a deadlock on a device.
__global__ void DivergentBarrierKernel() {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncwarp();
  }
}

TEST(CudaEmulatorTest, DivergentBarriersAbortWithAMessageInsteadOfHanging) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(SWARM_LAUNCH(dim3(1), dim3(32), 0, nullptr, DivergentBarrierKernel)(),
               "divergent synchronization");
}

TEST(CudaEmulatorTest, LaunchesOutsideTheDeviceLimitsAreErrors) {
  SWARM_LAUNCH(dim3(1), dim3(2048), 0, nullptr, DivergentBarrierKernel)();
  EXPECT_EQ(cuda_emulation::LastError(), cudaErrorInvalidConfiguration);
  SWARM_LAUNCH(dim3(1, 70000), dim3(32), 0, nullptr, DivergentBarrierKernel)();
  EXPECT_EQ(cuda_emulation::LastError(), cudaErrorInvalidConfiguration);
  SWARM_LAUNCH(dim3(1), dim3(32), 49 * 1024, nullptr, DivergentBarrierKernel)();
  EXPECT_EQ(cuda_emulation::LastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cuda_emulation::LastError(), cudaSuccess);  // reported once
}

}  // namespace
}  // namespace swarm::kernels
