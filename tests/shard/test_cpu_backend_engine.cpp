// The in-process engine on the real stories260K model with the optimized CPU backend, at every
// instruction-set level this processor runs: the reference text byte for byte, split invariance,
// batching invariance, and the same tokens and hidden states for 1 and 2 threads.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "model/generator.h"
#include "model/gguf.h"
#include "model/model_weights.h"
#include "shard/block_stack.h"
#include "shard/local_model.h"
#include "shard/local_pipeline.h"
#include "support/files.h"
#include "support/shared_model.h"

namespace swarm::shard {
namespace {

const std::string& kModel = test_support::kSharedModel;

using test_support::ReadFile;

std::vector<std::string> BackendNames() {
  std::vector<std::string> names;
  const kernels::cpu::CpuFeatures features = kernels::cpu::DetectCpuFeatures();
  for (auto isa :
       {kernels::cpu::Isa::kGeneric, kernels::cpu::Isa::kAvx2, kernels::cpu::Isa::kAvx512}) {
    if (kernels::cpu::IsaSupported(isa, features)) {
      names.push_back("cpu:" + std::string(kernels::cpu::IsaName(isa)));
    }
  }
  return names;
}

std::unique_ptr<LocalModel> Load(const std::string& backend, int threads) {
  kernels::BackendOptions options;
  options.name = backend;
  options.threads = threads;
  auto m = LocalModel::Load(kModel, options);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(*m) : nullptr;
}

// Greedy generation from BOS; returns the text and (through `tokens`) the token ids.
std::string Greedy(LocalModel& m, int64_t n, std::vector<int32_t>* tokens = nullptr) {
  auto pipeline = LocalPipeline::Create(*m.blocks, 256);
  EXPECT_TRUE(pipeline.ok()) << pipeline.status();
  model::SamplingParams greedy;
  greedy.temperature = 0;
  model::Sampler sampler(greedy);
  model::StreamingDecoder decoder(*m.tokenizer);
  std::string text;
  model::GenerateOptions options;
  options.max_new_tokens = n;
  const std::vector<int32_t> prompt = {m.tokenizer->bos_id()};
  auto stats = model::Generate(prompt, options, *m.head, **pipeline, sampler, *m.tokenizer,
                               [&](int32_t token) {
                                 if (tokens != nullptr) tokens->push_back(token);
                                 text += decoder.Push(token);
                                 return true;
                               });
  EXPECT_TRUE(stats.ok()) << stats.status();
  return text + decoder.Finish();
}

class CpuEngineTest : public ::testing::TestWithParam<std::string> {};

std::string ParamName(const ::testing::TestParamInfo<std::string>& info) {
  return info.param.substr(4);
}

INSTANTIATE_TEST_SUITE_P(Isa, CpuEngineTest, ::testing::ValuesIn(BackendNames()), ParamName);

TEST_P(CpuEngineTest, GreedyContinuationMatchesTheReferenceText) {
  auto m = Load(GetParam(), 2);
  ASSERT_NE(m, nullptr);
  // The reference file is the text plus the newline its generator printed at the end.
  EXPECT_EQ(Greedy(*m, 200) + "\n", ReadFile(test_support::kSharedReferenceText));
}

TEST_P(CpuEngineTest, OneAndTwoThreadsGiveTheSameTokens) {
  auto one = Load(GetParam(), 1);
  auto two = Load(GetParam(), 2);
  ASSERT_NE(one, nullptr);
  ASSERT_NE(two, nullptr);
  std::vector<int32_t> a, b;
  Greedy(*one, 120, &a);
  Greedy(*two, 120, &b);
  EXPECT_EQ(a, b);
}

class CpuStackTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::unique_ptr<BlockStack> Stack(LocalModel& m, int64_t first, int64_t last) {
    auto weights = model::LoadBlockWeights(*m.file, m.config, first, last);
    EXPECT_TRUE(weights.ok()) << weights.status();
    auto stack = BlockStack::Create(*m.backend, m.config, *weights);
    EXPECT_TRUE(stack.ok()) << stack.status();
    return std::move(*stack);
  }
  std::vector<float> Embed(LocalModel& m, const std::vector<int32_t>& tokens) {
    std::vector<float> x(m.config.n_embd * tokens.size());
    EXPECT_TRUE(m.head->Embed(tokens, x.data()).ok());
    return x;
  }
};

INSTANTIATE_TEST_SUITE_P(Isa, CpuStackTest, ::testing::ValuesIn(BackendNames()), ParamName);

// For every split point k, blocks [0, k) then [k, L) give bit-identical hidden states to [0, L),
// for a prompt and for decode steps after it; and so do 1 and 2 threads.
TEST_P(CpuStackTest, SplitAndThreadInvariance) {
  auto m = Load(GetParam(), 2);
  auto m1 = Load(GetParam(), 1);
  ASSERT_NE(m, nullptr);
  ASSERT_NE(m1, nullptr);
  const int64_t n_layer = m->config.n_layer;
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378, 42, 17, 99, 300};
  const std::vector<int32_t> next = {300, 42};
  for (int64_t k = 1; k < n_layer; ++k) {
    auto whole = Stack(*m, 0, n_layer);
    auto whole1 = Stack(*m1, 0, n_layer);
    auto head = Stack(*m, 0, k);
    auto tail = Stack(*m, k, n_layer);
    auto whole_cache = *whole->NewCache(16);
    auto whole1_cache = *whole1->NewCache(16);
    auto head_cache = *head->NewCache(16);
    auto tail_cache = *tail->NewCache(16);
    auto run = [&](const std::vector<int32_t>& tokens) {
      std::vector<float> x = Embed(*m, tokens);
      std::vector<float> expected(x.size()), split(x.size()), single(x.size());
      const int64_t n = static_cast<int64_t>(tokens.size());
      SequenceStep w{whole_cache.get(), n}, w1{whole1_cache.get(), n}, h{head_cache.get(), n},
          t{tail_cache.get(), n};
      ASSERT_TRUE(whole->Forward({&w, 1}, x.data(), expected.data()).ok());
      ASSERT_TRUE(whole1->Forward({&w1, 1}, x.data(), single.data()).ok());
      ASSERT_TRUE(head->Forward({&h, 1}, x.data(), split.data()).ok());
      ASSERT_TRUE(tail->Forward({&t, 1}, split.data(), split.data()).ok());
      ASSERT_EQ(expected, split) << "split at block " << k;
      ASSERT_EQ(expected, single) << "1 thread vs 2";
    };
    run(prompt);
    for (int32_t token : next) run({token});
  }
}

// Sequences run together in one batch give the same hidden states as run alone, and a prompt run
// as one batch gives the same states as the same tokens run one at a time.
TEST_P(CpuStackTest, BatchingInvariance) {
  auto m = Load(GetParam(), 2);
  ASSERT_NE(m, nullptr);
  auto stack = Stack(*m, 0, m->config.n_layer);
  const std::vector<int32_t> a = {1, 403, 407, 9, 77}, b = {1, 261};
  auto alone_a = *stack->NewCache(8), alone_b = *stack->NewCache(8);
  auto batch_a = *stack->NewCache(8), batch_b = *stack->NewCache(8);
  std::vector<float> xa = Embed(*m, a), xb = Embed(*m, b);
  std::vector<float> ya(xa.size()), yb(xb.size());
  SequenceStep sa{alone_a.get(), 5}, sb{alone_b.get(), 2};
  ASSERT_TRUE(stack->Forward({&sa, 1}, xa.data(), ya.data()).ok());
  ASSERT_TRUE(stack->Forward({&sb, 1}, xb.data(), yb.data()).ok());
  std::vector<float> both(xa);
  both.insert(both.end(), xb.begin(), xb.end());
  std::vector<float> out(both.size());
  SequenceStep steps[] = {{batch_a.get(), 5}, {batch_b.get(), 2}};
  ASSERT_TRUE(stack->Forward(steps, both.data(), out.data()).ok());
  EXPECT_EQ(std::vector<float>(out.begin(), out.begin() + ya.size()), ya);
  EXPECT_EQ(std::vector<float>(out.begin() + ya.size(), out.end()), yb);

  // Token by token.
  auto stepwise = *stack->NewCache(8);
  const int64_t n_embd = m->config.n_embd;
  for (size_t i = 0; i < a.size(); ++i) {
    std::vector<float> xi(xa.begin() + i * n_embd, xa.begin() + (i + 1) * n_embd), yi(n_embd);
    SequenceStep s{stepwise.get(), 1};
    ASSERT_TRUE(stack->Forward({&s, 1}, xi.data(), yi.data()).ok());
    EXPECT_EQ(yi, std::vector<float>(ya.begin() + i * n_embd, ya.begin() + (i + 1) * n_embd))
        << "token " << i;
  }
}

}  // namespace
}  // namespace swarm::shard
