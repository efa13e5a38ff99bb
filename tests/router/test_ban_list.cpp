#include <gtest/gtest.h>

#include "router/ban_list.h"

namespace swarm::router {
namespace {

class FakeClock {
 public:
  absl::Time now = absl::FromUnixSeconds(1'000'000);
  BanList::Clock AsClock() {
    return [this] { return now; };
  }
};

TEST(BanListTest, ExponentialBackoffWithCapAndReset) {
  FakeClock clock;
  BanList bans(BanOptions{absl::Seconds(1), absl::Seconds(8), 2.0}, clock.AsClock());
  const registry::PeerId a = registry::PeerId::FromName("a"), b = registry::PeerId::FromName("b");
  EXPECT_FALSE(bans.IsBanned(a));

  // Bans of 1, 2, 4, 8, 8 s: each retried right after the previous ban ends.
  const int expected_s[] = {1, 2, 4, 8, 8};
  for (int len : expected_s) {
    const absl::Time start = clock.now;
    EXPECT_EQ(bans.ReportFailure(a), start + absl::Seconds(len));
    EXPECT_TRUE(bans.IsBanned(a));
    EXPECT_FALSE(bans.IsBanned(b));
    clock.now = start + absl::Seconds(len) - absl::Milliseconds(1);
    EXPECT_TRUE(bans.IsBanned(a)) << "ban of " << len << " s ended early";
    clock.now = start + absl::Seconds(len);
    EXPECT_FALSE(bans.IsBanned(a)) << "ban of " << len << " s did not end";
  }

  // Success resets the backoff.
  bans.ReportSuccess(a);
  EXPECT_EQ(bans.ReportFailure(a), clock.now + absl::Seconds(1));
}

TEST(BanListTest, BannedSetAndQuietPeriodReset) {
  FakeClock clock;
  BanList bans(BanOptions{absl::Seconds(1), absl::Seconds(10), 2.0}, clock.AsClock());
  const registry::PeerId a = registry::PeerId::FromName("a"), b = registry::PeerId::FromName("b"),
                         c = registry::PeerId::FromName("c");
  bans.ReportFailure(a);
  bans.ReportFailure(a);  // now banned until +2 s, next ban 4 s
  bans.ReportFailure(b);  // until +1 s
  EXPECT_EQ(bans.Banned(), (absl::flat_hash_set<registry::PeerId>{a, b}));
  EXPECT_FALSE(bans.Banned().contains(c));
  clock.now += absl::Milliseconds(1500);
  EXPECT_EQ(bans.Banned(), (absl::flat_hash_set<registry::PeerId>{a}));
  EXPECT_EQ(bans.BannedUntil(c), absl::InfinitePast());

  // Retried soon: backoff keeps growing (4 s).
  clock.now += absl::Seconds(1);
  EXPECT_EQ(bans.ReportFailure(a), clock.now + absl::Seconds(4));
  // After a long quiet period (longer than the cap past the ban's end) it starts over at 1 s.
  clock.now += absl::Seconds(4) + absl::Seconds(11);
  EXPECT_EQ(bans.ReportFailure(a), clock.now + absl::Seconds(1));
}

// Ids are free: a peer banned at an address stays banned there under any new id, the address's
// ban follows the same backoff, and spellings of one numeric IPv6 address are one address.
TEST(BanListTest, AddressIsBannedWithItsPeer) {
  FakeClock clock;
  BanList bans(BanOptions{absl::Seconds(1), absl::Seconds(8), 2.0}, clock.AsClock());
  const registry::PeerId liar = registry::PeerId::FromName("liar");
  const registry::PeerId fresh = registry::PeerId::FromName("fresh id");
  bans.ReportFailure(liar, "tcp://127.0.0.1:5000");
  bans.ReportFailure(liar, "tcp://127.0.0.1:5000");  // until +2 s
  EXPECT_TRUE(bans.IsAddressBanned("tcp://127.0.0.1:5000"));
  EXPECT_TRUE(bans.IsAddressBanned("tcp://127.0.0.1:5000"));
  EXPECT_FALSE(bans.IsAddressBanned("tcp://127.0.0.1:5001"));
  EXPECT_FALSE(bans.IsBanned(fresh));
  EXPECT_EQ(bans.BannedAddresses(), (absl::flat_hash_set<std::string>{"127.0.0.1:5000"}));
  EXPECT_EQ(AddressKey("tcp://[::1]:7"), "[::1]:7");
  EXPECT_EQ(AddressKey("tcp://[0:0:0:0:0:0:0:1]:7"), "[::1]:7");
  EXPECT_EQ(AddressKey("tcp://Example.ORG:7"), "example.org:7");
  EXPECT_EQ(AddressKey("ipc:///tmp/x"), "ipc:///tmp/x");

  // The new id at the old address fails too: the address's backoff grows (4 s), not restarts.
  clock.now += absl::Seconds(2);
  EXPECT_FALSE(bans.IsAddressBanned("tcp://127.0.0.1:5000"));
  bans.ReportFailure(fresh, "tcp://127.0.0.1:5000");
  clock.now += absl::Seconds(3);
  EXPECT_TRUE(bans.IsAddressBanned("tcp://127.0.0.1:5000"));
  EXPECT_FALSE(bans.IsBanned(fresh));  // its own first ban (1 s) is over
  clock.now += absl::Seconds(1);
  EXPECT_TRUE(bans.BannedAddresses().empty());

  // A success at the address lifts its ban; a failure without an address bans no address.
  bans.ReportFailure(fresh, "tcp://127.0.0.1:5000");
  bans.ReportSuccess(fresh, "tcp://127.0.0.1:5000");
  EXPECT_FALSE(bans.IsAddressBanned("tcp://127.0.0.1:5000"));
  bans.ReportFailure(liar);
  EXPECT_TRUE(bans.BannedAddresses().empty());
}

// A relay's endpoint for a relayed peer: the endpoint alone is banned (at least relay_endpoint,
// then its own backoff), never the peer, which may announce another relay's endpoint at once.
TEST(BanListTest, ARelayEndpointIsBannedWithoutItsPeer) {
  FakeClock clock;
  BanOptions options{absl::Seconds(1), absl::Seconds(60), 2.0};
  options.relay_endpoint = absl::Seconds(10);
  BanList bans(options, clock.AsClock());
  const registry::PeerId home = registry::PeerId::FromName("home");
  EXPECT_EQ(bans.ReportAddressFailure("tcp://10.0.0.1:4000"), clock.now + absl::Seconds(10));
  EXPECT_TRUE(bans.IsAddressBanned("tcp://10.0.0.1:4000"));
  EXPECT_FALSE(bans.IsAddressBanned("tcp://10.0.0.2:4000"));  // its next relay's endpoint
  EXPECT_FALSE(bans.IsBanned(home));
  EXPECT_TRUE(bans.Banned().empty());
  clock.now += absl::Seconds(10);
  EXPECT_FALSE(bans.IsAddressBanned("tcp://10.0.0.1:4000"));
  // Failing again there: the backoff goes on from the first ban's length.
  EXPECT_EQ(bans.ReportAddressFailure("tcp://10.0.0.1:4000"), clock.now + absl::Seconds(20));
  bans.ReportSuccess(home, "tcp://10.0.0.1:4000");
  EXPECT_FALSE(bans.IsAddressBanned("tcp://10.0.0.1:4000"));
}

TEST(BanListTest, ALiarIsBannedLongByIdAndAddressAndSuccessDoesNotLiftIt) {
  FakeClock clock;
  BanList bans(BanOptions{absl::Seconds(1), absl::Seconds(8), 2.0, absl::Hours(1)},
               clock.AsClock());
  const registry::PeerId liar = registry::PeerId::FromName("liar");
  bans.ReportLie(&liar, "tcp://10.0.0.1:5000");
  EXPECT_TRUE(bans.IsBanned(liar));
  EXPECT_TRUE(bans.IsAddressBanned("tcp://10.0.0.1:5000"));
  EXPECT_FALSE(bans.IsAddressBanned("tcp://10.0.0.1:5001"));
  bans.ReportSuccess(liar);
  EXPECT_TRUE(bans.IsBanned(liar));
  // A new id at the same address stays out (the address ban); without an id, the address alone.
  bans.ReportLie(nullptr, "tcp://10.0.0.2:5000");
  EXPECT_TRUE(bans.IsAddressBanned("tcp://10.0.0.2:5000"));
  clock.now += absl::Minutes(59);
  EXPECT_TRUE(bans.IsBanned(liar));
  clock.now += absl::Minutes(2);
  EXPECT_FALSE(bans.IsBanned(liar));
  EXPECT_FALSE(bans.IsAddressBanned("tcp://10.0.0.1:5000"));
}

}  // namespace
}  // namespace swarm::router
