// MultiGpuStack and the GPU engine on the real stories260K model. On CPU backends (always run): the
// spread-out stack gives bit-identical hidden states to BlockStack for any number of segments, and
// over every part of its span through the ServingStack interface a peer uses. On a GPU (skipped,
// with the reason, where none is present): the reference text exactly, from the CUDA backend
// alone, from a stack split over GPU segments with CUDA graphs (whose replays over parts of the
// span give the eager bits), over two GPUs with NCCL when there are two, and from a chain of a CPU
// peer and a GPU peer.
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/backend_factory.h"
#include "kernels/cpu_reference_backend.h"
#include "model/generator.h"
#include "model/gguf.h"
#include "model/model_weights.h"
#include "shard/block_stack.h"
#include "shard/local_model.h"
#include "shard/local_pipeline.h"
#include "shard/multi_gpu_stack.h"
#include "shard/serving_stack.h"
#include "support/files.h"
#include "support/shared_model.h"
#if SWARM_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

#if SWARM_HAVE_CUDA && defined(__SANITIZE_ADDRESS__)
// See tests/kernels/test_cuda_backend.cpp: lets the CUDA driver start under ASan.
extern "C" const char* __asan_default_options() { return "protect_shadow_gap=0"; }
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libcuda.so\nleak:libcudart.so\nleak:libcublas\nleak:libnccl.so\n";
}
#endif

namespace swarm::shard {
namespace {

const std::string& kModel = test_support::kSharedModel;

#if SWARM_CUDA_EMULATED
// On the emulated GPU (tests/kernels/cuda_emulation), where every CUDA thread is a fiber, the
// greedy runs are shorter and compared with the reference's beginning.
constexpr int kGreedyTokens = 50;
#else
constexpr int kGreedyTokens = 200;
#endif

using test_support::ReadFile;

// Blocks [0, k) on one stack and [k, L) on another: two peers of a chain, in-process.
class ChainPipeline : public model::BlockPipeline {
 public:
  ChainPipeline(BlockStack& a, BlockStack& b, int64_t capacity)
      : a_(a), b_(b), cache_a_(*a.NewCache(capacity)), cache_b_(*b.NewCache(capacity)) {}
  absl::Status Forward(int64_t n_tokens, const float* hidden_in, float* hidden_out) override {
    const SequenceStep sa{cache_a_.get(), n_tokens}, sb{cache_b_.get(), n_tokens};
    std::vector<float> between(static_cast<size_t>(a_.config().n_embd * n_tokens));
    absl::Status status = a_.Forward({&sa, 1}, hidden_in, between.data());
    if (!status.ok()) return status;
    return b_.Forward({&sb, 1}, between.data(), hidden_out);
  }

 private:
  BlockStack& a_;
  BlockStack& b_;
  std::unique_ptr<SequenceCache> cache_a_, cache_b_;
};

class MultiGpuStackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kernels::BackendOptions options;
    options.name = "reference";
    auto m = LocalModel::Load(kModel, options);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
    auto blocks = model::LoadBlockWeights(*model_->file, model_->config, 0, model_->config.n_layer);
    ASSERT_TRUE(blocks.ok()) << blocks.status();
    blocks_ = std::move(*blocks);
  }

  std::vector<float> Embed(const std::vector<int32_t>& tokens) {
    std::vector<float> x(model_->config.n_embd * tokens.size());
    EXPECT_TRUE(model_->head->Embed(tokens, x.data()).ok());
    return x;
  }

  // The greedy continuation of BOS (kGreedyTokens) through `blocks`, with the CPU client head.
  std::string Greedy(model::BlockPipeline& blocks) {
    model::SamplingParams greedy;
    greedy.temperature = 0;
    model::Sampler sampler(greedy);
    model::StreamingDecoder decoder(*model_->tokenizer);
    std::string text;
    model::GenerateOptions options;
    options.max_new_tokens = kGreedyTokens;
    const std::vector<int32_t> prompt = {model_->tokenizer->bos_id()};
    auto stats = model::Generate(prompt, options, *model_->head, blocks, sampler,
                                 *model_->tokenizer, [&](int32_t token) {
                                   text += decoder.Push(token);
                                   return true;
                                 });
    EXPECT_TRUE(stats.ok()) << stats.status();
    return text + decoder.Finish();
  }

  // The reference continuation (200 tokens) without the newline its writer put at the end, cut
  // to the length of `text` when the run was shorter.
  std::string ReferenceText(const std::string& text) {
    std::string reference = ReadFile(test_support::kSharedReferenceText);
    if (!reference.empty() && reference.back() == '\n') reference.pop_back();
    if (kGreedyTokens < 200) {
      EXPECT_GT(text.size(), 100u) << "a short run, yet too short to mean anything";
      return reference.substr(0, text.size());
    }
    return reference;
  }

  std::unique_ptr<LocalModel> model_;
  std::vector<model::BlockWeights> blocks_;
};

// Segments on separate CPU backends (activations meet in host memory) give the same bits as one
// BlockStack, for prompts, decode steps and a batch of two sequences.
TEST_F(MultiGpuStackTest, MatchesBlockStackBitForBitOnCpuBackends) {
  const int64_t n_layer = model_->config.n_layer;
  for (int n_backends : {1, 2, 3, 5}) {
    std::vector<std::unique_ptr<kernels::Backend>> owned;
    std::vector<kernels::Backend*> backends;
    for (int i = 0; i < n_backends; ++i) {
      owned.push_back(kernels::MakeCpuReferenceBackend());
      backends.push_back(owned.back().get());
    }
    auto multi = MultiGpuStack::Create(backends, model_->config, blocks_);
    ASSERT_TRUE(multi.ok()) << multi.status();
    ASSERT_EQ((*multi)->n_segments(), n_backends);
    EXPECT_EQ((*multi)->segment_blocks(0).first, 0);
    EXPECT_EQ((*multi)->segment_blocks(n_backends - 1).second, n_layer);
    EXPECT_FALSE((*multi)->uses_nccl());

    auto a_single = *model_->blocks->NewCache(16), b_single = *model_->blocks->NewCache(16);
    auto a_multi = *(*multi)->NewCache(16), b_multi = *(*multi)->NewCache(16);
    auto run = [&](const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
      std::vector<float> x = Embed(a), xb = Embed(b);
      x.insert(x.end(), xb.begin(), xb.end());
      std::vector<float> expected(x.size()), actual(x.size());
      const int64_t na = static_cast<int64_t>(a.size()), nb = static_cast<int64_t>(b.size());
      const SequenceStep single[] = {{a_single.get(), na}, {b_single.get(), nb}};
      const SequenceStep spread[] = {{a_multi.get(), na}, {b_multi.get(), nb}};
      ASSERT_TRUE(model_->blocks->Forward(single, x.data(), expected.data()).ok());
      ASSERT_TRUE((*multi)->Forward(spread, x.data(), actual.data()).ok());
      ASSERT_EQ(actual, expected) << n_backends << " backends";
    };
    run({1, 403, 407, 261}, {1, 261});
    run({300}, {42});
    run({17}, {18});
    EXPECT_EQ(a_multi->length(), 6);
    EXPECT_EQ(b_multi->length(), 4);
  }
}

// A route may use part of a peer's span: every sub-range [first, last) over segments [0, 2) [2, 4)
// [4, 5) gives BlockStack's bits, through the ServingStack interface the peer server uses, and a
// rewound cache redoes a step.
TEST_F(MultiGpuStackTest, SubRangesMatchBlockStackThroughTheServingInterface) {
  const int64_t n_layer = model_->config.n_layer;
  std::vector<std::unique_ptr<kernels::Backend>> owned;
  std::vector<kernels::Backend*> backends;
  for (int i = 0; i < 3; ++i) {
    owned.push_back(kernels::MakeCpuReferenceBackend());
    backends.push_back(owned.back().get());
  }
  auto multi = MultiGpuStack::Create(backends, model_->config, blocks_);
  ASSERT_TRUE(multi.ok()) << multi.status();
  ServingStack& spread = **multi;
  ServingStack& single = *model_->blocks;
  EXPECT_EQ(spread.devices(), "reference,reference,reference");
  EXPECT_EQ(single.devices(), "reference");
  // The placement log's line.
  EXPECT_EQ(spread.Describe(),
            "devices reference,reference,reference ([0, 2) on reference, [2, 4) on reference, "
            "[4, 5) on reference, activations by host memory)");
  EXPECT_EQ(single.Describe(), "backend reference");
  EXPECT_EQ(spread.n_blocks(), n_layer);
  for (int64_t first = 0; first < n_layer; ++first) {
    for (int64_t last = first + 1; last <= n_layer; ++last) {
      SCOPED_TRACE(absl::StrCat("blocks [", first, ", ", last, ")"));
      auto a_single = *single.NewCache(8), b_single = *single.NewCache(8);
      auto a_spread = *spread.NewCache(8), b_spread = *spread.NewCache(8);
      auto run = [&](const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
        std::vector<float> x = Embed(a), xb = Embed(b);
        x.insert(x.end(), xb.begin(), xb.end());
        std::vector<float> expected(x.size()), actual(x.size());
        const int64_t na = static_cast<int64_t>(a.size()), nb = static_cast<int64_t>(b.size());
        const SequenceStep one[] = {{a_single.get(), na}, {b_single.get(), nb}};
        const SequenceStep other[] = {{a_spread.get(), na}, {b_spread.get(), nb}};
        ASSERT_TRUE(single.Forward(one, first, last, x.data(), expected.data()).ok());
        ASSERT_TRUE(spread.Forward(other, first, last, x.data(), actual.data()).ok());
        ASSERT_EQ(actual, expected);
      };
      run({1, 403, 407}, {1});
      run({261}, {42});
      // A retried step: both rewind one position and redo it.
      ASSERT_TRUE(a_single->Truncate(3).ok());
      ASSERT_TRUE(a_spread->Truncate(3).ok());
      EXPECT_EQ(a_spread->length(), 3);
      run({300}, {17});
      EXPECT_EQ(a_spread->length(), 4);
      EXPECT_EQ(b_spread->length(), 3);
    }
  }

  // Each stack takes only its own caches; outside its blocks is refused; nothing moves.
  auto mine = *spread.NewCache(4), theirs = *single.NewCache(4);
  std::vector<float> x = Embed({1}), y(x.size());
  const SequenceStep foreign_to_spread{theirs.get(), 1}, foreign_to_single{mine.get(), 1};
  EXPECT_EQ(spread.Forward({&foreign_to_spread, 1}, 0, n_layer, x.data(), y.data()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(single.Forward({&foreign_to_single, 1}, 0, n_layer, x.data(), y.data()).code(),
            absl::StatusCode::kInvalidArgument);
  const SequenceStep step{mine.get(), 1};
  EXPECT_EQ(spread.Forward({&step, 1}, 0, n_layer + 1, x.data(), y.data()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(spread.Forward({&step, 1}, 3, 3, x.data(), y.data()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mine->length(), 0);
  EXPECT_EQ(theirs->length(), 0);
  EXPECT_FALSE(mine->Truncate(1).ok());
}

TEST_F(MultiGpuStackTest, RefusesBadInput) {
  std::vector<std::unique_ptr<kernels::Backend>> owned;
  std::vector<kernels::Backend*> backends;
  for (int i = 0; i < 6; ++i) {
    owned.push_back(kernels::MakeCpuReferenceBackend());
    backends.push_back(owned.back().get());
  }
  auto too_many = MultiGpuStack::Create(backends, model_->config, blocks_);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument) << too_many.status();

  backends.resize(2);
  auto stack = MultiGpuStack::Create(backends, model_->config, blocks_);
  ASSERT_TRUE(stack.ok()) << stack.status();
  auto other = MultiGpuStack::Create({backends[0]}, model_->config, blocks_);
  ASSERT_TRUE(other.ok()) << other.status();
  // One segment without graph capture (CPU backends) replays nothing, and says so.
  EXPECT_EQ((*other)->Describe(), "backend reference");
  auto twin = MultiGpuStack::Create(backends, model_->config, blocks_);
  ASSERT_TRUE(twin.ok()) << twin.status();
  auto foreign = *(*other)->NewCache(4);
  // A cache of the same shape from another stack over the same backends is refused too.
  auto twins = *(*twin)->NewCache(4);
  auto cache = *(*stack)->NewCache(4);
  std::vector<float> x = Embed({1, 2, 3, 4, 5});
  std::vector<float> y(x.size());
  const SequenceStep wrong{foreign.get(), 1};
  EXPECT_EQ((*stack)->Forward({&wrong, 1}, x.data(), y.data()).code(),
            absl::StatusCode::kInvalidArgument);
  const SequenceStep twins_step{twins.get(), 1};
  EXPECT_EQ((*stack)->Forward({&twins_step, 1}, x.data(), y.data()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(twins->length(), 0);
  const SequenceStep too_long{cache.get(), 5};
  EXPECT_EQ((*stack)->Forward({&too_long, 1}, x.data(), y.data()).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(cache->length(), 0);
}

#if SWARM_HAVE_CUDA

class CudaEngineTest : public MultiGpuStackTest {
 protected:
  void SetUp() override {
    auto count = kernels::CudaDeviceCount();
    if (!count.ok()) GTEST_SKIP() << "no CUDA GPU: " << count.status().message();
    n_devices_ = *count;
    MultiGpuStackTest::SetUp();
  }

  std::unique_ptr<kernels::CudaBackend> Cuda(int device) {
    kernels::CudaBackendOptions options;
    options.device = device;
    auto backend = kernels::CudaBackend::Create(options);
    EXPECT_TRUE(backend.ok()) << backend.status();
    return backend.ok() ? std::move(*backend) : nullptr;
  }

  int n_devices_ = 0;
};

// `swarm generate --backend cuda` in-process: every block and the head on the GPU.
TEST_F(CudaEngineTest, ReferenceTextOnTheGpu) {
  kernels::BackendOptions options;
  options.name = "cuda";
  auto gpu = LocalModel::Load(kModel, options);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  auto pipeline = LocalPipeline::Create(*(*gpu)->blocks, 256);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  model::SamplingParams greedy;
  greedy.temperature = 0;
  model::Sampler sampler(greedy);
  model::StreamingDecoder decoder(*(*gpu)->tokenizer);
  std::string text;
  model::GenerateOptions generate;
  generate.max_new_tokens = kGreedyTokens;
  const std::vector<int32_t> prompt = {(*gpu)->tokenizer->bos_id()};
  auto stats = model::Generate(prompt, generate, *(*gpu)->head, **pipeline, sampler,
                               *(*gpu)->tokenizer, [&](int32_t token) {
                                 text += decoder.Push(token);
                                 return true;
                               });
  ASSERT_TRUE(stats.ok()) << stats.status();
  text += decoder.Finish();
  EXPECT_EQ(text, ReferenceText(text));
}

// Two segments on one GPU (the degenerate multi-GPU case: a device copy between them), decode
// steps replayed from CUDA graphs.
TEST_F(CudaEngineTest, ReferenceTextFromGraphsOnSegmentsOfOneGpu) {
  auto a = Cuda(0), b = Cuda(0);
  ASSERT_TRUE(a && b);
  auto stack = MultiGpuStack::Create({a.get(), b.get()}, model_->config, blocks_);
  ASSERT_TRUE(stack.ok()) << stack.status();
  auto pipeline = LocalPipeline::Create(**stack, 256);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  const std::string text = Greedy(**pipeline);
  EXPECT_EQ(text, ReferenceText(text));
  EXPECT_GT((*stack)->graph_replays(), kGreedyTokens * 3 / 4)
      << "decode steps should replay captured graphs";
}

TEST_F(CudaEngineTest, GraphsAndEagerStepsGiveTheSameBits) {
  auto gpu = Cuda(0);
  ASSERT_TRUE(gpu);
  MultiGpuOptions eager_options;
  eager_options.use_graphs = false;
  auto graphs = MultiGpuStack::Create({gpu.get()}, model_->config, blocks_);
  auto eager = MultiGpuStack::Create({gpu.get()}, model_->config, blocks_, eager_options);
  ASSERT_TRUE(graphs.ok() && eager.ok());
  auto cg = *(*graphs)->NewCache(64), ce = *(*eager)->NewCache(64);
  std::vector<int32_t> tokens = {1, 403, 407};
  for (int i = 0; i < 20; ++i) {
    const std::vector<float> x = Embed(tokens);
    std::vector<float> yg(x.size()), ye(x.size());
    const int64_t n = static_cast<int64_t>(tokens.size());
    const SequenceStep sg{cg.get(), n}, se{ce.get(), n};
    ASSERT_TRUE((*graphs)->Forward({&sg, 1}, x.data(), yg.data()).ok());
    ASSERT_TRUE((*eager)->Forward({&se, 1}, x.data(), ye.data()).ok());
    ASSERT_EQ(yg, ye) << "step " << i;
    tokens = {static_cast<int32_t>(100 + i)};
  }
  EXPECT_GT((*graphs)->graph_replays(), 10);
  EXPECT_EQ((*eager)->graph_replays(), 0);
}

// Decode steps over part of the span (a route that uses part of a peer's blocks) replay graphs of
// their own and give the eager path's bits: segments [0, 3) and [3, 5) on one GPU.
TEST_F(CudaEngineTest, GraphsOverSubRangesGiveTheEagerBits) {
  auto a = Cuda(0), b = Cuda(0);
  ASSERT_TRUE(a && b);
  MultiGpuOptions eager_options;
  eager_options.use_graphs = false;
  auto graphs = MultiGpuStack::Create({a.get(), b.get()}, model_->config, blocks_);
  auto eager = MultiGpuStack::Create({a.get(), b.get()}, model_->config, blocks_, eager_options);
  ASSERT_TRUE(graphs.ok() && eager.ok());
  const std::pair<int64_t, int64_t> ranges[] = {{0, 2}, {1, 4}, {3, 5}};
  for (const auto& [first, last] : ranges) {
    auto cg = *(*graphs)->NewCache(64), ce = *(*eager)->NewCache(64);
    std::vector<int32_t> tokens = {1, 403, 407};
    for (int i = 0; i < 8; ++i) {
      const std::vector<float> x = Embed(tokens);
      std::vector<float> yg(x.size()), ye(x.size());
      const int64_t n = static_cast<int64_t>(tokens.size());
      const SequenceStep sg{cg.get(), n}, se{ce.get(), n};
      ASSERT_TRUE((*graphs)->Forward({&sg, 1}, first, last, x.data(), yg.data()).ok());
      ASSERT_TRUE((*eager)->Forward({&se, 1}, first, last, x.data(), ye.data()).ok());
      ASSERT_EQ(yg, ye) << "blocks [" << first << ", " << last << "), step " << i;
      tokens = {static_cast<int32_t>(100 + i)};
    }
  }
  EXPECT_GT((*graphs)->graph_replays(), 10);
}

TEST_F(CudaEngineTest, ReferenceTextOverTwoGpusWithNccl) {
  if (n_devices_ < 2) GTEST_SKIP() << "needs two GPUs, " << n_devices_ << " present";
  auto a = Cuda(0), b = Cuda(1);
  ASSERT_TRUE(a && b);
  auto stack = MultiGpuStack::Create({a.get(), b.get()}, model_->config, blocks_);
  ASSERT_TRUE(stack.ok()) << stack.status();
  EXPECT_TRUE((*stack)->uses_nccl());
  auto pipeline = LocalPipeline::Create(**stack, 256);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  const std::string text = Greedy(**pipeline);
  EXPECT_EQ(text, ReferenceText(text));
}

// A chain of one CPU peer (blocks 0-1) and one GPU peer (blocks 2-4).
TEST_F(CudaEngineTest, ChainOfACpuPeerAndAGpuPeer) {
  auto gpu = Cuda(0);
  ASSERT_TRUE(gpu);
  const int64_t k = 2;
  auto cpu_weights = model::LoadBlockWeights(*model_->file, model_->config, 0, k);
  auto gpu_weights =
      model::LoadBlockWeights(*model_->file, model_->config, k, model_->config.n_layer);
  ASSERT_TRUE(cpu_weights.ok() && gpu_weights.ok());
  auto cpu_stack = BlockStack::Create(*model_->backend, model_->config, *cpu_weights);
  auto gpu_stack = BlockStack::Create(*gpu, model_->config, *gpu_weights);
  ASSERT_TRUE(cpu_stack.ok()) << cpu_stack.status();
  ASSERT_TRUE(gpu_stack.ok()) << gpu_stack.status();
  ChainPipeline chain(**cpu_stack, **gpu_stack, 256);
  const std::string text = Greedy(chain);
  EXPECT_EQ(text, ReferenceText(text));
}

// Device memory exhausted at start-up is a clear ResourceExhausted error, not a crash.
TEST_F(CudaEngineTest, ACacheLargerThanTheGpuIsResourceExhausted) {
  auto gpu = Cuda(0);
  ASSERT_TRUE(gpu);
  auto stack = MultiGpuStack::Create({gpu.get()}, model_->config, blocks_);
  ASSERT_TRUE(stack.ok()) << stack.status();
  // 5 blocks x 2 x 32 floats per position: 2^40 positions is 1.3 PiB.
  auto cache = (*stack)->NewCache(int64_t{1} << 40);
  EXPECT_EQ(cache.status().code(), absl::StatusCode::kResourceExhausted) << cache.status();
  auto fine = (*stack)->NewCache(64);
  EXPECT_TRUE(fine.ok()) << fine.status();
}

#else

TEST(CudaEngine, Skipped) { GTEST_SKIP() << "this build has no CUDA backend (no toolkit found)"; }

#endif  // SWARM_HAVE_CUDA

}  // namespace
}  // namespace swarm::shard
