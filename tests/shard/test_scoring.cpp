// Scoring (model/scoring.h) on the real stories260K model in-process: ScoreToken's arithmetic and
// ordering, LogitsBatch equal to one position at a time, and ScoreSequence's numbers independent of
// how many positions each step carries.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "model/scoring.h"
#include "shard/local_model.h"
#include "shard/local_pipeline.h"
#include "support/shared_model.h"

namespace swarm::shard {
namespace {

TEST(Scoring, ScoreTokenIsLogSoftmaxWithTopAlternativesInOrder) {
  const std::vector<float> logits = {1.0f, 3.0f, 3.0f, -2.0f, 0.5f};
  double z = 0;
  for (float l : logits) z += std::exp(static_cast<double>(l));
  const model::TokenLogprob s = model::ScoreToken(logits, 4, 3);
  EXPECT_EQ(s.token, 4);
  EXPECT_NEAR(s.logprob, 0.5 - std::log(z), 1e-12);
  ASSERT_EQ(s.top.size(), 3u);
  EXPECT_EQ(s.top[0].token, 1);  // a tie: the lower id first
  EXPECT_EQ(s.top[1].token, 2);
  EXPECT_EQ(s.top[2].token, 0);
  EXPECT_NEAR(s.top[2].logprob, 1.0 - std::log(z), 1e-12);
  EXPECT_EQ(model::ScoreToken(logits, 0, 99).top.size(), logits.size());  // clamped
  EXPECT_TRUE(model::ScoreToken(logits, 0, 0).top.empty());
}

TEST(Scoring, SequenceScoresDoNotDependOnTheStepSize) {
  auto m =
      LocalModel::Load(test_support::kSharedModel, kernels::BackendOptions{.name = "reference"});
  ASSERT_TRUE(m.ok()) << m.status();
  LocalModel& model = **m;
  const std::vector<int32_t> tokens =
      model.tokenizer->Encode("Once upon a time, there was a little dog named Max.", true, false);
  ASSERT_GT(tokens.size(), 8u);
  auto score = [&](int64_t batch, int64_t first) {
    auto pipeline = LocalPipeline::Create(*model.blocks, static_cast<int64_t>(tokens.size()));
    EXPECT_TRUE(pipeline.ok());
    auto scored = model::ScoreSequence(*model.head, **pipeline, tokens,
                                       {.first = first, .batch = batch, .top_k = 2});
    EXPECT_TRUE(scored.ok()) << scored.status();
    return scored.ok() ? *scored : std::vector<model::TokenLogprob>{};
  };
  const std::vector<model::TokenLogprob> all = score(0, 1);
  ASSERT_EQ(all.size(), tokens.size() - 1);
  for (int64_t batch : {1, 3, 7}) {
    const std::vector<model::TokenLogprob> stepped = score(batch, 1);
    ASSERT_EQ(stepped.size(), all.size());
    for (size_t i = 0; i < all.size(); ++i) {
      EXPECT_EQ(stepped[i].token, tokens[i + 1]);
      EXPECT_NEAR(stepped[i].logprob, all[i].logprob, 1e-4) << "batch " << batch << " at " << i;
      EXPECT_LE(stepped[i].logprob, stepped[i].top[0].logprob + 1e-12);
    }
  }
  // Scoring from a later position gives the tail of the same numbers.
  const std::vector<model::TokenLogprob> tail = score(0, 5);
  ASSERT_EQ(tail.size(), tokens.size() - 5);
  for (size_t i = 0; i < tail.size(); ++i) EXPECT_NEAR(tail[i].logprob, all[i + 4].logprob, 1e-6);
  // Out of range: an error, not a crash.
  auto pipeline = LocalPipeline::Create(*model.blocks, static_cast<int64_t>(tokens.size()));
  ASSERT_TRUE(pipeline.ok());
  EXPECT_FALSE(model::ScoreSequence(*model.head, **pipeline, tokens, {.first = 0}).ok());
}

}  // namespace
}  // namespace swarm::shard
