#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "peer/rtt_probe.h"
#include "transport/protocol.h"

namespace swarm::peer {
namespace {

registry::PeerRecord Peer(const std::string& name, int first, int last,
                          registry::PeerState state = registry::PeerState::kOnline) {
  registry::PeerRecord r;
  r.peer_id = registry::PeerId::FromName(name);
  r.address = "tcp://127.0.0.1:1";
  r.model_id = "m";
  r.blocks = {first, last};
  r.state = state;
  return r;
}

std::vector<std::string> Names(const std::vector<registry::PeerRecord>& records,
                               const std::vector<std::string>& candidates) {
  std::vector<std::string> out;
  for (const registry::PeerRecord& r : records) {
    for (const std::string& c : candidates) {
      if (registry::PeerId::FromName(c) == r.peer_id) out.push_back(c);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(NextPeersTest, OnlinePeersServingTheFollowingBlock) {
  const registry::PeerRecord self = Peer("self", 0, 3);
  registry::RegistrySnapshot snapshot = {
      self,
      Peer("starts-there", 3, 5),
      Peer("covers-it", 2, 6),
      Peer("ends-before", 1, 3),
      Peer("starts-later", 4, 6),
      Peer("joining", 3, 5, registry::PeerState::kJoining),
      Peer("offline", 3, 5, registry::PeerState::kOffline),
      Peer("self-replica", 0, 3),
  };
  const std::vector<std::string> all = {"starts-there", "covers-it", "ends-before",  "starts-later",
                                        "joining",      "offline",   "self-replica", "self"};
  EXPECT_EQ(Names(NextPeers(snapshot, self), all),
            (std::vector<std::string>{"covers-it", "starts-there"}));
  EXPECT_EQ(NextPeers(snapshot, self, 1).size(), 1u);

  // A newer offline copy of a peer hides its older online one.
  registry::PeerRecord gone = Peer("starts-there", 3, 5, registry::PeerState::kOffline);
  gone.seq = 9;
  snapshot.push_back(gone);
  EXPECT_EQ(Names(NextPeers(snapshot, self), all), (std::vector<std::string>{"covers-it"}));

  // The last span of the model has nobody after it.
  EXPECT_TRUE(NextPeers(snapshot, Peer("tail", 3, 6)).empty());
}

// A peer's ROUTER that answers pings, with a wrong nonce when `lie` is set.
class PingServer {
 public:
  PingServer(zmq::context_t& context, bool lie) : lie_(lie) {
    auto bound = transport::RouterServer::Bind(context, "tcp://127.0.0.1:0");
    EXPECT_TRUE(bound.ok()) << bound.status();
    server_ = std::move(*bound);
    thread_ = std::thread([this] { Serve(); });
  }
  ~PingServer() {
    stop_ = true;
    thread_.join();
  }
  std::string address() const { return server_->endpoint(); }
  int pings() const { return pings_.load(); }

 private:
  void Serve() {
    while (!stop_) {
      auto received = server_->Receive(std::chrono::milliseconds(10));
      if (!received.ok() || !received->message.ok()) continue;
      auto decoded = transport::DecodeMessage(*received->message);
      if (!decoded.ok()) continue;
      auto* ping = std::get_if<transport::Ping>(&decoded->body);
      if (ping == nullptr) continue;
      ++pings_;
      auto wire = transport::EncodeMessage(
          decoded->request_id, transport::Pong{ping->nonce + (lie_ ? 1 : 0), ping->send_time_ns});
      ASSERT_TRUE(wire.ok());
      (void)server_->Send(received->routing_id, *wire);
    }
  }

  const bool lie_;
  std::unique_ptr<transport::RouterServer> server_;
  std::atomic<bool> stop_{false};
  std::atomic<int> pings_{0};
  std::thread thread_;
};

TEST(RttProberTest, MeasuresPeersThatAnswer) {
  zmq::context_t context(1);
  PingServer honest(context, /*lie=*/false);
  PingServer liar(context, /*lie=*/true);
  // A port nothing listens on any more.
  std::string silent_address;
  {
    auto bound = transport::RouterServer::Bind(context, "tcp://127.0.0.1:0");
    ASSERT_TRUE(bound.ok());
    silent_address = (*bound)->endpoint();
  }
  std::vector<registry::PeerRecord> peers = {Peer("honest", 2, 4), Peer("liar", 2, 4),
                                             Peer("silent", 2, 4)};
  peers[0].address = honest.address();
  peers[1].address = liar.address();
  peers[2].address = silent_address;

  RttProbeOptions options;
  options.timeout = std::chrono::milliseconds(500);
  options.pings_per_peer = 3;
  RttProber prober(context, options);
  const auto start = std::chrono::steady_clock::now();
  auto rtt = prober.Measure(peers);
  const double elapsed_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(rtt.size(), 1u);
  ASSERT_TRUE(rtt.contains(registry::PeerId::FromName("honest")));
  EXPECT_GT(rtt[registry::PeerId::FromName("honest")], 0);
  EXPECT_LT(rtt[registry::PeerId::FromName("honest")], 500);
  EXPECT_EQ(honest.pings(), 3);
  EXPECT_EQ(liar.pings(), 1);  // never answered right, so never asked again
  // Bounded by the timeout, whatever the peers do (plus scheduling slack).
  EXPECT_LT(elapsed_ms, 500 + 1000);

  // Kept connections: a second round measures again; peers no longer asked about are dropped.
  rtt = prober.Measure({peers[0]});
  ASSERT_EQ(rtt.size(), 1u);
  EXPECT_EQ(honest.pings(), 6);
  EXPECT_TRUE(prober.Measure({}).empty());
}

}  // namespace
}  // namespace swarm::peer
