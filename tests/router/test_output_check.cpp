#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "router/output_check.h"

namespace swarm::router {
namespace {

constexpr int64_t kEmbd = 8;

std::vector<float> Ramp(int64_t n_tokens, float scale) {
  std::vector<float> x(kEmbd * n_tokens);
  for (size_t i = 0; i < x.size(); ++i) x[i] = scale * (static_cast<float>(i % 7) - 3.0f);
  return x;
}

TEST(OutputCheckTest, AResidualUpdateIsAccepted) {
  const std::vector<float> in = Ramp(3, 1.0f);
  std::vector<float> out = in;
  for (float& v : out) v = v * 1.5f + 0.25f;
  EXPECT_TRUE(CheckHopOutput(in, out, kEmbd, 3).ok());
  // Growth by orders of magnitude within the bound (early blocks' massive activations).
  for (float& v : out) v *= 500.0f;
  EXPECT_TRUE(CheckHopOutput(in, out, kEmbd, 3).ok());
}

TEST(OutputCheckTest, NanAndInfinityAreRefusedNamingTheToken) {
  const std::vector<float> in = Ramp(3, 1.0f);
  std::vector<float> out = in;
  out[kEmbd * 2 + 1] = NAN;
  absl::Status s = CheckHopOutput(in, out, kEmbd, 3);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("token 2"), std::string::npos) << s;
  out[kEmbd * 2 + 1] = INFINITY;
  EXPECT_EQ(CheckHopOutput(in, out, kEmbd, 3).code(), absl::StatusCode::kDataLoss);
}

TEST(OutputCheckTest, ZerosAndHugeOutputsAreRefused) {
  const std::vector<float> in = Ramp(2, 1.0f);
  std::vector<float> zeros(in.size(), 0.0f);
  EXPECT_EQ(CheckHopOutput(in, zeros, kEmbd, 2).code(), absl::StatusCode::kDataLoss);
  // One token of zeros among good ones.
  std::vector<float> one_zero = in;
  for (int64_t k = 0; k < kEmbd; ++k) one_zero[kEmbd + k] = 0;
  EXPECT_EQ(CheckHopOutput(in, one_zero, kEmbd, 2).code(), absl::StatusCode::kDataLoss);
  std::vector<float> huge = in;
  for (float& v : huge) v *= 1e5f;
  EXPECT_EQ(CheckHopOutput(in, huge, kEmbd, 2).code(), absl::StatusCode::kDataLoss);
}

TEST(OutputCheckTest, ShapeMustMatch) {
  const std::vector<float> in = Ramp(2, 1.0f);
  const std::vector<float> short_out(in.begin(), in.end() - 1);
  EXPECT_EQ(CheckHopOutput(in, short_out, kEmbd, 2).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(CheckHopOutput(in, in, 0, 2).code(), absl::StatusCode::kInvalidArgument);
}

TEST(OutputCheckTest, AZeroInputChecksOnlyTheUpperBound) {
  const std::vector<float> in(kEmbd, 0.0f);
  std::vector<float> out(kEmbd, 0.0f);
  EXPECT_TRUE(CheckHopOutput(in, out, kEmbd, 1).ok());
  out[0] = 1e3f;
  EXPECT_EQ(CheckHopOutput(in, out, kEmbd, 1).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace swarm::router
