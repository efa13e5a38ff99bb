// Real OpenDHT nodes on 127.0.0.1 with OS-chosen ports, in one process. DHT operations are
// asynchronous: tests poll Snapshot() (each call is one bounded DHT get) until a deadline.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <opendht.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "registry/dht_registry.h"

namespace swarm::registry {
namespace {

constexpr char kModel[] = "stories260K-test";

DhtRegistryOptions NodeOptions(std::vector<std::string> initial_peers = {}) {
  DhtRegistryOptions o;
  o.bind_address = "127.0.0.1";
  o.port = 0;
  o.initial_peers = std::move(initial_peers);
  o.key_bits = 1024;  // fast to generate; production uses 2048+
  o.refresh_interval = absl::Milliseconds(200);
  o.record_ttl = absl::Seconds(20);
  o.op_timeout = absl::Seconds(3);
  o.connect_timeout = absl::Seconds(3);
  o.shutdown_timeout = absl::Milliseconds(100);
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

const PeerRecord* Find(const RegistrySnapshot& s, const PeerId& id) {
  for (const PeerRecord& r : s) {
    if (r.peer_id == id) return &r;
  }
  return nullptr;
}

// Polls Snapshot() until `done` holds or the deadline passes; returns the last snapshot. The
// pause between polls keeps the test from flooding the nodes: they all share one IP address,
// and OpenDHT rate-limits requests per address.
RegistrySnapshot SnapshotUntil(DhtRegistry& reg,
                               const std::function<bool(const RegistrySnapshot&)>& done,
                               absl::Duration timeout = absl::Seconds(8)) {
  const absl::Time deadline = absl::Now() + timeout;
  RegistrySnapshot last;
  while (true) {
    auto s = reg.Snapshot(kModel);
    EXPECT_TRUE(s.ok()) << s.status();
    if (s.ok()) {
      last = *s;
      if (done(last)) return last;
    }
    if (absl::Now() >= deadline) return last;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

auto HasPeers(std::vector<PeerId> ids) {
  return [ids](const RegistrySnapshot& s) {
    for (const PeerId& id : ids) {
      if (!Find(s, id)) return false;
    }
    return true;
  };
}

TEST(DhtRegistryTest, TwoPeersAnnounceAndAClientSeesBoth) {
  auto n1 = Start(NodeOptions());
  ASSERT_TRUE(n1);
  EXPECT_NE(n1->port(), 0);
  auto n2 = Start(NodeOptions({Endpoint(*n1)}));
  auto client_options = NodeOptions({Endpoint(*n1)});
  client_options.client_only = true;
  auto client = Start(client_options);
  ASSERT_TRUE(n2 && client);
  EXPECT_TRUE(client->peer_id().IsZero());
  EXPECT_NE(n1->peer_id(), n2->peer_id());

  ASSERT_TRUE(n1->Announce(Record(0, 3, 6001)).ok());
  absl::Status s2 = n2->Announce(Record(3, 5, 6002));
  ASSERT_TRUE(s2.ok()) << s2;

  RegistrySnapshot snap = SnapshotUntil(*client, HasPeers({n1->peer_id(), n2->peer_id()}));
  ASSERT_EQ(snap.size(), 2u);
  // Sorted by first block.
  EXPECT_EQ(snap[0].peer_id, n1->peer_id());
  EXPECT_EQ(snap[0].address, "tcp://127.0.0.1:6001");
  EXPECT_EQ(snap[0].blocks, (BlockRange{0, 3}));
  EXPECT_EQ(snap[0].dht_port, n1->port());
  EXPECT_EQ(snap[1].peer_id, n2->peer_id());
  EXPECT_EQ(snap[1].blocks, (BlockRange{3, 5}));
  EXPECT_EQ(snap[1].state, PeerState::kOnline);
  EXPECT_EQ(snap[1].free_cache_tokens, 4096);
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  EXPECT_GT(snap[1].expiry_unix_ms, now_ms);
  EXPECT_LE(snap[1].expiry_unix_ms, now_ms + 21'000);

  // Updates replace the record (newer seq wins).
  PeerRecord moved = Record(1, 4, 6002);
  moved.free_cache_tokens = 10;
  ASSERT_TRUE(n2->Announce(moved).ok());
  snap = SnapshotUntil(*client, [&](const RegistrySnapshot& s) {
    const PeerRecord* r = Find(s, n2->peer_id());
    return r && r->blocks == BlockRange{1, 4};
  });
  const PeerRecord* r2 = Find(snap, n2->peer_id());
  ASSERT_NE(r2, nullptr);
  EXPECT_EQ(r2->free_cache_tokens, 10);
  EXPECT_EQ(snap.size(), 2u);

  // Withdrawn: gone from snapshots.
  ASSERT_TRUE(n2->Withdraw().ok());
  snap = SnapshotUntil(*client, [&](const RegistrySnapshot& s) { return !Find(s, n2->peer_id()); });
  EXPECT_EQ(Find(snap, n2->peer_id()), nullptr);
  EXPECT_NE(Find(snap, n1->peer_id()), nullptr);

  // A client cannot announce; a node cannot announce for someone else.
  EXPECT_EQ(client->Announce(Record(0, 1, 7000)).code(), absl::StatusCode::kFailedPrecondition);
  PeerRecord other = Record(0, 1, 7000);
  other.peer_id = n2->peer_id();
  EXPECT_EQ(n1->Announce(other).code(), absl::StatusCode::kInvalidArgument);
  PeerRecord bad = Record(3, 1, 7000);
  EXPECT_EQ(n1->Announce(bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client->Snapshot("").status().code(), absl::StatusCode::kInvalidArgument);
}

// Publishes hand-crafted values under the model's key, as an attacker would.
class Rogue {
 public:
  explicit Rogue(const std::string& bootstrap_endpoint) {
    dht::DhtRunner::Config config;
    config.dht_config.node_config.network = kSwarmNetworkId;
    config.threaded = true;
    runner_.run("127.0.0.1", "", "0", config);
    auto colon = bootstrap_endpoint.rfind(':');
    runner_.bootstrap(bootstrap_endpoint.substr(0, colon), bootstrap_endpoint.substr(colon + 1));
  }
  ~Rogue() { runner_.join(); }

  static dht::crypto::Identity NewIdentity() {
    return dht::crypto::generateIdentity("rogue", {}, 1024);
  }
  static PeerId IdOf(const dht::crypto::Identity& id) {
    std::array<uint8_t, PeerId::kSize> b{};
    std::memcpy(b.data(), id.second->getId().data(), b.size());
    return PeerId(b);
  }

  // Puts `record` signed by `signer` (or unsigned when null); `tamper` flips a data byte after
  // signing. Returns whether some node stored it.
  bool Put(const PeerRecord& record, const dht::crypto::Identity* signer, bool tamper = false) {
    const std::string bytes = SerializePeerRecord(record);
    auto value = std::make_shared<dht::Value>(dht::ValueType::USER_DATA.id,
                                              dht::Blob(bytes.begin(), bytes.end()), next_id_++);
    value->user_type = std::string(kPeerRecordUserType);
    if (signer) value->sign(*signer->first);
    if (tamper) value->data[30] ^= 1;
    std::promise<bool> done;
    runner_.put(dht::InfoHash::get(DhtKeyName(kModel)), value,
                [&done](bool ok) { done.set_value(ok); });
    auto f = done.get_future();
    return f.wait_for(std::chrono::seconds(3)) == std::future_status::ready && f.get();
  }

 private:
  dht::DhtRunner runner_;
  dht::Value::Id next_id_ = 1000;
};

// Named values (a model's manifest): two publishers' distinct values both reach a client, each
// once; oversized values and publishing from a client-only node are refused; a name no one
// published under reads as nothing.
TEST(DhtRegistryTest, BlobsArePublishedSignedAndReadBackDistinct) {
  auto n1 = Start(NodeOptions());
  ASSERT_TRUE(n1);
  auto n2 = Start(NodeOptions({Endpoint(*n1)}));
  auto client_options = NodeOptions({Endpoint(*n1)});
  client_options.client_only = true;
  auto client = Start(client_options);
  ASSERT_TRUE(n2 && client);
  ASSERT_TRUE(n1->PublishBlob("blob-test", "value one").ok());
  ASSERT_TRUE(n2->PublishBlob("blob-test", "value two").ok());
  ASSERT_TRUE(n2->PublishBlob("blob-test", "value one").ok());
  std::vector<std::string> values;
  for (int i = 0; i < 50 && values.size() < 2; ++i) {
    values = client->ReadBlobs("blob-test");
    if (values.size() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::sort(values.begin(), values.end());
  EXPECT_EQ(values, (std::vector<std::string>{"value one", "value two"}));
  EXPECT_TRUE(client->ReadBlobs("no-such-blob").empty());
  EXPECT_FALSE(n1->PublishBlob("blob-test", std::string(DhtRegistry::kMaxBlobBytes + 1, 'x')).ok());
  EXPECT_FALSE(client->PublishBlob("blob-test", "from a client").ok());
}

TEST(DhtRegistryTest, ForgedUnsignedExpiredAndForeignRecordsAreIgnored) {
  auto n1 = Start(NodeOptions());
  ASSERT_TRUE(n1);
  ASSERT_TRUE(n1->Announce(Record(0, 2, 6101)).ok());
  auto client_options = NodeOptions({Endpoint(*n1)});
  client_options.client_only = true;
  auto client = Start(client_options);
  ASSERT_TRUE(client);

  Rogue rogue(Endpoint(*n1));
  const auto c = Rogue::NewIdentity(), e = Rogue::NewIdentity(), f = Rogue::NewIdentity(),
             g = Rogue::NewIdentity(), h = Rogue::NewIdentity();
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  auto rec = [&](const PeerId& id, int64_t expiry_ms) {
    PeerRecord r = Record(0, 2, 6666);
    r.peer_id = id;
    r.expiry_unix_ms = expiry_ms;
    r.seq = UINT64_MAX;  // would win over any genuine copy if it were accepted
    return r;
  };
  // Signed by c, claiming n1's id.
  EXPECT_TRUE(rogue.Put(rec(n1->peer_id(), now_ms + 60'000), &c));
  // Unsigned, claiming a fresh id.
  EXPECT_TRUE(rogue.Put(rec(PeerId::FromName("unsigned"), now_ms + 60'000), nullptr));
  // Correctly signed by their owners, but expired / claiming to live for a day.
  EXPECT_TRUE(rogue.Put(rec(Rogue::IdOf(e), now_ms - 1'000), &e));
  EXPECT_TRUE(rogue.Put(rec(Rogue::IdOf(f), now_ms + 24 * 3600 * 1000LL), &f));
  // For another model, under this model's key.
  PeerRecord foreign = rec(Rogue::IdOf(c), now_ms + 60'000);
  foreign.model_id = "another-model";
  EXPECT_TRUE(rogue.Put(foreign, &c));
  // Data altered after signing (storage nodes may already refuse it).
  rogue.Put(rec(Rogue::IdOf(h), now_ms + 60'000), &h, /*tamper=*/true);
  // The control: a valid record from a stranger is accepted, so the path above does work.
  EXPECT_TRUE(rogue.Put(rec(Rogue::IdOf(g), now_ms + 60'000), &g));

  RegistrySnapshot snap = SnapshotUntil(*client, HasPeers({n1->peer_id(), Rogue::IdOf(g)}));
  ASSERT_NE(Find(snap, Rogue::IdOf(g)), nullptr) << "control record never arrived";
  EXPECT_EQ(snap.size(), 2u);
  const PeerRecord* genuine = Find(snap, n1->peer_id());
  ASSERT_NE(genuine, nullptr);
  EXPECT_EQ(genuine->address, "tcp://127.0.0.1:6101") << "forged record replaced the genuine one";
  for (const PeerRecord& r : snap) {
    EXPECT_NE(r.peer_id, PeerId::FromName("unsigned"));
    EXPECT_NE(r.peer_id, Rogue::IdOf(e));
    EXPECT_NE(r.peer_id, Rogue::IdOf(f));
    EXPECT_NE(r.peer_id, Rogue::IdOf(c));
    EXPECT_NE(r.peer_id, Rogue::IdOf(h));
  }
}

TEST(DhtRegistryTest, SwarmSurvivesItsBootstrapNodeLeaving) {
  auto boot = Start(NodeOptions());
  ASSERT_TRUE(boot);
  auto a = Start(NodeOptions({Endpoint(*boot)}));
  auto b = Start(NodeOptions({Endpoint(*boot)}));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->Announce(Record(0, 3, 6201)).ok());
  ASSERT_TRUE(b->Announce(Record(3, 5, 6202)).ok());

  // a and b only know the bootstrap node at first. They contact each other's DHT nodes at their
  // first refresh after seeing each other's records (OpenDHT alone links them in about a second).
  const auto linking = absl::Now();
  const auto both = HasPeers({a->peer_id(), b->peer_id()});
  ASSERT_TRUE(both(SnapshotUntil(*a, both)));
  ASSERT_TRUE(both(SnapshotUntil(*b, both)));
  while ((a->KnownNodes() < 2 || b->KnownNodes() < 2) && absl::Now() < linking + absl::Seconds(5)) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_GE(a->KnownNodes(), 2u);
  EXPECT_GE(b->KnownNodes(), 2u);
  std::printf("peers linked after %.0f ms\n", absl::ToDoubleMilliseconds(absl::Now() - linking));

  boot.reset();  // the only node everyone bootstrapped from leaves

  const auto t0 = std::chrono::steady_clock::now();
  auto client_options = NodeOptions({Endpoint(*b)});
  client_options.client_only = true;
  auto client = Start(client_options);
  ASSERT_TRUE(client);
  RegistrySnapshot snap = SnapshotUntil(*client, both, absl::Seconds(10));
  EXPECT_TRUE(both(snap)) << "saw " << snap.size() << " records";
  std::printf(
      "new node joined through a non-bootstrap peer and saw %zu records in %.0f ms\n", snap.size(),
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
}

// A UDP port on loopback that was free a moment ago.
uint16_t FreeUdpPort() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ADD_FAILURE() << "cannot reserve a UDP port";
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// A node whose initial peer is down (a bootstrap node restarting) connects as soon as it is back,
// not at OpenDHT's next retry (every 10 s).
TEST(DhtRegistryTest, ConnectsSoonAfterARestartingInitialPeerIsBack) {
  const uint16_t port = FreeUdpPort();
  auto options = NodeOptions({"127.0.0.1:" + std::to_string(port)});
  options.client_only = true;
  options.connect_timeout = absl::Seconds(20);
  auto joining = std::async(std::launch::async, [&] { return DhtRegistry::Create(options); });
  absl::SleepFor(absl::Seconds(4));  // past OpenDHT's first quick retry
  auto boot_options = NodeOptions();
  boot_options.port = port;
  auto boot = Start(boot_options);
  ASSERT_TRUE(boot);
  ASSERT_TRUE(boot->Announce(Record(0, 5, 6401)).ok());
  const absl::Time back = absl::Now();
  auto client = joining.get();
  ASSERT_TRUE(client.ok()) << client.status();
  const absl::Duration waited = absl::Now() - back;
  EXPECT_LT(waited, absl::Seconds(3));
  std::printf("connected %.0f ms after the initial peer came back\n",
              absl::ToDoubleMilliseconds(waited));
  const auto has_boot = HasPeers({boot->peer_id()});
  EXPECT_TRUE(has_boot(SnapshotUntil(**client, has_boot)));
}

TEST(DhtRegistryTest, FirstNodeOfANewSwarmAnnouncesAlone) {
  auto n = Start(NodeOptions());
  ASSERT_TRUE(n);
  absl::Status s = n->Announce(Record(0, 5, 6301));
  EXPECT_TRUE(s.ok()) << s;
  auto snap = n->Snapshot(kModel);
  ASSERT_TRUE(snap.ok()) << snap.status();
  ASSERT_EQ(snap->size(), 1u);
  EXPECT_EQ((*snap)[0].peer_id, n->peer_id());
  auto other = n->Snapshot("no-such-model");
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(other->empty());
}

TEST(DhtRegistryTest, IdentityPersistsAcrossRestarts) {
  const std::filesystem::path dir =
      std::filesystem::path(testing::TempDir()) / ("swarm-router-id-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "peer.pem").string();
  std::filesystem::remove(path);

  auto options = NodeOptions();
  options.identity_path = path;
  PeerId first;
  {
    auto n = Start(options);
    ASSERT_TRUE(n);
    first = n->peer_id();
  }
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  {
    auto n = Start(options);
    ASSERT_TRUE(n);
    EXPECT_EQ(n->peer_id(), first);
  }
  {
    std::ofstream(path, std::ios::trunc) << "-----BEGIN PRIVATE KEY-----\nnot a key\n";
    auto bad = DhtRegistry::Create(options);
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  }
  std::filesystem::remove_all(dir);
}

// A peer leaving: after Interrupt() calls fail at once instead of waiting out the DHT, yet
// Withdraw() still takes the record offline, and the node goes within about shutdown_timeout.
TEST(DhtRegistryTest, InterruptedNodeStillWithdrawsAndLeavesQuickly) {
  auto n1 = Start(NodeOptions());
  ASSERT_TRUE(n1);
  auto n2 = Start(NodeOptions({Endpoint(*n1)}));
  auto client_options = NodeOptions({Endpoint(*n1)});
  client_options.client_only = true;
  auto client = Start(client_options);
  ASSERT_TRUE(n2 && client);
  const PeerId leaver = n2->peer_id();
  ASSERT_TRUE(n2->Announce(Record(0, 2, 6101)).ok());
  RegistrySnapshot snap = SnapshotUntil(*client, HasPeers({leaver}));
  ASSERT_NE(Find(snap, leaver), nullptr);

  n2->Interrupt();
  EXPECT_EQ(n2->Snapshot(kModel).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(n2->Announce(Record(0, 2, 6101)).code(), absl::StatusCode::kUnavailable);
  const absl::Status withdrawn = n2->Withdraw(absl::Milliseconds(500));
  EXPECT_TRUE(withdrawn.ok()) << withdrawn;
  const absl::Time leaving = absl::Now();
  n2.reset();
  // shutdown_timeout is 100 ms here; the bound leaves room for sanitizers.
  EXPECT_LT(absl::Now() - leaving, absl::Seconds(2));
  snap = SnapshotUntil(*client, [&](const RegistrySnapshot& s) { return !Find(s, leaver); });
  EXPECT_EQ(Find(snap, leaver), nullptr);
}

TEST(DhtRegistryTest, BadOptionsAndUnreachablePeers) {
  auto o = NodeOptions({"no-port-here"});
  EXPECT_EQ(DhtRegistry::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = NodeOptions();
  o.refresh_interval = o.record_ttl;
  EXPECT_EQ(DhtRegistry::Create(o).status().code(), absl::StatusCode::kInvalidArgument);

  // A UDP port nobody listens on.
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int dead_port = ntohs(addr.sin_port);
  ::close(fd);
  o = NodeOptions({"127.0.0.1:" + std::to_string(dead_port)});
  o.client_only = true;
  o.connect_timeout = absl::Milliseconds(400);
  auto r = DhtRegistry::Create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
}

}  // namespace
}  // namespace swarm::registry
