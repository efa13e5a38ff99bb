#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "model/sampler.h"

namespace swarm::model {
namespace {

SamplingParams Greedy() {
  SamplingParams p;
  p.temperature = 0;
  return p;
}

TEST(SamplerTest, GreedyTakesTheFirstLargestLogit) {
  Sampler sampler(Greedy());
  std::vector<float> logits = {0.1f, 3.0f, -1.0f, 3.0f};
  EXPECT_EQ(sampler.Sample(logits, {}), 1);
}

TEST(SamplerTest, RepetitionPenaltyDemotesRecentTokens) {
  SamplingParams p = Greedy();
  p.repeat_penalty = 2.0f;
  Sampler sampler(p);
  std::vector<float> logits = {1.0f, 1.5f, 0.2f};
  std::vector<int32_t> history = {1};
  EXPECT_EQ(sampler.Sample(logits, history), 0);  // 1.5 / 2 = 0.75 < 1.0
  std::vector<float> negative = {-1.0f, -0.6f, -0.7f};
  EXPECT_EQ(sampler.Sample(negative, history), 2);  // -0.6 * 2 = -1.2 < -0.7
}

TEST(SamplerTest, SameSeedSameTokens) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 1234;
  std::vector<float> logits = {0.0f, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f};
  Sampler a(p), b(p);
  std::vector<int32_t> sa, sb;
  for (int i = 0; i < 100; ++i) {
    sa.push_back(a.Sample(logits, {}));
    sb.push_back(b.Sample(logits, {}));
  }
  EXPECT_EQ(sa, sb);
  p.seed = 99;
  Sampler c(p);
  std::vector<int32_t> sc;
  for (int i = 0; i < 100; ++i) sc.push_back(c.Sample(logits, {}));
  EXPECT_NE(sa, sc);
}

TEST(SamplerTest, FrequenciesFollowTheSoftmax) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 7;
  Sampler sampler(p);
  // Probabilities 1/7, 2/7, 4/7.
  std::vector<float> logits = {0.0f, std::log(2.0f), std::log(4.0f)};
  std::map<int32_t, int> counts;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++counts[sampler.Sample(logits, {})];
  EXPECT_NEAR(counts[0] / double(n), 1 / 7.0, 0.02);
  EXPECT_NEAR(counts[1] / double(n), 2 / 7.0, 0.02);
  EXPECT_NEAR(counts[2] / double(n), 4 / 7.0, 0.02);
}

TEST(SamplerTest, TopKOneIsGreedy) {
  SamplingParams p;
  p.temperature = 5.0f;
  p.top_k = 1;
  Sampler sampler(p);
  std::vector<float> logits = {0.0f, 0.9f, 1.0f, 0.95f};
  for (int i = 0; i < 50; ++i) EXPECT_EQ(sampler.Sample(logits, {}), 2);
}

TEST(SamplerTest, TopPKeepsTheSmallestNucleus) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.min_p = 0.0f;
  p.top_p = 0.5f;  // token 2 alone has 4/7 > 0.5
  Sampler sampler(p);
  std::vector<float> logits = {0.0f, std::log(2.0f), std::log(4.0f)};
  for (int i = 0; i < 50; ++i) EXPECT_EQ(sampler.Sample(logits, {}), 2);
}

TEST(SamplerTest, MinPDropsUnlikelyTokens) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.6f;  // token 1 has half of token 2's probability: dropped
  Sampler sampler(p);
  std::vector<float> logits = {0.0f, std::log(2.0f), std::log(4.0f)};
  for (int i = 0; i < 50; ++i) EXPECT_EQ(sampler.Sample(logits, {}), 2);
}

TEST(SamplerTest, ValidateRejectsBadParameters) {
  SamplingParams p;
  p.temperature = -1;
  EXPECT_FALSE(p.Validate().ok());
  p = SamplingParams();
  p.top_p = 0;
  EXPECT_FALSE(p.Validate().ok());
  p = SamplingParams();
  p.min_p = 2;
  EXPECT_FALSE(p.Validate().ok());
  p = SamplingParams();
  p.repeat_penalty = 0;
  EXPECT_FALSE(p.Validate().ok());
  EXPECT_TRUE(SamplingParams().Validate().ok());
}

TEST(SamplerTest, PresenceAndFrequencyPenaltiesCountOnlyGeneratedTokens) {
  SamplingParams p = Greedy();
  p.frequency_penalty = 0.6f;
  Sampler sampler(p);
  const std::vector<float> logits = {2.0f, 1.0f, 0.0f};
  const std::vector<int32_t> prompt = {0, 0, 0, 0};  // the prompt is not penalised
  EXPECT_EQ(sampler.Sample(logits, prompt), 0);      // 2.0
  EXPECT_EQ(sampler.Sample(logits, prompt), 0);      // 2.0 - 0.6 = 1.4 > 1.0
  EXPECT_EQ(sampler.Sample(logits, prompt), 1);      // 2.0 - 1.2 = 0.8 < 1.0

  SamplingParams q = Greedy();
  q.presence_penalty = 1.5f;
  Sampler presence(q);
  EXPECT_EQ(presence.Sample(logits, {}), 0);
  EXPECT_EQ(presence.Sample(logits, {}), 1);  // 0.5 < 1.0
  EXPECT_EQ(presence.Sample(logits, {}), 0);  // 0.5 > 0.0 (token 2) > -0.5 (token 1)
  // Negative penalties favour repetition.
  SamplingParams r = Greedy();
  r.presence_penalty = -2.0f;
  Sampler repeat(r);
  const std::vector<float> close = {1.0f, 1.1f};
  EXPECT_EQ(repeat.Sample(close, {}), 1);
  EXPECT_EQ(repeat.Sample(close, {}), 1);
}

TEST(SamplerTest, LogitBiasBansAndForces) {
  SamplingParams p;  // sampling, not greedy
  p.temperature = 1.0f;
  p.seed = 9;
  p.logit_bias = {{1, -100.0f}};
  Sampler ban(p);
  const std::vector<float> logits = {0.0f, 10.0f, 0.5f};
  for (int i = 0; i < 50; ++i) EXPECT_NE(ban.Sample(logits, {}), 1);
  p.logit_bias = {{2, 100.0f}};
  Sampler force(p);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(force.Sample(logits, {}), 2);
  p = Greedy();
  p.logit_bias = {{0, 10.5f}};
  Sampler shift(p);
  EXPECT_EQ(shift.Sample(logits, {}), 0);  // 10.5 > 10
  p.logit_bias = {{3, 200.0f}};
  EXPECT_FALSE(p.Validate().ok());
  p.logit_bias = {};
  p.presence_penalty = 2.5f;
  EXPECT_FALSE(p.Validate().ok());
}

// Allows only even tokens; remembers what it was told.
class EvenOnly final : public TokenConstraint {
 public:
  void Mask(std::span<float> logits) override {
    for (size_t i = 1; i < logits.size(); i += 2) logits[i] = -INFINITY;
  }
  void Accept(int32_t token) override { accepted.push_back(token); }
  std::vector<int32_t> accepted;
};

TEST(SamplerTest, ConstraintMasksAndOutranksBias) {
  EvenOnly even;
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.logit_bias = {{1, 100.0f}};  // forces a token the constraint forbids: the constraint wins
  Sampler sampler(p);
  sampler.set_constraint(&even);
  const std::vector<float> logits = {0.0f, 5.0f, 0.1f, 5.0f};
  std::vector<int32_t> drawn;
  for (int i = 0; i < 40; ++i) drawn.push_back(sampler.Sample(logits, {}));
  for (int32_t t : drawn) EXPECT_EQ(t % 2, 0);
  EXPECT_EQ(even.accepted, drawn);
}

}  // namespace
}  // namespace swarm::model
