#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "router/step_verifier.h"

namespace swarm::router {
namespace {

TEST(StepVerifierTest, RelativeErrorIsTheWorstTokens) {
  const std::vector<float> b = {3, 4, 0, 1};  // tokens of 2: norms 5 and 1
  std::vector<float> a = b;
  EXPECT_EQ(MaxRelativeError(a, b, 2), 0.0);
  a[0] = 3.5f;  // token 0: 0.5 / 5
  EXPECT_NEAR(MaxRelativeError(a, b, 2), 0.1, 1e-9);
  a[3] = 1.5f;  // token 1: 0.5 / 1
  EXPECT_NEAR(MaxRelativeError(a, b, 2), 0.5, 1e-9);
  a[2] = NAN;
  EXPECT_TRUE(std::isnan(MaxRelativeError(a, b, 2)));
  EXPECT_TRUE(std::isinf(MaxRelativeError(a, std::vector<float>{1, 2}, 2)));
}

TEST(StepVerifierTest, SameBackendMeansBitIdentical) {
  transport::Codec f32;
  EXPECT_EQ(ToleranceFor("cpu-avx2", "cpu-avx2", f32), 0.0);
  EXPECT_GT(ToleranceFor("cpu-avx2", "reference", f32), 0.0);
  // An unknown backend never counts as the same.
  EXPECT_GT(ToleranceFor("", "", f32), 0.0);
  transport::Codec f16{.dtype = transport::Dtype::kF16};
  EXPECT_GT(ToleranceFor("a", "b", f16), ToleranceFor("a", "b", f32));
  EXPECT_EQ(ToleranceFor("a", "b", f32, 0.5), 0.5);
  // A GPU's multi-token steps (cuBLAS) differ in the last bits from its decoding.
  EXPECT_GT(ToleranceFor("cuda:0", "cuda:0", f32), ToleranceFor("cpu-avx2", "reference", f32));

  const std::vector<float> x = {1.0f, 2.0f, 3.0f, 4.0f};
  std::vector<float> y = x;
  EXPECT_TRUE(OutputsAgree(x, y, 2, 0));
  y[1] = std::nextafter(y[1], 3.0f);  // the last bit
  EXPECT_FALSE(OutputsAgree(x, y, 2, 0));
  EXPECT_TRUE(OutputsAgree(x, y, 2, 1e-6));
  y[1] = 2.01f;
  EXPECT_FALSE(OutputsAgree(x, y, 2, 1e-4));
  EXPECT_FALSE(OutputsAgree(x, std::vector<float>(x.begin(), x.end() - 2), 2, 1));
}

TEST(StepVerifierTest, NewPeersAreCheckedUntilTheyPassedEnough) {
  VerificationPolicy policy({.share = 1e-9, .new_peer_steps = 3, .seed = 7});
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(policy.ShouldCheck("p"));
    policy.Passed("p");
  }
  EXPECT_FALSE(policy.ShouldCheck("p"));
  EXPECT_TRUE(policy.ShouldCheck("q"));  // another peer is new
  policy.MismatchSeen();
  EXPECT_TRUE(policy.ShouldCheck("p"));  // after a mismatch, everything
}

TEST(StepVerifierTest, ShareIsDrawnAndZeroTurnsChecksOff) {
  VerificationPolicy off({.share = 0, .new_peer_steps = 8});
  EXPECT_FALSE(off.enabled());
  EXPECT_FALSE(off.ShouldCheck("new"));
  VerificationPolicy tenth({.share = 0.1, .new_peer_steps = 0, .seed = 11});
  int checked = 0;
  for (int i = 0; i < 10000; ++i) checked += tenth.ShouldCheck("p");
  EXPECT_NEAR(checked, 1000, 150);
}

TEST(StepVerifierTest, SummaryNamesUnverifiableSpans) {
  VerificationStats stats;
  stats.spans[{0, 2}].verified_steps = 10;
  stats.spans[{4, 5}].unverified_steps = 10;
  stats.spans[{4, 5}].no_replica_steps = 10;
  stats.mismatches = 1;
  stats.peers_banned = 1;
  EXPECT_EQ(stats.verified_steps(), 10);
  EXPECT_EQ(stats.unverified_steps(), 10);
  const std::string summary = stats.Summary();
  EXPECT_NE(summary.find("10/20"), std::string::npos) << summary;
  EXPECT_NE(summary.find("no replica for blocks 4"), std::string::npos) << summary;
  EXPECT_NE(summary.find("1 peer banned"), std::string::npos) << summary;
}

}  // namespace
}  // namespace swarm::router
