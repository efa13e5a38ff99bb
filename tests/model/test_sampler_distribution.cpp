// Sampler::Distribution is exactly what Sample draws from (speculative sampling relies on it):
// greedy gives Sample's token with probability 1; with every transform on (penalties, bias,
// top-k, top-p, min-p, temperature) the probabilities sum to 1 and Sample's draws over many seeds
// follow them.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "model/sampler.h"

namespace swarm::model {
namespace {

std::vector<float> RandomLogits(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> logits(n);
  for (float& l : logits) l = normal(rng);
  return logits;
}

TEST(SamplerDistributionTest, GreedyIsAPointMassOnSamplesToken) {
  SamplingParams params;
  params.temperature = 0;
  params.repeat_penalty = 1.3f;
  const std::vector<int32_t> history = {3, 5, 7};
  for (uint32_t seed = 0; seed < 20; ++seed) {
    const std::vector<float> logits = RandomLogits(100, seed);
    Sampler a(params), b(params);
    std::vector<TokenProb> dist;
    a.Distribution(logits, history, dist);
    ASSERT_EQ(dist.size(), 1u);
    EXPECT_EQ(dist[0].p, 1.0);
    EXPECT_EQ(dist[0].id, b.Sample(logits, history));
  }
}

TEST(SamplerDistributionTest, SampleFollowsTheDistribution) {
  SamplingParams params;
  params.temperature = 0.9f;
  params.top_k = 30;
  params.top_p = 0.9f;
  params.min_p = 0.02f;
  params.repeat_penalty = 1.2f;
  params.presence_penalty = 0.5f;
  params.frequency_penalty = 0.3f;
  params.logit_bias = {{4, 2.0f}, {9, -100.0f}};
  const std::vector<float> logits = RandomLogits(64, 11);
  const std::vector<int32_t> history = {1, 2, 4, 4};
  // The penalties count earlier draws: each sampler first draws (and accepts) token 2 twice.
  auto primed = [&](uint64_t seed) {
    SamplingParams p = params;
    p.seed = seed;
    Sampler s(p);
    s.Accept(2);
    s.Accept(2);
    return s;
  };
  std::vector<TokenProb> dist;
  Sampler reference = primed(0);
  reference.Distribution(logits, history, dist);
  double total = 0;
  for (const TokenProb& t : dist) {
    total += t.p;
    EXPECT_NE(t.id, 9);  // banned by the bias
  }
  EXPECT_NEAR(total, 1.0, 1e-12);
  ASSERT_GT(dist.size(), 3u);

  constexpr int kDraws = 20000;
  std::map<int32_t, int> seen;
  for (int i = 0; i < kDraws; ++i) {
    Sampler s = primed(static_cast<uint64_t>(i));
    ++seen[s.Sample(logits, history)];
  }
  double chi2 = 0;
  for (const TokenProb& t : dist) {
    const double expected = t.p * kDraws;
    const double got = seen.count(t.id) ? seen[t.id] : 0;
    chi2 += (got - expected) * (got - expected) / expected;
    seen.erase(t.id);
  }
  EXPECT_TRUE(seen.empty()) << "Sample drew a token outside the distribution";
  // The chi-square's upper 1e-4 quantile (Wilson-Hilferty) for |dist| - 1 degrees of freedom.
  const double df = static_cast<double>(dist.size() - 1), a = 2.0 / (9.0 * df);
  EXPECT_LT(chi2, df * std::pow(1.0 - a + 3.719 * std::sqrt(a), 3));
}

}  // namespace
}  // namespace swarm::model
