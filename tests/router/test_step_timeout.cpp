// router::StepTimeout: a step's deadline grows with its tokens and the measured time per token,
// but never beyond max_step_timeout (a long prompt on an unmeasured chain once meant hours).
#include <gtest/gtest.h>

#include <chrono>
#include <limits>

#include "router/chain_session.h"

namespace swarm::router {
namespace {

using std::chrono::milliseconds;

TEST(StepTimeoutTest, GrowsWithTheStepUpToTheCap) {
  ChainOptions options;  // 2 s minimum, 20 x the expected time, 1 s per token before measuring
  options.max_step_timeout = std::chrono::minutes(5);
  EXPECT_EQ(StepTimeout(options, -1, 1), milliseconds(20000));
  EXPECT_EQ(StepTimeout(options, -1, 10), milliseconds(200000));
  // A 4096-token prompt before anything was measured: 20 x 4096 s uncapped, 5 min capped.
  EXPECT_EQ(StepTimeout(options, -1, 4096), std::chrono::minutes(5));
  // Measured: 10 ms per token.
  EXPECT_EQ(StepTimeout(options, 0.01, 1), milliseconds(2000));  // the minimum
  EXPECT_EQ(StepTimeout(options, 0.01, 100), milliseconds(20000));
  EXPECT_EQ(StepTimeout(options, 0.01, 1 << 24), std::chrono::minutes(5));
}

TEST(StepTimeoutTest, TheCapHoldsForAnyInput) {
  ChainOptions options;
  options.max_step_timeout = milliseconds(30000);
  EXPECT_EQ(StepTimeout(options, std::numeric_limits<double>::infinity(), 1), milliseconds(30000));
  // NaN is no measurement: the initial estimate (1 s per token) holds, and the cap.
  EXPECT_EQ(StepTimeout(options, std::numeric_limits<double>::quiet_NaN(), 1), milliseconds(20000));
  EXPECT_EQ(StepTimeout(options, std::numeric_limits<double>::quiet_NaN(), 2), milliseconds(30000));
  EXPECT_EQ(StepTimeout(options, 1e300, std::numeric_limits<int64_t>::max()), milliseconds(30000));
  // A cap below the minimum: the minimum wins (the minimum is what the user asked a peer to get).
  options.min_step_timeout = milliseconds(60000);
  EXPECT_EQ(StepTimeout(options, 1e9, 1000), milliseconds(60000));
  EXPECT_EQ(StepTimeout(options, 0, 1), milliseconds(60000));
}

}  // namespace
}  // namespace swarm::router
