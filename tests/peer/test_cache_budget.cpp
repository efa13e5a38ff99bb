// The KV-cache budget counts bytes: the same --cache-tokens holds twice the positions in an f16
// cache and about 3.8 times in q8_0, and a peer admits twice as many f16 sessions as f32 ones.
#include <gtest/gtest.h>

#include <chrono>

#include "peer/cache_budget.h"
#include "peer/session_table.h"
#include "shard/local_model.h"

namespace swarm::peer {
namespace {

using kernels::GgmlType;
using kernels::KvTypes;

constexpr KvTypes kF32{GgmlType::kF32, GgmlType::kF32};
constexpr KvTypes kF16{GgmlType::kF16, GgmlType::kF16};
constexpr KvTypes kQ8{GgmlType::kQ8_0, GgmlType::kQ8_0};

TEST(CacheBudgetTest, SameMemoryHoldsMorePositionsOfSmallerTypes) {
  // 5 blocks, 32 key and 32 value dims per position: 1280 bytes in f32, 640 in f16, 340 in q8_0.
  const CacheBudget f32 = CacheBudgetFor(1000, 5, 32, kF32);
  const CacheBudget f16 = CacheBudgetFor(1000, 5, 32, kF16);
  const CacheBudget q8 = CacheBudgetFor(1000, 5, 32, kQ8);
  EXPECT_EQ(f32.bytes, 1000u * 1280);
  EXPECT_EQ(f16.bytes, f32.bytes);
  EXPECT_EQ(q8.bytes, f32.bytes);
  EXPECT_EQ(f32.bytes_per_token, 1280u);
  EXPECT_EQ(f16.bytes_per_token, 640u);
  EXPECT_EQ(q8.bytes_per_token, 340u);
  EXPECT_EQ(f32.tokens, 1000);
  EXPECT_EQ(f16.tokens, 2000);
  EXPECT_EQ(q8.tokens, 1000 * 1280 / 340);
  // Mixed: f16 keys, f32 values.
  EXPECT_EQ(CacheBudgetFor(1000, 5, 32, {GgmlType::kF16, GgmlType::kF32}).tokens, 1333);
}

// Opens sessions of `length` positions until the peer refuses one; returns how many it admitted.
int AdmittedSessions(KvTypes types, int64_t cache_tokens, int64_t length) {
  kernels::BackendOptions backend;
  backend.name = "cpu";
  backend.threads = 1;
  auto model = shard::LocalModel::Load(SWARM_SHARED_DIR "/models/stories260K.gguf", backend,
                                       /*load_blocks=*/true, types);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return -1;
  shard::BlockStack& stack = *(*model)->blocks;
  SessionLimits limits;
  limits.cache_tokens =
      CacheBudgetFor(cache_tokens, stack.n_blocks(), stack.config().kv_dim(), types).tokens;
  limits.max_session_length = length;
  SessionTable table(stack, limits);
  const auto now = std::chrono::steady_clock::now();
  int admitted = 0;
  for (uint64_t id = 1; id <= 100; ++id) {
    SessionRoute route;
    route.first_block = static_cast<uint32_t>(stack.first_block());
    route.last_block = static_cast<uint32_t>(stack.last_block());
    auto session = table.Open(transport::SessionId{0, id}, "client", route, length, now);
    if (!session.ok()) {
      EXPECT_EQ(session.status().code(), absl::StatusCode::kResourceExhausted) << session.status();
      break;
    }
    // Each session's cache really is of the types (and so of the bytes) it was admitted for.
    EXPECT_EQ((*session)->cache->part(0).types(), types);
    ++admitted;
  }
  return admitted;
}

TEST(CacheBudgetTest, APeerAdmitsTwiceAsManyF16SessionsAsF32Ones) {
  const int f32 = AdmittedSessions(kF32, 1024, 256);
  const int f16 = AdmittedSessions(kF16, 1024, 256);
  EXPECT_EQ(f32, 4);
  EXPECT_EQ(f16, 2 * f32);
}

}  // namespace
}  // namespace swarm::peer
