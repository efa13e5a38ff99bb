// The session table on a stack that only hands out caches: open, find, close, idle expiry and
// shutdown, the KV-cache budget and the session limits, and each session's route kept in its one
// record (gone with it).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kernels/cpu_reference_backend.h"
#include "peer/session_table.h"
#include "shard/kv_cache.h"
#include "shard/sequence_cache.h"

namespace swarm::peer {
namespace {

using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// Hands out caches, refusing those longer than max_cache (as a device out of memory would).
class FakeStack : public shard::ServingStack {
 public:
  int64_t first_block() const override { return 0; }
  int64_t last_block() const override { return 4; }
  const model::ModelConfig& config() const override { return config_; }
  std::string devices() const override { return "fake"; }
  std::string Describe() const override { return "backend fake"; }
  // A real cache (one layer of kv_dim 1 in host memory), of no use to any real stack.
  absl::StatusOr<std::unique_ptr<shard::SequenceCache>> NewCache(int64_t capacity) override {
    if (capacity > max_cache) return absl::ResourceExhaustedError("out of device memory");
    std::vector<std::unique_ptr<shard::KvCache>> parts(1);
    auto part = shard::KvCache::Create(backend_, 1, 1, capacity, kernels::kDefaultKvTypes);
    if (!part.ok()) return part.status();
    parts[0] = std::move(*part);
    return std::make_unique<shard::SequenceCache>(this, std::move(parts));
  }
  using shard::ServingStack::Forward;
  absl::Status Forward(std::span<const shard::SequenceStep>, int64_t, int64_t, const float*,
                       float*) override {
    return absl::UnimplementedError("no compute");
  }
  void Park() override {}
  void Unpark() override {}

  int64_t max_cache = 1 << 20;

 private:
  model::ModelConfig config_;
  kernels::CpuReferenceBackend backend_;
};

const transport::SessionId kA{1, 1};
const transport::SessionId kB{2, 2};
const transport::SessionId kC{3, 3};

SessionRoute Route(uint32_t first, uint32_t last, uint32_t hop = 0) {
  SessionRoute route;
  route.first_block = first;
  route.last_block = last;
  route.hop_index = hop;
  route.return_outputs = hop % 2 == 0;
  route.output_codec.dtype = transport::Dtype::kF16;
  return route;
}

SessionLimits Limits(int64_t cache_tokens) {
  SessionLimits limits;
  limits.cache_tokens = cache_tokens;
  limits.max_session_length = 64;
  limits.idle_timeout = seconds(10);
  limits.max_sessions = 8;
  return limits;
}

TEST(SessionTable, OpenFindClose) {
  FakeStack stack;
  SessionTable table(stack, Limits(100));
  const auto t0 = Clock::now();
  auto opened = table.Open(kA, "client-1", Route(1, 3, 2), 16, t0);
  ASSERT_TRUE(opened.ok()) << opened.status();
  Session* session = *opened;
  EXPECT_EQ(session->id, kA);
  EXPECT_EQ(session->owner, "client-1");
  EXPECT_EQ(session->route, Route(1, 3, 2));
  EXPECT_EQ(session->cache->capacity(), 16);
  EXPECT_EQ(session->opened, t0);
  EXPECT_EQ(session->last_used, t0);
  EXPECT_EQ(table.size(), 1u);
  EXPECT_EQ(table.free_cache_tokens(), 84);

  EXPECT_EQ(table.Find(kA), session);
  EXPECT_EQ(table.Find(kB), nullptr);

  EXPECT_TRUE(table.Close(kA));
  EXPECT_EQ(table.Find(kA), nullptr);
  EXPECT_FALSE(table.Close(kA));  // closing twice is harmless
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.free_cache_tokens(), 100);
}

TEST(SessionTable, AnIdInUseIsRefusedAndTheSessionKept) {
  FakeStack stack;
  SessionTable table(stack, Limits(100));
  ASSERT_TRUE(table.Open(kA, "client-1", Route(0, 2), 16, Clock::now()).ok());
  auto again = table.Open(kA, "client-2", Route(2, 4), 8, Clock::now());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  ASSERT_NE(table.Find(kA), nullptr);
  EXPECT_EQ(table.Find(kA)->owner, "client-1");
  EXPECT_EQ(table.Find(kA)->route, Route(0, 2));
  EXPECT_EQ(table.free_cache_tokens(), 84);
}

TEST(SessionTable, LengthsOutsideTheLimitAreInvalid) {
  FakeStack stack;
  SessionTable table(stack, Limits(100));
  EXPECT_EQ(table.Open(kA, "c", Route(0, 1), 0, Clock::now()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(table.Open(kA, "c", Route(0, 1), 65, Clock::now()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(table.Open(kA, "c", Route(0, 1), 64, Clock::now()).ok());
}

TEST(SessionTable, TheBudgetBoundsTheSumOfLengths) {
  FakeStack stack;
  SessionTable table(stack, Limits(100));
  ASSERT_TRUE(table.Open(kA, "c", Route(0, 1), 60, Clock::now()).ok());
  auto refused = table.Open(kB, "c", Route(0, 1), 41, Clock::now());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(table.Find(kB), nullptr);
  EXPECT_EQ(table.free_cache_tokens(), 40);
  ASSERT_TRUE(table.Open(kB, "c", Route(0, 1), 40, Clock::now()).ok());
  EXPECT_EQ(table.free_cache_tokens(), 0);
  EXPECT_TRUE(table.Close(kA));
  EXPECT_EQ(table.free_cache_tokens(), 60);
  EXPECT_TRUE(table.Open(kC, "c", Route(0, 1), 60, Clock::now()).ok());
}

TEST(SessionTable, TheNumberOfSessionsIsBounded) {
  FakeStack stack;
  SessionLimits limits = Limits(1000);
  limits.max_sessions = 2;
  SessionTable table(stack, limits);
  ASSERT_TRUE(table.Open(kA, "c", Route(0, 1), 1, Clock::now()).ok());
  ASSERT_TRUE(table.Open(kB, "c", Route(0, 1), 1, Clock::now()).ok());
  EXPECT_EQ(table.Open(kC, "c", Route(0, 1), 1, Clock::now()).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(SessionTable, ACacheTheStackCannotMakeReservesNothing) {
  FakeStack stack;
  stack.max_cache = 8;
  SessionTable table(stack, Limits(100));
  auto refused = table.Open(kA, "c", Route(0, 1), 16, Clock::now());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(table.Find(kA), nullptr);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.free_cache_tokens(), 100);
}

TEST(SessionTable, IdleSessionsExpireWithTheirRoutes) {
  FakeStack stack;
  SessionTable table(stack, Limits(100));
  const auto t0 = Clock::now();
  ASSERT_TRUE(table.Open(kA, "client-a", Route(0, 2, 1), 10, t0).ok());
  ASSERT_TRUE(table.Open(kB, "client-b", Route(2, 4, 2), 20, t0 + seconds(5)).ok());

  EXPECT_TRUE(table.ExpireIdle(t0 + seconds(10)).empty());  // idle exactly the limit: kept
  auto expired = table.ExpireIdle(t0 + seconds(11));
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0]->id, kA);
  EXPECT_EQ(expired[0]->owner, "client-a");
  EXPECT_EQ(expired[0]->route, Route(0, 2, 1));
  EXPECT_EQ(table.Find(kA), nullptr);
  EXPECT_NE(table.Find(kB), nullptr);
  EXPECT_EQ(table.free_cache_tokens(), 80);

  // Use (a step) keeps a session alive.
  table.Find(kB)->started = true;
  table.Find(kB)->last_used = t0 + seconds(14);
  EXPECT_TRUE(table.ExpireIdle(t0 + seconds(20)).empty());
  EXPECT_EQ(table.ExpireIdle(t0 + seconds(25)).size(), 1u);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.free_cache_tokens(), 100);
}

TEST(SessionTable, SessionsThatNeverStepExpireSooner) {
  FakeStack stack;
  SessionLimits limits = Limits(100);
  limits.unstarted_timeout = seconds(2);
  SessionTable table(stack, limits);
  const auto t0 = Clock::now();
  ASSERT_TRUE(table.Open(kA, "client-a", Route(0, 2, 1), 10, t0).ok());
  ASSERT_TRUE(table.Open(kB, "client-b", Route(0, 2, 1), 10, t0).ok());
  table.Find(kB)->started = true;
  table.Find(kB)->last_used = t0 + seconds(1);
  EXPECT_TRUE(table.ExpireIdle(t0 + seconds(2)).empty());
  auto expired = table.ExpireIdle(t0 + seconds(3));
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0]->id, kA);
  // The one that stepped keeps the idle timeout.
  EXPECT_TRUE(table.ExpireIdle(t0 + seconds(11)).empty());
  EXPECT_EQ(table.ExpireIdle(t0 + seconds(12)).size(), 1u);
}

TEST(SessionTable, CloseAllEndsEverySessionAndHandsThemBack) {
  FakeStack stack;
  SessionTable table(stack, Limits(100));
  ASSERT_TRUE(table.Open(kA, "client-a", Route(0, 1), 10, Clock::now()).ok());
  ASSERT_TRUE(table.Open(kB, "client-b", Route(1, 2), 10, Clock::now()).ok());
  auto closed = table.CloseAll();
  ASSERT_EQ(closed.size(), 2u);
  std::vector<std::string> owners = {closed[0]->owner, closed[1]->owner};
  std::sort(owners.begin(), owners.end());
  EXPECT_EQ(owners, (std::vector<std::string>{"client-a", "client-b"}));
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.Find(kA), nullptr);
  EXPECT_EQ(table.free_cache_tokens(), 100);
  EXPECT_TRUE(table.CloseAll().empty());
}

TEST(SessionTable, AReopenedIdGetsItsNewRouteNotTheOld) {
  FakeStack stack;
  SessionTable table(stack, Limits(100));
  ASSERT_TRUE(table.Open(kA, "client-1", Route(0, 2, 0), 10, Clock::now()).ok());
  ASSERT_TRUE(table.Close(kA));
  auto reopened = table.Open(kA, "client-2", Route(2, 4, 3), 12, Clock::now());
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->route, Route(2, 4, 3));
  EXPECT_EQ((*reopened)->owner, "client-2");
  EXPECT_EQ((*reopened)->cache->capacity(), 12);
}

}  // namespace
}  // namespace swarm::peer
