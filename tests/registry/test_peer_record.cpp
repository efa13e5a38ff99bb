#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "registry/peer_record.h"

namespace swarm::registry {
namespace {

PeerRecord FullRecord() {
  PeerRecord r;
  r.peer_id = PeerId::FromName("peer-a");
  r.address = "tcp://10.0.0.7:5555";
  r.model_id = "stories260K-f32-5a1b";
  r.blocks = {3, 11};
  r.state = PeerState::kOnline;
  r.decode_tps_per_block = 1234.5;
  r.prompt_tps_per_block = 98765.25;
  r.network_tps = 4321;
  r.free_cache_tokens = 1000;
  r.total_cache_tokens = 4096;
  r.free_cache_bytes = 1000 * 1536;
  r.total_cache_bytes = 4096 * 1536;
  r.active_sessions = 3;
  r.rtt_ms[PeerId::FromName("peer-b")] = 12.5;
  r.rtt_ms[PeerId::FromName("peer-c")] = 0.25;
  r.dht_port = 4222;
  r.transport_key = std::string(32, '\x07');
  r.expiry_unix_ms = 1'700'000'000'123;
  r.seq = 42;
  return r;
}

TEST(PeerIdTest, HexRoundTripAndErrors) {
  PeerId id = PeerId::FromName("x");
  EXPECT_FALSE(id.IsZero());
  EXPECT_EQ(id.ToHex().size(), 40u);
  // SHA-1("x"), so ids from names match OpenDHT's InfoHash::get().
  EXPECT_EQ(id.ToHex(), "11f6ad8ec52a2984abaafd7c3b516503785c2072");
  auto parsed = PeerId::FromHex("11F6AD8EC52A2984ABAAFD7C3B516503785C2072");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, id);
  EXPECT_EQ(id.ShortHex(), "11f6ad8e");
  EXPECT_FALSE(PeerId::FromHex("11f6").ok());
  EXPECT_FALSE(PeerId::FromHex(std::string(39, 'a') + "g").ok());
  EXPECT_TRUE(PeerId().IsZero());
}

TEST(PeerRecordTest, RoundTrip) {
  const PeerRecord r = FullRecord();
  ASSERT_TRUE(ValidatePeerRecord(r).ok());
  const std::string bytes = SerializePeerRecord(r);
  auto parsed = ParsePeerRecord(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, r);

  PeerRecord minimal;
  minimal.peer_id = PeerId::FromName("m");
  minimal.address = "ipc:///tmp/swarm-peer-0";
  minimal.model_id = "m";
  minimal.blocks = {0, 1};
  auto parsed_min = ParsePeerRecord(SerializePeerRecord(minimal));
  ASSERT_TRUE(parsed_min.ok()) << parsed_min.status();
  EXPECT_EQ(*parsed_min, minimal);
}

TEST(PeerRecordTest, EveryTruncationFails) {
  const std::string bytes = SerializePeerRecord(FullRecord());
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(ParsePeerRecord(std::string_view(bytes).substr(0, n)).ok()) << "length " << n;
  }
  EXPECT_FALSE(ParsePeerRecord(bytes + "x").ok()) << "trailing byte accepted";
}

TEST(PeerRecordTest, RandomBytesAndMutationsNeverCrash) {
  std::mt19937 rng(7);
  const std::string good = SerializePeerRecord(FullRecord());
  int accepted = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string bytes;
    if (iter % 2 == 0) {
      bytes.resize(rng() % 600);
      for (char& c : bytes) c = static_cast<char>(rng());
      if (iter % 4 == 0 && bytes.size() >= 5) std::memcpy(bytes.data(), "SWPR\x01", 5);
    } else {
      bytes = good;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] = static_cast<char>(rng());
    }
    auto r = ParsePeerRecord(bytes);
    if (r.ok()) {
      ++accepted;
      // Anything accepted must be valid and serialize back to the same bytes.
      EXPECT_TRUE(ValidatePeerRecord(*r).ok());
      EXPECT_EQ(SerializePeerRecord(*r), bytes);
    }
  }
  // Some single-byte mutations (e.g. in a throughput) stay valid; random junk does not.
  EXPECT_LT(accepted, 10000);
}

// Offset of the RTT count in FullRecord's encoding: magic+version, id, two strings, the fixed
// fields, then the transport key.
size_t RttCountOffset(const PeerRecord& r) {
  return 5 + 20 + 2 + r.address.size() + 2 + r.model_id.size() + 4 + 4 + 1 + 8 * 3 + 8 + 8 + 8 + 8 +
         4 + 2 + 1 + r.transport_key.size();
}

// Older records still parse: version 2 (before the relay fields) without relaying, version 1
// (before the cache bytes) with its bytes unknown (0); a version beyond the newest does not.
TEST(PeerRecordTest, OlderVersionsParse) {
  PeerRecord r = FullRecord();
  r.relay_address = "tcp://10.0.0.9:4100";
  r.relay_mbit = 100;
  r.relayed_peers = 3;
  const std::string v3 = SerializePeerRecord(r);
  ASSERT_EQ(static_cast<uint8_t>(v3[4]), 3);
  {
    auto parsed = ParsePeerRecord(v3);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, r);
  }
  // The relay fields end the record.
  const size_t relay_bytes = 2 + r.relay_address.size() + 4 + 4 + 1 + 20;
  std::string v2 = v3.substr(0, v3.size() - relay_bytes);
  v2[4] = '\x02';
  PeerRecord want = r;
  want.relay_address.clear();
  want.relay_mbit = 0;
  want.relayed_peers = 0;
  {
    auto parsed = ParsePeerRecord(v2);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, want);
  }
  // The cache bytes follow the two token counts.
  const size_t bytes_at =
      5 + 20 + 2 + r.address.size() + 2 + r.model_id.size() + 4 + 4 + 1 + 8 * 3 + 8 + 8;
  std::string v1 = v2.substr(0, bytes_at) + v2.substr(bytes_at + 16);
  v1[4] = '\x01';
  auto parsed = ParsePeerRecord(v1);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  want.free_cache_bytes = 0;
  want.total_cache_bytes = 0;
  EXPECT_EQ(*parsed, want);
  // The same bytes labelled version 2 are short; version 4 is unknown.
  std::string relabelled = v1;
  relabelled[4] = '\x02';
  EXPECT_FALSE(ParsePeerRecord(relabelled).ok());
  std::string v4 = v3;
  v4[4] = '\x04';
  EXPECT_FALSE(ParsePeerRecord(v4).ok());
}

// A relayed record names its relay; relay fields out of range are refused.
TEST(PeerRecordTest, RelayFieldsValidated) {
  PeerRecord r = FullRecord();
  r.relayed = true;
  EXPECT_FALSE(ValidatePeerRecord(r).ok());
  r.relay_peer = PeerId::FromName("relay");
  EXPECT_TRUE(ValidatePeerRecord(r).ok());
  auto parsed = ParsePeerRecord(SerializePeerRecord(r));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, r);
  PeerRecord bad = r;
  bad.relay_address = "ipc:///tmp/x";
  EXPECT_FALSE(ValidatePeerRecord(bad).ok());
  bad = r;
  bad.relay_mbit = -1;
  EXPECT_FALSE(ValidatePeerRecord(bad).ok());
}

TEST(PeerRecordTest, AbsurdSizesRejectedBeforeAllocation) {
  const PeerRecord r = FullRecord();
  std::string bytes = SerializePeerRecord(r);
  // Address length 0xffff with only a few bytes behind it.
  std::string big_addr = bytes;
  big_addr[25] = '\xff';
  big_addr[26] = '\xff';
  EXPECT_FALSE(ParsePeerRecord(big_addr).ok());
  // RTT count 0xffff.
  std::string big_rtt = bytes;
  const size_t off = RttCountOffset(r);
  ASSERT_EQ(static_cast<uint8_t>(big_rtt[off]), 2);
  big_rtt[off] = '\xff';
  big_rtt[off + 1] = '\xff';
  auto parsed = ParsePeerRecord(big_rtt);
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("RTT"), std::string_view::npos) << parsed.status();
  // A huge input is refused outright.
  EXPECT_FALSE(ParsePeerRecord(std::string(kMaxSerializedRecordSize + 1, 'S')).ok());
}

TEST(PeerRecordTest, ValidationRejectsBadFields) {
  auto expect_bad = [](auto mutate, const char* what) {
    PeerRecord r = FullRecord();
    mutate(r);
    EXPECT_FALSE(ValidatePeerRecord(r).ok()) << what;
    // The same record must not survive a round trip through the parser either.
    EXPECT_FALSE(ParsePeerRecord(SerializePeerRecord(r)).ok()) << what;
  };
  expect_bad([](PeerRecord& r) { r.peer_id = PeerId(); }, "zero id");
  expect_bad([](PeerRecord& r) { r.free_cache_bytes = r.total_cache_bytes + 1; }, "free > total");
  expect_bad([](PeerRecord& r) { r.total_cache_bytes = -1; }, "negative bytes");
  expect_bad([](PeerRecord& r) { r.free_cache_bytes = kMaxCacheBytes + 1; }, "absurd bytes");
  expect_bad([](PeerRecord& r) { r.address = "udp://1.2.3.4:5"; }, "scheme");
  expect_bad([](PeerRecord& r) { r.address = "tcp://host"; }, "no port");
  expect_bad([](PeerRecord& r) { r.address = "tcp://host:0"; }, "port 0");
  expect_bad([](PeerRecord& r) { r.address = "tcp://host:70000"; }, "port range");
  expect_bad([](PeerRecord& r) { r.address = "tcp://ho st:1"; }, "space in host");
  expect_bad([](PeerRecord& r) { r.address = "tcp://a\nb:1"; }, "newline");
  expect_bad([](PeerRecord& r) { r.model_id = ""; }, "empty model");
  expect_bad([](PeerRecord& r) { r.model_id = "a\x01"; }, "control char in model");
  expect_bad([](PeerRecord& r) { r.blocks = {5, 5}; }, "empty range");
  expect_bad([](PeerRecord& r) { r.blocks = {-1, 5}; }, "negative first");
  expect_bad([](PeerRecord& r) { r.blocks = {0, kMaxBlocks + 1}; }, "too many blocks");
  expect_bad([](PeerRecord& r) { r.decode_tps_per_block = -1; }, "negative tps");
  expect_bad([](PeerRecord& r) { r.prompt_tps_per_block = std::nan(""); }, "nan tps");
  expect_bad([](PeerRecord& r) { r.network_tps = 1e300; }, "absurd tps");
  expect_bad([](PeerRecord& r) { r.free_cache_tokens = 5000; }, "free > total");
  expect_bad([](PeerRecord& r) { r.free_cache_tokens = -1; }, "negative cache");
  expect_bad([](PeerRecord& r) { r.active_sessions = -1; }, "negative sessions");
  expect_bad([](PeerRecord& r) { r.rtt_ms[PeerId::FromName("z")] = -3; }, "negative rtt");
  expect_bad([](PeerRecord& r) { r.rtt_ms[PeerId()] = 3; }, "zero id in rtt");
  expect_bad([](PeerRecord& r) { r.rtt_ms[PeerId::FromName("z")] = std::nan(""); }, "nan rtt");
  expect_bad([](PeerRecord& r) { r.rtt_ms[PeerId::FromName("z")] = INFINITY; }, "infinite rtt");
  expect_bad([](PeerRecord& r) { r.rtt_ms[PeerId::FromName("z")] = 2 * kMaxRttMs; }, "absurd rtt");
  expect_bad([](PeerRecord& r) { r.transport_key = "short"; }, "key size");
  expect_bad([](PeerRecord& r) { r.expiry_unix_ms = -5; }, "negative expiry");
  expect_bad(
      [](PeerRecord& r) {
        for (size_t i = 0; i <= kMaxRttEntries; ++i) {
          r.rtt_ms[PeerId::FromName(std::to_string(i))] = 1;
        }
      },
      "too many rtt entries");
}

TEST(PeerRecordTest, BadStateByteRejected) {
  std::string bytes = SerializePeerRecord(FullRecord());
  const PeerRecord r = FullRecord();
  const size_t state_off = 5 + 20 + 2 + r.address.size() + 2 + r.model_id.size() + 8;
  ASSERT_EQ(bytes[state_off], static_cast<char>(PeerState::kOnline));
  bytes[state_off] = 3;
  EXPECT_FALSE(ParsePeerRecord(bytes).ok());
}

// The bytes of an RTT value, as an untrusted record could carry them (not through the map).
TEST(PeerRecordTest, NonFiniteRttBytesRejected) {
  const PeerRecord r = FullRecord();
  const size_t first_value = RttCountOffset(r) + 2 + PeerId::kSize;
  for (double bad :
       std::initializer_list<double>{std::nan(""), -std::nan(""), INFINITY, -INFINITY, -0.5}) {
    std::string bytes = SerializePeerRecord(r);
    std::memcpy(bytes.data() + first_value, &bad, sizeof(bad));  // little-endian host
    auto parsed = ParsePeerRecord(bytes);
    EXPECT_FALSE(parsed.ok()) << bad;
  }
  std::string bytes = SerializePeerRecord(r);
  const double fine = 7.25;
  std::memcpy(bytes.data() + first_value, &fine, sizeof(fine));
  auto parsed = ParsePeerRecord(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->rtt_ms.begin()->second, 7.25);
}

TEST(PeerRecordTest, DuplicateRttEntryRejected) {
  PeerRecord r = FullRecord();
  std::string bytes = SerializePeerRecord(r);
  // Make the second RTT entry's id equal to the first one's.
  const size_t first = RttCountOffset(r) + 2;
  std::memcpy(bytes.data() + first + 28, bytes.data() + first, 20);
  auto parsed = ParsePeerRecord(bytes);
  EXPECT_FALSE(parsed.ok());
}

TEST(AddressTest, ParseHostPort) {
  auto a = ParseHostPort("127.0.0.1:4222");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 4222);
  auto b = ParseHostPort("[::1]:80");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "::1");
  auto c = ParseTcpAddress("tcp://peer.example.org:65535");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host, "peer.example.org");
  EXPECT_EQ(c->port, 65535);
  for (const char* bad :
       {"", ":1", "host:", "host:abc", "host:123456", "[::1]80", "[]:1", "a b:1", "host:-1"}) {
    EXPECT_FALSE(ParseHostPort(bad).ok()) << bad;
  }
  EXPECT_FALSE(ParseTcpAddress("127.0.0.1:5").ok());
}

}  // namespace
}  // namespace swarm::registry
