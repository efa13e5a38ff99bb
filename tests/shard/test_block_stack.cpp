// The in-process engine on the real stories260K model: the reference text, split invariance and
// batching invariance.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <vector>

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

class BlockStackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kernels::BackendOptions options;
    options.name = "reference";
    auto m = LocalModel::Load(kModel, options);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
  }

  // Embeddings of a short prompt: [n_embd, T].
  std::vector<float> Embed(const std::vector<int32_t>& tokens) {
    std::vector<float> x(model_->config.n_embd * tokens.size());
    EXPECT_TRUE(model_->head->Embed(tokens, x.data()).ok());
    return x;
  }

  std::unique_ptr<BlockStack> Stack(int64_t first, int64_t last) {
    auto weights = model::LoadBlockWeights(*model_->file, model_->config, first, last);
    EXPECT_TRUE(weights.ok()) << weights.status();
    auto stack = BlockStack::Create(*model_->backend, model_->config, *weights);
    EXPECT_TRUE(stack.ok()) << stack.status();
    return std::move(*stack);
  }

  std::unique_ptr<LocalModel> model_;
};

TEST_F(BlockStackTest, GreedyContinuationMatchesTheReferenceText) {
  auto pipeline = LocalPipeline::Create(*model_->blocks, 256);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  model::SamplingParams greedy;
  greedy.temperature = 0;
  model::Sampler sampler(greedy);
  model::StreamingDecoder decoder(*model_->tokenizer);
  std::string text;
  model::GenerateOptions options;
  options.max_new_tokens = 200;
  std::vector<int32_t> prompt = {model_->tokenizer->bos_id()};
  auto stats = model::Generate(prompt, options, *model_->head, **pipeline, sampler,
                               *model_->tokenizer, [&](int32_t token) {
                                 text += decoder.Push(token);
                                 return true;
                               });
  ASSERT_TRUE(stats.ok()) << stats.status();
  text += decoder.Finish();
  // The reference file is the text plus the newline its generator printed at the end.
  EXPECT_EQ(text + "\n", ReadFile(test_support::kSharedReferenceText));
}

// For every split point k, blocks [0, k) then [k, L) give bit-identical hidden states to [0, L),
// for a prompt and for decode steps after it.
TEST_F(BlockStackTest, SplitInvariance) {
  const int64_t n_layer = model_->config.n_layer;
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
  const std::vector<int32_t> next = {300, 42};
  for (int64_t k = 1; k < n_layer; ++k) {
    auto whole = Stack(0, n_layer);
    auto head = Stack(0, k);
    auto tail = Stack(k, n_layer);
    auto whole_cache = *whole->NewCache(16);
    auto head_cache = *head->NewCache(16);
    auto tail_cache = *tail->NewCache(16);
    auto run = [&](const std::vector<int32_t>& tokens) {
      std::vector<float> x = Embed(tokens);
      std::vector<float> expected(x.size()), split(x.size());
      const int64_t n = static_cast<int64_t>(tokens.size());
      SequenceStep w{whole_cache.get(), n}, h{head_cache.get(), n}, t{tail_cache.get(), n};
      ASSERT_TRUE(whole->Forward({&w, 1}, x.data(), expected.data()).ok());
      ASSERT_TRUE(head->Forward({&h, 1}, x.data(), split.data()).ok());
      ASSERT_TRUE(tail->Forward({&t, 1}, split.data(), split.data()).ok());
      ASSERT_EQ(expected, split) << "split at block " << k;
    };
    run(prompt);
    for (int32_t token : next) run({token});
  }
}

// Sequences run together in one batch give the same hidden states as run alone.
TEST_F(BlockStackTest, BatchedSequencesMatchSeparateRuns) {
  auto stack = Stack(0, model_->config.n_layer);
  const std::vector<int32_t> a = {1, 403, 407}, b = {1, 261};
  auto alone_a = *stack->NewCache(8), alone_b = *stack->NewCache(8);
  auto batch_a = *stack->NewCache(8), batch_b = *stack->NewCache(8);
  std::vector<float> xa = Embed(a), xb = Embed(b);
  std::vector<float> ya(xa.size()), yb(xb.size());
  SequenceStep sa{alone_a.get(), 3}, sb{alone_b.get(), 2};
  ASSERT_TRUE(stack->Forward({&sa, 1}, xa.data(), ya.data()).ok());
  ASSERT_TRUE(stack->Forward({&sb, 1}, xb.data(), yb.data()).ok());
  std::vector<float> both(xa);
  both.insert(both.end(), xb.begin(), xb.end());
  std::vector<float> out(both.size());
  SequenceStep steps[] = {{batch_a.get(), 3}, {batch_b.get(), 2}};
  ASSERT_TRUE(stack->Forward(steps, both.data(), out.data()).ok());
  EXPECT_EQ(std::vector<float>(out.begin(), out.begin() + ya.size()), ya);
  EXPECT_EQ(std::vector<float>(out.begin() + ya.size(), out.end()), yb);
  EXPECT_EQ(batch_a->length(), 3);
  EXPECT_EQ(batch_b->length(), 2);
}

TEST_F(BlockStackTest, StepPastTheCacheIsRefusedAndChangesNothing) {
  auto stack = Stack(0, 2);
  auto cache = *stack->NewCache(4);
  std::vector<float> x = Embed({1, 2, 3, 4, 5});
  std::vector<float> y(x.size());
  SequenceStep step{cache.get(), 5};
  auto status = stack->Forward({&step, 1}, x.data(), y.data());
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange) << status;
  EXPECT_EQ(cache->length(), 0);
  SequenceStep empty{cache.get(), 0};
  EXPECT_FALSE(stack->Forward({&empty, 1}, x.data(), y.data()).ok());
}

// A cache belongs to the stack that made it: another stack's, even over the same blocks of the
// same backend, is refused and changes nothing.
TEST_F(BlockStackTest, RefusesTheCacheOfAnotherStack) {
  auto stack = Stack(0, 2), other = Stack(0, 2);
  auto foreign = *other->NewCache(4);
  std::vector<float> x = Embed({1}), y(x.size());
  SequenceStep step{foreign.get(), 1};
  EXPECT_EQ(stack->Forward({&step, 1}, x.data(), y.data()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(foreign->length(), 0);
  EXPECT_TRUE(other->Forward({&step, 1}, x.data(), y.data()).ok());
  EXPECT_EQ(foreign->length(), 1);
}

// The placement log's line.
TEST_F(BlockStackTest, DescribesItsBackend) {
  auto stack = Stack(0, 2);
  EXPECT_EQ(stack->Describe(), "backend " + stack->devices());
}

}  // namespace
}  // namespace swarm::shard
