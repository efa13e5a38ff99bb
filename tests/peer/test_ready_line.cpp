// peer::ReadyLine: the line `swarm serve` prints when it serves, written and read in one place.
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "peer/ready_line.h"

namespace swarm::peer {
namespace {

ReadyLine Example() {
  return ReadyLine{.address = "tcp://127.0.0.1:40123",
                   .first_block = 2,
                   .last_block = 5,
                   .peer_id = "0123456789abcdef0123456789abcdef01234567",
                   .dht_port = 4222};
}

TEST(ReadyLine, FormatKeepsTheTextUsersKnow) {
  EXPECT_EQ(Example().Format(),
            "listening on tcp://127.0.0.1:40123 blocks 2:5 peer "
            "0123456789abcdef0123456789abcdef01234567 dht 4222");
  EXPECT_EQ(Example().Blocks(), "2:5");
}

TEST(ReadyLine, RoundTrip) {
  const ReadyLine line = Example();
  auto parsed = ReadyLine::Parse(line.Format());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, line);
  // As Subprocess::ReadLine hands it over, or straight from a file with its newline.
  parsed = ReadyLine::Parse(line.Format() + "\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, line);
  // --no-dht: a name for an id and no DHT node.
  const ReadyLine static_peer{.address = "tcp://0.0.0.0:31337",
                              .first_block = 0,
                              .last_block = 1,
                              .peer_id = "demo-peer-0",
                              .dht_port = 0};
  parsed = ReadyLine::Parse(static_peer.Format());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, static_peer);
  // --no-dht without --peer-id: no id at all, as `swarm serve` prints it.
  ReadyLine anonymous = static_peer;
  anonymous.peer_id = "";
  EXPECT_EQ(anonymous.Format(), "listening on tcp://0.0.0.0:31337 blocks 0:1 peer  dht 0");
  parsed = ReadyLine::Parse(anonymous.Format());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, anonymous);
}

// Reachability: a public peer names its relay service, a relayed one its relay.
TEST(ReadyLine, ReachabilityFieldsRoundTrip) {
  ReadyLine public_peer = Example();
  public_peer.reach = "public";
  public_peer.relay_service = "tcp://127.0.0.1:40200";
  EXPECT_EQ(public_peer.Format(),
            "listening on tcp://127.0.0.1:40123 blocks 2:5 peer "
            "0123456789abcdef0123456789abcdef01234567 dht 4222 reach public service "
            "tcp://127.0.0.1:40200");
  auto parsed = ReadyLine::Parse(public_peer.Format());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, public_peer);
  ReadyLine relayed = Example();
  relayed.reach = "relayed";
  relayed.via = "fedcba9876543210fedcba9876543210fedcba98";
  parsed = ReadyLine::Parse(relayed.Format());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, relayed);
}

TEST(ReadyLine, FieldsAddedLaterOrReorderedAreTolerated) {
  const ReadyLine expected = Example();
  for (const std::string line : {
           "listening on tcp://127.0.0.1:40123 blocks 2:5 peer "
           "0123456789abcdef0123456789abcdef01234567 dht 4222 relay tcp://10.0.0.1:9",
           "listening on tcp://127.0.0.1:40123 state online blocks 2:5 dht 4222 peer "
           "0123456789abcdef0123456789abcdef01234567",
       }) {
    auto parsed = ReadyLine::Parse(line);
    ASSERT_TRUE(parsed.ok()) << line << ": " << parsed.status();
    EXPECT_EQ(*parsed, expected) << line;
  }
}

TEST(ReadyLine, MalformedLinesAreRefusedWithTheReason) {
  const std::string id = "0123456789abcdef0123456789abcdef01234567";
  const std::pair<std::string, std::string> cases[] = {
      {"", "does not start with"},
      {"serve: model stories260K, blocks [0, 2)", "does not start with"},
      {"listening on http://127.0.0.1:8080 (model m, chat template plain)", "key without a value"},
      {"listening on tcp://h:1 blocks 0:2 peer " + id, "no \"dht\""},
      {"listening on tcp://h:1 peer " + id + " dht 5", "no \"blocks\""},
      {"listening on tcp://h:1 blocks 0:2 dht 5", "no \"peer\""},
      {"listening on tcp://h:1 blocks 0:2 peer " + id + " dht", "key without a value"},
      {"listening on tcp://h:1 blocks 0-2 peer " + id + " dht 5", "blocks \"0-2\""},
      {"listening on tcp://h:1 blocks 2:2 peer " + id + " dht 5", "A < B"},
      {"listening on tcp://h:1 blocks -1:2 peer " + id + " dht 5", "blocks \"-1:2\""},
      {"listening on tcp://h:1 blocks 0:2 peer " + id + " dht 70000", "dht port \"70000\""},
      {"listening on tcp://h:1 blocks 0:2 peer " + id + " dht x", "dht port \"x\""},
      {"listening on tcp://h:1 blocks 0:2 blocks 0:3 peer " + id + " dht 5", "\"blocks\" twice"},
      {"listening on tcp://h:1  blocks 0:2 peer " + id + " dht 5", "key without a value"},
      {"listening on tcp://h:1 blocks 0:2  peer " + id + " dht 5 x", "empty key"},
      {"listening on tcp://h:1 blocks  peer " + id + " dht 5", "blocks \"\""},
      {"listening on ", "no address"},
      {"listening on  blocks 0:2 peer " + id + " dht 5", "no address"},
  };
  for (const auto& [line, why] : cases) {
    auto parsed = ReadyLine::Parse(line);
    ASSERT_FALSE(parsed.ok()) << line;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << line;
    EXPECT_NE(parsed.status().message().find(why), std::string::npos)
        << line << ": " << parsed.status();
  }
}

}  // namespace
}  // namespace swarm::peer
