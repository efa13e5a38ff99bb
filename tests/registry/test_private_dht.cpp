// A private swarm's DHT: registry::RecordSeal (network id, record keys, the seal: any change to a
// sealed record, or another secret, and it does not open), and real OpenDHT nodes on 127.0.0.1 in
// one process: members see each other's records; a node with another secret or none cannot join;
// a value under the swarm's key that does not open (an outsider who learnt the network id and the
// key) is ignored and counted.
#include <gtest/gtest.h>
#include <opendht.h>

#include <array>
#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <string>

#include "absl/time/clock.h"
#include "registry/dht_registry.h"
#include "registry/peer_record.h"
#include "registry/record_seal.h"
#include "transport/swarm_secret.h"

namespace swarm::registry {
namespace {

constexpr char kModel[] = "stories260K-private-test";

transport::SwarmSecret NewSecret() { return transport::SwarmSecret::Generate().value(); }

TEST(RecordSealTest, SealedRecordsOpenOnlyIntactWithTheSameSecretAndContext) {
  const transport::SwarmSecret secret = NewSecret();
  const RecordSeal seal(secret);
  const std::string record = "a serialized peer record";
  const std::string sealed = seal.Seal(record, "ctx");
  EXPECT_EQ(sealed.size(), record.size() + RecordSeal::kOverhead);
  EXPECT_EQ(sealed.find(record), std::string::npos);  // not readable
  auto opened = seal.Open(sealed, "ctx");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, record);
  // A fresh nonce each time: the same record never seals to the same bytes.
  EXPECT_NE(seal.Seal(record, "ctx"), sealed);
  // The same secret from its file opens it too.
  EXPECT_TRUE(
      RecordSeal(transport::SwarmSecret::Parse(secret.Format()).value()).Open(sealed, "ctx").ok());

  // Any flipped bit (version, nonce, ciphertext, tag) and it is refused.
  for (size_t i = 0; i < sealed.size(); ++i) {
    std::string tampered = sealed;
    tampered[i] ^= 0x01;
    auto r = seal.Open(tampered, "ctx");
    ASSERT_FALSE(r.ok()) << "byte " << i;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  }
  EXPECT_FALSE(seal.Open(sealed.substr(0, sealed.size() - 1), "ctx").ok());
  EXPECT_FALSE(seal.Open(sealed.substr(0, RecordSeal::kOverhead - 1), "ctx").ok());
  EXPECT_FALSE(seal.Open("", "ctx").ok());
  EXPECT_FALSE(seal.Open(sealed, "another context").ok());
  // Another swarm's seal neither opens ours nor makes something ours opens.
  const RecordSeal other(NewSecret());
  EXPECT_FALSE(other.Open(sealed, "ctx").ok());
  EXPECT_FALSE(seal.Open(other.Seal(record, "ctx"), "ctx").ok());
}

TEST(RecordSealTest, NetworkIdAndRecordKeysDependOnTheSecret) {
  const transport::SwarmSecret secret = NewSecret();
  const RecordSeal a(secret);
  const RecordSeal a2(transport::SwarmSecret::Parse(secret.Format()).value());
  const RecordSeal b(NewSecret());
  EXPECT_EQ(a.network_id(), a2.network_id());
  EXPECT_NE(a.network_id(), b.network_id());
  EXPECT_NE(a.network_id(), kSwarmNetworkId);
  EXPECT_NE(a.network_id(), 0u);
  const std::string name = DhtKeyName(kModel);
  EXPECT_EQ(a.RecordKey(name), a2.RecordKey(name));
  EXPECT_NE(a.RecordKey(name), b.RecordKey(name));
  EXPECT_NE(a.RecordKey(name), a.RecordKey(DhtKeyName("another-model")));
  const dht::InfoHash open_key = dht::InfoHash::get(name);
  EXPECT_NE(std::memcmp(a.RecordKey(name).data(), open_key.data(), open_key.size()), 0);
}

DhtRegistryOptions NodeOptions(std::optional<transport::SwarmSecret> secret,
                               std::vector<std::string> initial_peers = {}) {
  DhtRegistryOptions o;
  o.bind_address = "127.0.0.1";
  o.initial_peers = std::move(initial_peers);
  o.key_bits = 1024;  // fast to generate; production uses 2048+
  o.refresh_interval = absl::Milliseconds(200);
  o.record_ttl = absl::Seconds(20);
  o.op_timeout = absl::Seconds(3);
  o.connect_timeout = absl::Seconds(2);
  o.shutdown_timeout = absl::Milliseconds(100);
  o.swarm_secret = std::move(secret);
  return o;
}

std::unique_ptr<DhtRegistry> Start(DhtRegistryOptions options) {
  auto r = DhtRegistry::Create(std::move(options));
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? std::move(*r) : nullptr;
}

std::string Endpoint(const DhtRegistry& r) { return "127.0.0.1:" + std::to_string(r.port()); }

PeerRecord Record(int first, int last, int tcp_port) {
  PeerRecord r;
  r.address = "tcp://127.0.0.1:" + std::to_string(tcp_port);
  r.model_id = kModel;
  r.blocks = {first, last};
  r.state = PeerState::kOnline;
  r.decode_tps_per_block = 500;
  r.free_cache_tokens = 4096;
  r.total_cache_tokens = 8192;
  return r;
}

// Polls Snapshot() until `done` holds or the deadline passes; the last snapshot.
RegistrySnapshot SnapshotUntil(DhtRegistry& reg,
                               const std::function<bool(const RegistrySnapshot&)>& done,
                               absl::Duration timeout = absl::Seconds(8)) {
  const absl::Time deadline = absl::Now() + timeout;
  RegistrySnapshot last;
  while (true) {
    auto s = reg.Snapshot(kModel);
    if (s.ok()) {
      last = *s;
      if (done(last)) return last;
    }
    if (absl::Now() >= deadline) return last;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

TEST(PrivateDhtTest, MembersSeeEachOtherAndOutsidersCannotJoin) {
  const transport::SwarmSecret secret = NewSecret();
  auto n1 = Start(NodeOptions(secret));
  ASSERT_TRUE(n1);
  EXPECT_TRUE(n1->is_private());
  auto n2 = Start(NodeOptions(secret, {Endpoint(*n1)}));
  ASSERT_TRUE(n2);
  ASSERT_TRUE(n1->Announce(Record(0, 2, 7101)).ok());
  (void)n2->Announce(Record(2, 4, 7102));
  auto client_options = NodeOptions(secret, {Endpoint(*n1)});
  client_options.client_only = true;
  auto client = Start(client_options);
  ASSERT_TRUE(client);
  const RegistrySnapshot snap =
      SnapshotUntil(*client, [](const RegistrySnapshot& s) { return s.size() == 2; });
  ASSERT_EQ(snap.size(), 2u);
  EXPECT_EQ(snap[0].address, "tcp://127.0.0.1:7101");
  EXPECT_EQ(snap[1].address, "tcp://127.0.0.1:7102");

  // Another secret, or none: the members' nodes drop its packets, so it never connects, and the
  // error says to check the secret.
  for (bool with_secret : {true, false}) {
    auto o = NodeOptions(with_secret ? std::optional(NewSecret()) : std::nullopt, {Endpoint(*n1)});
    o.client_only = true;
    o.connect_timeout = absl::Milliseconds(800);
    auto outsider = DhtRegistry::Create(o);
    ASSERT_FALSE(outsider.ok());
    EXPECT_EQ(outsider.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_NE(outsider.status().message().find("--swarm-secret"), absl::string_view::npos)
        << outsider.status();
  }
}

// Writes raw values under the private swarm's key as an insider of the network who lacks the
// secret would (it knows the network id and the key, say from watching traffic).
class Outsider {
 public:
  Outsider(const RecordSeal& seal, const std::string& bootstrap) {
    dht::DhtRunner::Config config;
    config.dht_config.node_config.network = seal.network_id();
    config.threaded = true;
    runner_.run("127.0.0.1", "", "0", config);
    const auto colon = bootstrap.rfind(':');
    runner_.bootstrap(bootstrap.substr(0, colon), bootstrap.substr(colon + 1));
    const auto key = seal.RecordKey(DhtKeyName(kModel));
    key_ = dht::InfoHash(key.data(), key.size());
  }
  ~Outsider() { runner_.join(); }

  static dht::crypto::Identity NewIdentity() {
    return dht::crypto::generateIdentity("outsider", {}, 1024);
  }
  static PeerId IdOf(const dht::crypto::Identity& identity) {
    std::array<uint8_t, PeerId::kSize> bytes{};
    std::memcpy(bytes.data(), identity.second->getId().data(), bytes.size());
    return PeerId(bytes);
  }
  // How the registry binds a sealed record to where it lives (its SealContext).
  std::string Context() const {
    return std::string(kSealedPeerRecordUserType) + "/" + key_.toString();
  }

  // Puts `data` as a sealed-record value signed by `signer`; true once stored.
  bool Put(const std::string& data, const dht::crypto::Identity& signer, dht::Value::Id id) {
    auto value = std::make_shared<dht::Value>(dht::ValueType::USER_DATA.id,
                                              dht::Blob(data.begin(), data.end()), id);
    value->user_type = std::string(kSealedPeerRecordUserType);
    value->sign(*signer.first);
    std::promise<bool> done;
    runner_.put(key_, value, [&done](bool ok) { done.set_value(ok); });
    auto f = done.get_future();
    return f.wait_for(std::chrono::seconds(3)) == std::future_status::ready && f.get();
  }

 private:
  dht::DhtRunner runner_;
  dht::InfoHash key_;
};

TEST(PrivateDhtTest, ValuesThatDoNotOpenAreIgnoredAndCounted) {
  const transport::SwarmSecret secret = NewSecret();
  auto n1 = Start(NodeOptions(secret));
  ASSERT_TRUE(n1);
  ASSERT_TRUE(n1->Announce(Record(0, 4, 7201)).ok());
  auto client_options = NodeOptions(secret, {Endpoint(*n1)});
  client_options.client_only = true;
  auto client = Start(client_options);
  ASSERT_TRUE(client);

  const RecordSeal seal(secret);
  Outsider outsider(seal, Endpoint(*n1));
  const auto signer = Outsider::NewIdentity();
  PeerRecord forged = Record(0, 4, 6666);
  forged.peer_id = Outsider::IdOf(signer);
  forged.expiry_unix_ms = absl::ToUnixMillis(absl::Now() + absl::Seconds(60));
  forged.seq = 1;
  const std::string bytes = SerializePeerRecord(forged);
  // A plaintext record, one sealed with another secret, one sealed right and then altered, and
  // garbage: none opens.
  EXPECT_TRUE(outsider.Put(bytes, signer, 3001));
  EXPECT_TRUE(outsider.Put(RecordSeal(NewSecret()).Seal(bytes, outsider.Context()), signer, 3002));
  std::string altered = seal.Seal(bytes, outsider.Context());
  altered[altered.size() / 2] ^= 0x20;
  EXPECT_TRUE(outsider.Put(altered, signer, 3003));
  EXPECT_TRUE(outsider.Put(std::string(200, 'g'), signer, 3004));
  // One read that meets all four refuses each of them.
  RegistrySnapshot snap;
  uint64_t rejected_in_one_read = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(8);
  while (absl::Now() < deadline && rejected_in_one_read < 4) {
    const uint64_t before = client->rejected_records();
    auto s = client->Snapshot(kModel);
    ASSERT_TRUE(s.ok()) << s.status();
    snap = *s;
    rejected_in_one_read = client->rejected_records() - before;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(rejected_in_one_read, 4u);
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].address, "tcp://127.0.0.1:7201");
  EXPECT_EQ(snap[0].peer_id, n1->peer_id());

  // The control: sealed with the secret (whoever holds it is a member) and intact, it is
  // accepted, so the values above reached the client and were refused for what they are.
  EXPECT_TRUE(outsider.Put(seal.Seal(bytes, outsider.Context()), signer, 3005));
  snap = SnapshotUntil(*client, [](const RegistrySnapshot& s) { return s.size() == 2; });
  EXPECT_EQ(snap.size(), 2u);
}

}  // namespace
}  // namespace swarm::registry
