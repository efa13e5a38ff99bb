// CUDA kernels against CpuReferenceBackend on the cases the shared conformance harness does not
// reach: every code path of each kernel (vector/scalar loads, every token-block width, the cuBLAS
// threshold, head sizes 8..256, split attention over long caches), the bit-exact operations, batch
// invariance of the mat-vec path, and CUDA-graph replay equal to uncaptured runs. Skipped, with
// the reason, where no GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backend_conformance.h"
#include "kernels/cpu_reference_backend.h"
#include "kernels/ggml_type.h"
#include "kernels/quant_reference.h"
#include "portable_inputs.h"
#if SWARM_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

#if SWARM_HAVE_CUDA && defined(__SANITIZE_ADDRESS__)
extern "C" const char* __asan_default_options() { return "protect_shadow_gap=0"; }
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libcuda.so\nleak:libcudart.so\nleak:libcublas\nleak:libnccl.so\n";
}
#endif

namespace swarm::kernels {
namespace {

// Unscaled RoPE with this base and pairing.
RopeParams Plain(float freq_base, RopeStyle style) {
  RopeParams rope;
  rope.freq_base = freq_base;
  rope.style = style;
  return rope;
}

#if !SWARM_HAVE_CUDA

TEST(CudaOps, Skipped) { GTEST_SKIP() << "this build has no CUDA backend (no toolkit found)"; }

#else

using testing::Nmse;
using testing::NormalVector;
using testing::PortableRandom;

// Backend memory holding host vectors; everything is freed with it.
class Memory {
 public:
  explicit Memory(Backend& b) : b_(b) {}
  float* Upload(const std::vector<float>& v) {
    auto buffer = b_.Allocate(v.size() * sizeof(float));
    EXPECT_TRUE(buffer.ok()) << buffer.status();
    EXPECT_TRUE(b_.CopyToBackend((*buffer)->data(), v.data(), v.size() * sizeof(float)).ok());
    buffers_.push_back(std::move(*buffer));
    return static_cast<float*>(buffers_.back()->data());
  }
  float* Zeros(size_t n) { return Upload(std::vector<float>(n, 0.0f)); }
  Weight Prepare(const Weight& host) {
    auto w = b_.PrepareWeight(host, buffers_);
    EXPECT_TRUE(w.ok()) << w.status();
    return *w;
  }
  std::vector<float> Download(const float* p, size_t n) {
    std::vector<float> v(n);
    EXPECT_TRUE(b_.CopyToHost(v.data(), p, n * sizeof(float)).ok());
    const absl::Status status = b_.Synchronize();
    EXPECT_TRUE(status.ok()) << status;
    return v;
  }

 private:
  Backend& b_;
  std::vector<std::unique_ptr<Buffer> > buffers_;
};

// A weight of `type` made from normal values, with its bytes.
struct HostWeight {
  std::vector<uint8_t> bytes;
  Weight weight;
};

HostWeight MakeWeight(PortableRandom& rng, GgmlType type, int64_t n_in, int64_t n_out) {
  HostWeight w;
  const size_t row_bytes = RowBytes(type, n_in).value();
  w.bytes.resize(row_bytes * n_out);
  for (int64_t r = 0; r < n_out; ++r) {
    const std::vector<float> row = NormalVector(rng, static_cast<size_t>(n_in), 0.1f);
    QuantizeRow(type, row.data(), w.bytes.data() + r * row_bytes, n_in);
  }
  w.weight = Weight{type, n_in, n_out, w.bytes.data()};
  return w;
}

class CudaOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto count = CudaDeviceCount();
    if (!count.ok()) GTEST_SKIP() << "no CUDA GPU: " << count.status().message();
    auto backend = CudaBackend::Create({});
    ASSERT_TRUE(backend.ok()) << backend.status();
    cuda_ = std::move(*backend);
  }

  // y = w · x on both backends.
  std::pair<std::vector<float>, std::vector<float> > MatMulBoth(const HostWeight& w,
                                                                const std::vector<float>& x,
                                                                int64_t n_tokens) {
    std::vector<std::vector<float> > out;
    for (Backend* b : {static_cast<Backend*>(&reference_), static_cast<Backend*>(cuda_.get())}) {
      Memory mem(*b);
      const Weight dw = mem.Prepare(w.weight);
      const float* dx = mem.Upload(x);
      float* dy = mem.Zeros(static_cast<size_t>(w.weight.n_out * n_tokens));
      b->MatMul(dw, dx, n_tokens, dy);
      out.push_back(mem.Download(dy, static_cast<size_t>(w.weight.n_out * n_tokens)));
    }
    return {out[1], out[0]};
  }

  PortableRandom rng_{42};
  CpuReferenceBackend reference_;
  std::unique_ptr<CudaBackend> cuda_;
};

// The mat-vec kernels (batches up to 16) keep activations in float: only float summation order
// differs from the double-accumulating reference. Larger batches go through cuBLAS: f16/bf16
// activations (and f16-dequantized weights) cost more.
double MatMulBound(GgmlType type, int64_t n_tokens) {
  if (n_tokens <= 16 || type == GgmlType::kF32) return 1e-9;
  if (type == GgmlType::kBF16) return 5e-5;
  return 1e-5;
}

TEST_F(CudaOpsTest, MatMulEveryTypeEveryPath) {
  const GgmlType types[] = {GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16,   GgmlType::kQ8_0,
                            GgmlType::kQ4_0, GgmlType::kQ4_K, GgmlType::kQ6_K,   GgmlType::kQ4_1,
                            GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kIQ4_NL, GgmlType::kQ5_K};
  for (GgmlType type : types) {
    const int64_t block = GetTypeTraits(type).value().block_size;
    const bool k_quant = block == kQK_K;
    std::vector<int64_t> row_lengths = {k_quant ? 256 : 64, k_quant ? 2048 : 4096};
    if (block == 1) {
      row_lengths.push_back(172);  // stories260K's n_ff
      row_lengths.push_back(66);   // not a multiple of 4: scalar loads
    }
    for (int64_t n_in : row_lengths) {
      for (int64_t n_tokens : {1, 2, 3, 4, 7, 9, 16, 17, 40}) {
        const int64_t n_out = 37;
        const HostWeight w = MakeWeight(rng_, type, n_in, n_out);
        const std::vector<float> x = NormalVector(rng_, static_cast<size_t>(n_in * n_tokens));
        auto [actual, expected] = MatMulBoth(w, x, n_tokens);
        EXPECT_LE(Nmse(actual, expected), MatMulBound(type, n_tokens))
            << GgmlTypeName(type) << " n_in=" << n_in << " T=" << n_tokens;
      }
    }
  }
}

TEST_F(CudaOpsTest, MatVecResultsDoNotDependOnTheBatch) {
  for (GgmlType type : {GgmlType::kF32, GgmlType::kQ4_K, GgmlType::kQ8_0}) {
    const int64_t n_in = 2048, n_out = 64;
    const HostWeight w = MakeWeight(rng_, type, n_in, n_out);
    const std::vector<float> x = NormalVector(rng_, static_cast<size_t>(n_in * 16));
    Memory mem(*cuda_);
    const Weight dw = mem.Prepare(w.weight);
    const float* dx = mem.Upload(x);
    float* batch = mem.Zeros(static_cast<size_t>(n_out * 16));
    float* single = mem.Zeros(static_cast<size_t>(n_out));
    cuda_->MatMul(dw, dx, 16, batch);
    const std::vector<float> batched = mem.Download(batch, static_cast<size_t>(n_out * 16));
    for (int64_t t = 0; t < 16; ++t) {
      cuda_->MatMul(dw, dx + t * n_in, 1, single);
      const std::vector<float> alone = mem.Download(single, static_cast<size_t>(n_out));
      EXPECT_TRUE(std::equal(alone.begin(), alone.end(), batched.begin() + t * n_out))
          << GgmlTypeName(type) << " token " << t;
    }
  }
}

TEST_F(CudaOpsTest, GetRowsIsBitIdentical) {
  const GgmlType types[] = {GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16,   GgmlType::kQ8_0,
                            GgmlType::kQ4_0, GgmlType::kQ4_K, GgmlType::kQ6_K,   GgmlType::kQ4_1,
                            GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kIQ4_NL, GgmlType::kQ5_K};
  const std::vector<int32_t> ids = {3, 0, 7, 3, 1};
  for (GgmlType type : types) {
    const int64_t n_in = GetTypeTraits(type).value().block_size == kQK_K ? 512 : 96;
    const HostWeight table = MakeWeight(rng_, type, n_in, 8);
    std::vector<std::vector<float> > out;
    for (Backend* b : {static_cast<Backend*>(&reference_), static_cast<Backend*>(cuda_.get())}) {
      Memory mem(*b);
      const Weight dt = mem.Prepare(table.weight);
      float* dout = mem.Zeros(static_cast<size_t>(n_in) * ids.size());
      b->GetRows(dt, ids.data(), static_cast<int64_t>(ids.size()), dout);
      out.push_back(mem.Download(dout, static_cast<size_t>(n_in) * ids.size()));
    }
    EXPECT_EQ(out[1], out[0]) << GgmlTypeName(type);
  }
}

TEST_F(CudaOpsTest, ElementwiseOps) {
  for (int64_t n : {1, 64, 172, 5000}) {
    for (int64_t n_tokens : {1, 3, 20}) {
      const std::vector<float> x = NormalVector(rng_, static_cast<size_t>(n * n_tokens), 3.0f);
      const std::vector<float> x2 = NormalVector(rng_, static_cast<size_t>(n * n_tokens));
      const std::vector<float> weight = NormalVector(rng_, static_cast<size_t>(n));
      std::vector<std::vector<float> > norm, glu, add, bias;
      for (Backend* b : {static_cast<Backend*>(&reference_), static_cast<Backend*>(cuda_.get())}) {
        Memory mem(*b);
        const size_t size = static_cast<size_t>(n * n_tokens);
        float* dx = mem.Upload(x);
        float* dx2 = mem.Upload(x2);
        float* dw = mem.Upload(weight);
        float* dy = mem.Zeros(size);
        b->RmsNorm(dx, dw, n, n_tokens, 1e-5f, dy);
        norm.push_back(mem.Download(dy, size));
        b->SwiGlu(dx, dx2, n * n_tokens, dy);
        glu.push_back(mem.Download(dy, size));
        b->Add(dx, dx2, n * n_tokens);
        add.push_back(mem.Download(dx, size));
        b->AddBias(dx2, dw, n, n_tokens);
        bias.push_back(mem.Download(dx2, size));
      }
      const std::string where = absl::StrCat("n=", n, " T=", n_tokens);
      EXPECT_LE(Nmse(norm[1], norm[0]), 1e-12) << where;
      EXPECT_LE(Nmse(glu[1], glu[0]), 1e-12) << where;
      EXPECT_EQ(add[1], add[0]) << where;
      EXPECT_EQ(bias[1], bias[0]) << where;
    }
  }
}

TEST_F(CudaOpsTest, RopeBothStylesAtLargePositions) {
  const std::vector<int32_t> positions = {0, 1, 17, 511, 4095, 100000};
  const int64_t n_tokens = static_cast<int64_t>(positions.size());
  for (RopeStyle style : {RopeStyle::kAdjacentPairs, RopeStyle::kNeox}) {
    for (int64_t head_dim : {8, 64, 128}) {
      const int64_t n_heads = 3;
      const std::vector<float> x =
          NormalVector(rng_, static_cast<size_t>(head_dim * n_heads * n_tokens));
      std::vector<std::vector<float> > out;
      for (Backend* b : {static_cast<Backend*>(&reference_), static_cast<Backend*>(cuda_.get())}) {
        Memory mem(*b);
        float* dx = mem.Upload(x);
        b->Rope(dx, head_dim, n_heads, n_tokens, positions.data(), Plain(10000.0f, style));
        out.push_back(mem.Download(dx, x.size()));
      }
      EXPECT_LE(Nmse(out[1], out[0]), 1e-12)
          << "neox=" << (style == RopeStyle::kNeox) << " head_dim=" << head_dim;
    }
  }
}

TEST_F(CudaOpsTest, StoreKvAndAttentionDecodeAndPrompt) {
  struct Shape {
    int64_t n_head, n_head_kv, head_dim;
  };
  const Shape shapes[] = {{8, 4, 8},  {32, 4, 64}, {14, 2, 128},
                          {4, 4, 80}, {8, 1, 256}, {24, 2, 64}};
  struct Batch {
    std::vector<int32_t> positions;
    int64_t capacity;
  };
  std::vector<int32_t> prompt(40), late_prompt(20), long_prompt(300);
  for (int i = 0; i < 40; ++i) prompt[i] = i;
  for (int i = 0; i < 20; ++i) late_prompt[i] = 100 + i;
  for (int i = 0; i < 300; ++i) long_prompt[i] = i;
  const Batch batches[] = {{{0}, 8},     {{5}, 8},           {{2999}, 3000},    {{7, 8, 9}, 16},
                           {prompt, 64}, {late_prompt, 128}, {long_prompt, 300}};
  for (const Shape& s : shapes) {
    for (const Batch& batch : batches) {
      const int64_t n_tokens = static_cast<int64_t>(batch.positions.size());
      const int64_t kv_dim = s.head_dim * s.n_head_kv;
      const std::vector<float> q =
          NormalVector(rng_, static_cast<size_t>(s.head_dim * s.n_head * n_tokens), 2.0f);
      const std::vector<float> k = NormalVector(rng_, static_cast<size_t>(kv_dim * n_tokens));
      const std::vector<float> v = NormalVector(rng_, static_cast<size_t>(kv_dim * n_tokens));
      const std::vector<float> cache_k =
          NormalVector(rng_, static_cast<size_t>(kv_dim * batch.capacity));
      const std::vector<float> cache_v =
          NormalVector(rng_, static_cast<size_t>(kv_dim * batch.capacity));
      std::vector<std::vector<float> > att, stored;
      for (Backend* b : {static_cast<Backend*>(&reference_), static_cast<Backend*>(cuda_.get())}) {
        Memory mem(*b);
        float* dq = mem.Upload(q);
        float* dk = mem.Upload(k);
        float* dv = mem.Upload(v);
        float* dck = mem.Upload(cache_k);
        float* dcv = mem.Upload(cache_v);
        float* dout = mem.Zeros(q.size());
        b->StoreKv(dk, dv, kv_dim, n_tokens, batch.positions.data(), KvTypes{}, dck, dcv);
        b->Attention(dq, dck, dcv, AttentionShape{s.n_head, s.n_head_kv, s.head_dim}, n_tokens,
                     batch.positions.data(), dout);
        att.push_back(mem.Download(dout, q.size()));
        stored.push_back(mem.Download(dcv, cache_v.size()));
      }
      const std::string where =
          absl::StrCat("heads ", s.n_head, "/", s.n_head_kv, " head_dim ", s.head_dim,
                       " T=", n_tokens, " last position ", batch.positions.back());
      EXPECT_EQ(stored[1], stored[0]) << where;
      EXPECT_LE(Nmse(att[1], att[0]), 1e-9) << where;
    }
  }
}

// One decode "step" (upload, rope, store, attention, download) captured once and replayed at
// advancing positions gives the same bits as running it uncaptured.
TEST_F(CudaOpsTest, GraphReplayEqualsUncapturedSteps) {
  const AttentionShape shape{8, 2, 64};
  const int64_t kv_dim = shape.head_dim * shape.n_head_kv, q_dim = shape.head_dim * shape.n_head;
  const int64_t capacity = 64;
  Memory mem(*cuda_);
  std::vector<float> zeros(static_cast<size_t>(kv_dim * capacity), 0.0f);
  float* graph_k = mem.Upload(zeros);
  float* graph_v = mem.Upload(zeros);
  float* eager_k = mem.Upload(zeros);
  float* eager_v = mem.Upload(zeros);
  float* q = mem.Zeros(static_cast<size_t>(q_dim));
  float* kv = mem.Zeros(static_cast<size_t>(kv_dim));
  float* out = mem.Zeros(static_cast<size_t>(q_dim));

  // Host buffers bound to the graph: refilled before each replay.
  std::vector<float> host_q(static_cast<size_t>(q_dim)), host_kv(static_cast<size_t>(kv_dim));
  std::vector<float> host_out(static_cast<size_t>(q_dim));
  int32_t position = 0;
  auto step = [&](float* k_cache, float* v_cache) {
    EXPECT_TRUE(cuda_->CopyToBackend(q, host_q.data(), host_q.size() * sizeof(float)).ok());
    EXPECT_TRUE(cuda_->CopyToBackend(kv, host_kv.data(), host_kv.size() * sizeof(float)).ok());
    const RopeParams rope = Plain(10000.0f, RopeStyle::kNeox);
    cuda_->Rope(q, shape.head_dim, shape.n_head, 1, &position, rope);
    cuda_->Rope(kv, shape.head_dim, shape.n_head_kv, 1, &position, rope);
    cuda_->StoreKv(kv, kv, kv_dim, 1, &position, KvTypes{}, k_cache, v_cache);
    cuda_->Attention(q, k_cache, v_cache, shape, 1, &position, out);
    EXPECT_TRUE(cuda_->CopyToHost(host_out.data(), out, host_out.size() * sizeof(float)).ok());
  };
  auto fill = [&](int32_t p) {
    PortableRandom rng(1000 + p);
    for (float& x : host_q) x = rng.Normal();
    for (float& x : host_kv) x = rng.Normal();
  };

  // Warm-up step uncaptured (allocates the attention scratch), then capture at position 1.
  fill(0);
  step(graph_k, graph_v);
  ASSERT_TRUE(cuda_->Synchronize().ok());
  ASSERT_TRUE(cuda_->BeginCapture(size_t{1} << 20).ok());
  step(graph_k, graph_v);
  auto graph = cuda_->EndCapture();
  ASSERT_TRUE(graph.ok()) << graph.status();

  // The eager twin replays the same history.
  position = 0;
  fill(0);
  step(eager_k, eager_v);
  ASSERT_TRUE(cuda_->Synchronize().ok());
  for (position = 1; position < 40; ++position) {
    fill(position);
    step(eager_k, eager_v);
    ASSERT_TRUE(cuda_->Synchronize().ok());
    const std::vector<float> eager = host_out;
    fill(position);
    ASSERT_TRUE(cuda_->Launch(**graph).ok());
    ASSERT_TRUE(cuda_->Synchronize().ok());
    ASSERT_EQ(host_out, eager) << "position " << position;
  }
}

TEST_F(CudaOpsTest, AGraphGoesStaleWhenScratchIsReallocated) {
  Memory mem(*cuda_);
  float* x = mem.Zeros(64);
  ASSERT_TRUE(cuda_->BeginCapture(4096).ok());
  cuda_->Add(x, x, 64);
  auto graph = cuda_->EndCapture();
  ASSERT_TRUE(graph.ok()) << graph.status();
  ASSERT_TRUE(cuda_->Launch(**graph).ok());
  ASSERT_TRUE(cuda_->Synchronize().ok());
  // A long decode needs the attention scratch: allocating it invalidates earlier graphs.
  const AttentionShape shape{32, 8, 128};
  const int64_t capacity = 4096, kv_dim = shape.n_head_kv * shape.head_dim;
  float* cache = mem.Zeros(static_cast<size_t>(kv_dim * capacity));
  float* q = mem.Zeros(static_cast<size_t>(shape.n_head * shape.head_dim));
  const int32_t position = 4000;
  cuda_->Attention(q, cache, cache, shape, 1, &position, q);
  ASSERT_TRUE(cuda_->Synchronize().ok());
  EXPECT_EQ(cuda_->Launch(**graph).code(), absl::StatusCode::kFailedPrecondition);
}

#endif  // SWARM_HAVE_CUDA

}  // namespace
}  // namespace swarm::kernels
