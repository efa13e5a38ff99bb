#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "router/peer_performance.h"

namespace swarm::router {
namespace {

class FakeClock {
 public:
  absl::Time now = absl::FromUnixSeconds(1'000'000);
  PeerPerformance::Clock AsClock() {
    return [this] { return now; };
  }
};

TEST(PeerPerformanceTest, SmoothsDecodeStepsPerBlock) {
  FakeClock clock;
  PeerPerformance perf(PeerPerformanceOptions{.smoothing = 0.5}, clock.AsClock());
  const registry::PeerId a = registry::PeerId::FromName("a"), b = registry::PeerId::FromName("b");
  // The first 1/smoothing = 2 steps are a plain mean.
  EXPECT_FALSE(perf.MeasuredTpsPerBlock(a).has_value());
  EXPECT_EQ(perf.Steps(a), 0);
  // 4 blocks in 0.04 s: 0.01 s per block, 100 steps/s per block.
  perf.ObserveStep(a, 4, 1, 0.04);
  ASSERT_TRUE(perf.MeasuredTpsPerBlock(a).has_value());
  EXPECT_NEAR(*perf.MeasuredTpsPerBlock(a), 100, 1e-9);
  // Averaged in time per block: (0.01 + 0.03) / 2 = 0.02 s, 50 steps/s.
  perf.ObserveStep(a, 4, 1, 0.12);
  EXPECT_NEAR(*perf.MeasuredTpsPerBlock(a), 50, 1e-9);
  EXPECT_EQ(perf.Steps(a), 2);
  // Past 1/smoothing steps, a running average: 0.02 + 0.5 x (0.01 - 0.02) = 0.015 s.
  perf.ObserveStep(a, 1, 1, 0.01);
  EXPECT_NEAR(*perf.MeasuredTpsPerBlock(a), 1 / 0.015, 1e-9);
  EXPECT_FALSE(perf.MeasuredTpsPerBlock(b).has_value());
  EXPECT_EQ(perf.MeasuredTps().size(), 1u);
}

TEST(PeerPerformanceTest, IgnoresPrefillsAndNonsense) {
  FakeClock clock;
  PeerPerformance perf(PeerPerformanceOptions{.max_step_tokens = 8}, clock.AsClock());
  const registry::PeerId a = registry::PeerId::FromName("a");
  perf.ObserveStep(a, 2, 100, 0.5);  // a prompt
  perf.ObserveStep(a, 0, 1, 0.5);
  perf.ObserveStep(a, 2, 1, -1);
  perf.ObserveStep(a, 2, 1, std::numeric_limits<double>::quiet_NaN());
  perf.ObserveStep(a, 2, 1, std::numeric_limits<double>::infinity());
  EXPECT_FALSE(perf.MeasuredTpsPerBlock(a).has_value());
  // A hop that added no time of its own counts as a microsecond, not infinitely fast.
  perf.ObserveStep(a, 1, 1, 0);
  ASSERT_TRUE(perf.MeasuredTpsPerBlock(a).has_value());
  EXPECT_NEAR(*perf.MeasuredTpsPerBlock(a), 1e6, 1e-3);
  EXPECT_TRUE(std::isfinite(*perf.MeasuredTpsPerBlock(a)));
}

// A slow peer gets another chance: after max_age without a step it is forgotten, and its next
// measurement starts afresh.
TEST(PeerPerformanceTest, ForgetsOldMeasurements) {
  FakeClock clock;
  PeerPerformance perf(PeerPerformanceOptions{.smoothing = 0.5, .max_age = absl::Minutes(1)},
                       clock.AsClock());
  const registry::PeerId a = registry::PeerId::FromName("a");
  perf.ObserveStep(a, 1, 1, 1.0);
  clock.now += absl::Seconds(60);
  EXPECT_NEAR(*perf.MeasuredTpsPerBlock(a), 1, 1e-9);
  clock.now += absl::Seconds(1);
  EXPECT_FALSE(perf.MeasuredTpsPerBlock(a).has_value());
  EXPECT_TRUE(perf.MeasuredTps().empty());
  perf.ObserveStep(a, 1, 1, 0.01);
  EXPECT_NEAR(*perf.MeasuredTpsPerBlock(a), 100, 1e-9);
  EXPECT_EQ(perf.Steps(a), 1);
}

}  // namespace
}  // namespace swarm::router
