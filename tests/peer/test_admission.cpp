// peer::Admission: the per-connection and per-identity quotas on sessions, KV-cache positions and
// queued steps; tickets that give their share back when destroyed or move it to a new connection;
// the model-derived message size limit; identities from the socket's metadata.
#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "absl/strings/match.h"
#include "peer/admission.h"

namespace swarm::peer {
namespace {

const Requester kAlice{"conn-a", "ip:10.0.0.1"};
const Requester kAliceAgain{"conn-a2", "ip:10.0.0.1"};  // another connection, same address
const Requester kAliceThird{"conn-a3", "ip:10.0.0.1"};
const Requester kBob{"conn-b", "ip:10.0.0.2"};

QuotaLimits Limits() {
  QuotaLimits limits;
  limits.sessions_per_connection = 3;
  limits.sessions_per_identity = 4;
  limits.cache_share_per_connection = 0.25;
  limits.cache_share_per_identity = 0.5;
  limits.queued_bytes_per_connection = 1000;
  limits.queued_bytes_per_identity = 1500;
  limits.queued_steps_per_connection = 4;
  limits.queued_steps_per_identity = 6;
  return limits;
}

void ExpectExhausted(const absl::StatusOr<Admission::Ticket>& ticket, const char* names) {
  ASSERT_FALSE(ticket.ok());
  EXPECT_EQ(ticket.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(ticket.status().message(), names)) << ticket.status();
}

TEST(AdmissionTest, CacheSharesPerConnectionAndIdentity) {
  Admission admission(Limits(), /*cache_tokens=*/1000, /*max_session_length=*/100);
  EXPECT_EQ(admission.connection_cache_tokens(), 250);
  EXPECT_EQ(admission.identity_cache_tokens(), 500);
  std::vector<Admission::Ticket> held;
  for (int i = 0; i < 2; ++i) {
    auto ticket = admission.AdmitSession(kAlice, 100);
    ASSERT_TRUE(ticket.ok()) << ticket.status();
    held.push_back(std::move(*ticket));
  }
  // 200 of the connection's 250 positions are taken: 100 more do not fit, 50 do.
  ExpectExhausted(admission.AdmitSession(kAlice, 100), "KV-cache positions per connection");
  // Another connection from the same address fits until the address's 500 are taken.
  auto other = admission.AdmitSession(kAliceAgain, 250);
  ASSERT_TRUE(other.ok()) << other.status();
  ExpectExhausted(admission.AdmitSession(kAliceAgain, 1), "KV-cache positions per connection");
  ExpectExhausted(admission.AdmitSession(kAliceThird, 100), "KV-cache positions per identity");
  // Someone else is not affected.
  auto bob = admission.AdmitSession(kBob, 250);
  ASSERT_TRUE(bob.ok()) << bob.status();
  EXPECT_EQ(admission.identity("ip:10.0.0.1").cache_tokens, 450);
  EXPECT_EQ(admission.connection("conn-a").sessions, 2);
}

TEST(AdmissionTest, ASmallBudgetStillHoldsOneLongestSession) {
  // 1/4 of 1000 is less than one session of 600: a connection may still open one.
  Admission admission(Limits(), 1000, 600);
  EXPECT_EQ(admission.connection_cache_tokens(), 600);
  auto ticket = admission.AdmitSession(kAlice, 600);
  ASSERT_TRUE(ticket.ok()) << ticket.status();
  ExpectExhausted(admission.AdmitSession(kAlice, 1), "per connection");
  // A budget smaller than the longest session caps the share at the budget.
  Admission tiny(Limits(), 50, 600);
  EXPECT_EQ(tiny.identity_cache_tokens(), 50);
}

TEST(AdmissionTest, SessionCountsPerConnectionAndIdentity) {
  Admission admission(Limits(), 1 << 20, 1);
  std::vector<Admission::Ticket> held;
  for (int i = 0; i < 3; ++i) held.push_back(*admission.AdmitSession(kAlice, 1));
  ExpectExhausted(admission.AdmitSession(kAlice, 1), "sessions per connection");
  held.push_back(*admission.AdmitSession(kAliceAgain, 1));
  ExpectExhausted(admission.AdmitSession(kAliceAgain, 1), "sessions per identity");
  // A session that ends gives its place back.
  held.erase(held.begin());
  EXPECT_TRUE(admission.AdmitSession(kAliceAgain, 1).ok());  // and ends again at once
  EXPECT_EQ(admission.identity("ip:10.0.0.1").sessions, 3);
}

TEST(AdmissionTest, QueuedStepsAreBoundedAndTheFirstIsAlwaysTaken) {
  Admission admission(Limits(), 1000, 100);
  std::vector<Admission::Ticket> queued;
  {
    // Nothing waits: a step larger than the cap is still taken (one step of any permitted size).
    auto big = admission.AdmitStep(kAlice, 5000);
    ASSERT_TRUE(big.ok()) << big.status();
    ExpectExhausted(admission.AdmitStep(kAlice, 1), "queued bytes per connection");
  }
  // The step ran: its bytes are free again.
  EXPECT_TRUE(admission.connection("conn-a").empty());
  for (int i = 0; i < 4; ++i) {
    auto step = admission.AdmitStep(kAlice, 100);
    ASSERT_TRUE(step.ok()) << i << ": " << step.status();
    queued.push_back(std::move(*step));
  }
  ExpectExhausted(admission.AdmitStep(kAlice, 100), "queued steps per connection");
  // Same address, other connection: up to the identity's caps (6 steps, 1500 bytes).
  queued.push_back(*admission.AdmitStep(kAliceAgain, 100));
  ExpectExhausted(admission.AdmitStep(kAliceThird, 1001), "queued bytes per identity");
  queued.push_back(*admission.AdmitStep(kAliceAgain, 100));
  ExpectExhausted(admission.AdmitStep(kAliceAgain, 1), "queued steps per identity");
  EXPECT_TRUE(admission.AdmitStep(kBob, 100).ok());
  queued.clear();
  EXPECT_TRUE(admission.identity("ip:10.0.0.1").empty());
}

TEST(AdmissionTest, TicketsMoveAndTransfer) {
  Admission admission(Limits(), 1000, 100);
  std::optional<Admission::Ticket> ticket = *admission.AdmitSession(kAlice, 100);
  Admission::Ticket moved = std::move(*ticket);
  ticket.reset();  // the moved-from ticket holds nothing
  EXPECT_EQ(admission.connection("conn-a").cache_tokens, 100);
  moved.Transfer(kBob);
  EXPECT_TRUE(admission.connection("conn-a").empty());
  EXPECT_EQ(admission.identity("ip:10.0.0.2").sessions, 1);
  EXPECT_EQ(moved.holder(), kBob);
  moved = Admission::Ticket();
  EXPECT_TRUE(admission.identity("ip:10.0.0.2").empty());
}

TEST(AdmissionTest, IdentityIsTheCurveKeyOrTheAddress) {
  EXPECT_EQ(IdentityOf("Key123", "10.1.2.3", "c1"), "key:Key123");
  EXPECT_EQ(IdentityOf("", "10.1.2.3", "c1"), "ip:10.1.2.3");
  EXPECT_EQ(IdentityOf("", "10.1.2.3", "c2"), "ip:10.1.2.3");
  EXPECT_EQ(IdentityOf("", "2001:db8::1", "c1"), "ip:2001:db8::1");
  // This machine's own connections are each an identity of their own.
  EXPECT_EQ(IdentityOf("", "127.0.0.1", "\x01\x02"), "local:0102");
  EXPECT_NE(IdentityOf("", "127.0.0.1", "a"), IdentityOf("", "127.0.0.1", "b"));
  EXPECT_NE(IdentityOf("", "::1", "a"), IdentityOf("", "::1", "b"));
  EXPECT_NE(IdentityOf("", "", "a"), IdentityOf("", "", "b"));
  EXPECT_EQ(IdentityOf("Key123", "127.0.0.1", "a"), "key:Key123");
}

TEST(AdmissionTest, MessageSizeLimitFollowsTheModel) {
  // A step of 2048 positions of 64 floats, a little zstd slack and room for a header.
  const int64_t limit = MaxMessageBytes(64, 2048);
  EXPECT_GE(limit, 2048 * 64 * 4);
  EXPECT_LE(limit, 2048 * 64 * 4 + 256 * 1024);
  EXPECT_GT(MaxMessageBytes(4096, 4096), int64_t{4096} * 4096 * 4);
  // Nothing overflows.
  EXPECT_GT(MaxMessageBytes(int64_t{1} << 40, int64_t{1} << 40), 0);
}

}  // namespace
}  // namespace swarm::peer
