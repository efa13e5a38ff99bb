// The relay service on loopback sockets: dial-backs (reachable, closed port, wrong nonce, refused
// transports, rate limit), relaying both ways through a registered tunnel, the bandwidth cap, and
// hostile frames on every socket of the relay (it keeps relaying).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "peer/reachability.h"
#include "peer/relay_frames.h"
#include "peer/relay_service.h"
#include "transport/protocol.h"
#include "transport/zmq_socket.h"

namespace swarm::peer {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::unique_ptr<RelayService> StartRelay(zmq::context_t& context, double mbit = 100) {
  RelayServiceOptions options;
  options.relay_mbit = mbit;
  options.dial_timeout = 1000ms;
  auto relay = RelayService::Start(context, options);
  EXPECT_TRUE(relay.ok()) << relay.status();
  return relay.ok() ? std::move(*relay) : nullptr;
}

// A peer's socket that answers DialBackProbe with `nonce` (on its own thread until destroyed).
class ProbeAnswerer {
 public:
  ProbeAnswerer(zmq::context_t& context, uint64_t nonce) {
    auto bound = transport::RouterServer::Bind(context, "tcp://127.0.0.1:0");
    EXPECT_TRUE(bound.ok()) << bound.status();
    server_ = std::move(*bound);
    thread_ = std::jthread([this, nonce](std::stop_token stop) {
      while (!stop.stop_requested()) {
        auto got = server_->Receive(20ms);
        if (!got.ok() || !got->message.ok()) continue;
        auto decoded = transport::DecodeMessage(*got->message);
        if (!decoded.ok()) continue;
        if (std::holds_alternative<transport::DialBackProbe>(decoded->body)) {
          auto reply =
              transport::EncodeMessage(decoded->request_id, transport::DialBackProbeReply{nonce});
          (void)server_->Send(got->routing_id, *reply);
        }
      }
    });
  }
  const std::string& endpoint() const { return server_->endpoint(); }

 private:
  std::unique_ptr<transport::RouterServer> server_;
  std::jthread thread_;
};

std::string ClosedPort(zmq::context_t& context) {
  auto bound = transport::RouterServer::Bind(context, "tcp://127.0.0.1:0");
  EXPECT_TRUE(bound.ok());
  return (*bound)->endpoint();  // closed once `bound` goes
}

TEST(ReachabilityTest, DialBackReachesTheAskerOnlyWithItsNonce) {
  zmq::context_t context(1);
  auto relay = StartRelay(context);
  ASSERT_NE(relay, nullptr);
  const std::vector<std::string> helpers{relay->address()};
  ProbeAnswerer me(context, 1234);
  auto ok = CheckReachability(context, helpers, me.endpoint(), 1234, {}, 5s);
  EXPECT_EQ(ok.verdict, Reachability::kReachable) << ok.detail;
  // Someone else answers at that address: it cannot know this nonce.
  auto other = CheckReachability(context, helpers, me.endpoint(), 999, {}, 5s);
  EXPECT_EQ(other.verdict, Reachability::kUnreachable) << other.detail;
  EXPECT_NE(other.detail.find("nonce"), std::string::npos) << other.detail;
}

TEST(ReachabilityTest, ClosedPortIsUnreachable) {
  zmq::context_t context(1);
  auto relay = StartRelay(context);
  ASSERT_NE(relay, nullptr);
  const std::vector<std::string> helpers{relay->address()};
  const std::string closed = ClosedPort(context);
  auto result = CheckReachability(context, helpers, closed, 42, {}, 5s);
  EXPECT_EQ(result.verdict, Reachability::kUnreachable) << result.detail;
  EXPECT_EQ(result.answered, 1);
  // No helper at all: unknown.
  auto none = CheckReachability(context, {}, closed, 42, {}, 1s);
  EXPECT_EQ(none.verdict, Reachability::kUnknown);
}

TEST(ReachabilityTest, HelperDialsOnlyTcpAndRateLimits) {
  zmq::context_t context(1);
  RelayServiceOptions options;
  options.dial_backs_per_second = 0.01;
  options.dial_back_burst = 2;
  options.dial_timeout = 300ms;
  auto relay = RelayService::Start(context, options);
  ASSERT_TRUE(relay.ok()) << relay.status();
  auto dealer = transport::DealerClient::Connect(context, (*relay)->address());
  ASSERT_TRUE(dealer.ok());
  auto ask = [&](const std::string& address, uint64_t id) {
    auto wire = transport::EncodeMessage(id, transport::DialBackRequest{address, 7});
    EXPECT_TRUE((*dealer)->Send(*wire).ok());
  };
  for (const char* bad : {"ipc:///tmp/swarm-relay-test", "inproc://x",
                          "tcp://127.0.0.1:1;tcp://1.2.3.4:5", "udp://127.0.0.1:9"}) {
    ask(bad, 1);
    auto reply = (*dealer)->Receive(3s);
    ASSERT_TRUE(reply.ok()) << reply.status();
    auto decoded = transport::DecodeMessage(*reply);
    ASSERT_TRUE(decoded.ok());
    EXPECT_TRUE(std::holds_alternative<transport::ErrorReply>(decoded->body)) << bad;
  }
  EXPECT_EQ((*relay)->stats().dial_backs.load(), 0);
  // Five at once against a burst of two: three are refused without dialing.
  const std::string closed = ClosedPort(context);
  for (uint64_t id = 10; id < 15; ++id) ask(closed, id);
  int refused = 0, answered = 0;
  for (int i = 0; i < 5; ++i) {
    auto reply = (*dealer)->Receive(3s);
    ASSERT_TRUE(reply.ok()) << reply.status();
    auto decoded = transport::DecodeMessage(*reply);
    ASSERT_TRUE(decoded.ok());
    if (std::holds_alternative<transport::ErrorReply>(decoded->body)) ++refused;
    if (auto* r = std::get_if<transport::DialBackReply>(&decoded->body)) {
      EXPECT_FALSE(r->reachable);
      ++answered;
    }
  }
  EXPECT_EQ(answered, 2);
  EXPECT_EQ(refused, 3);
}

// A relayed peer as a raw tunnel: registers, then reads what the relay forwards.
struct FakeRelayed {
  std::unique_ptr<transport::DealerClient> tunnel;
  std::string endpoint;

  static FakeRelayed Register(zmq::context_t& context, const std::string& relay) {
    FakeRelayed f;
    auto dealer = transport::DealerClient::Connect(context, relay);
    EXPECT_TRUE(dealer.ok());
    f.tunnel = std::move(*dealer);
    auto hello = transport::EncodeMessage(1, transport::RelayRegister{});
    EXPECT_TRUE(f.tunnel->Send(*hello).ok());
    auto reply = f.tunnel->Receive(3s);
    EXPECT_TRUE(reply.ok()) << reply.status();
    if (!reply.ok()) return f;
    auto decoded = transport::DecodeMessage(*reply);
    EXPECT_TRUE(decoded.ok());
    if (auto* r = std::get_if<transport::RelayRegistered>(&decoded->body)) f.endpoint = r->endpoint;
    return f;
  }

  // The next forwarded message: its connection and payload frames.
  bool Next(uint64_t& connection, std::vector<zmq::message_t>& frames,
            std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      auto readable = transport::PollReadable(std::vector<zmq::socket_ref>{tunnel->socket()}, 50ms);
      if (!readable.ok() || readable->empty()) continue;
      auto got = ReadFrames(tunnel->socket(), kMaxTunnelFrames);
      if (!got.ok() || got->size() < 2) continue;
      auto tag = ParseTunnelTag((*got)[0]);
      if (!tag) continue;
      connection = *tag;
      frames.clear();
      for (size_t i = 1; i < got->size(); ++i) frames.push_back(std::move((*got)[i]));
      return true;
    }
    return false;
  }
};

// A client at the relayed peer's endpoint sends; the peer answers through the tunnel.
void RoundTrip(zmq::context_t& context, FakeRelayed& peer, transport::DealerClient& client) {
  auto ping = transport::EncodeMessage(5, transport::Ping{77, 1});
  ASSERT_TRUE(client.Send(*ping).ok());
  uint64_t connection = 0;
  std::vector<zmq::message_t> frames;
  ASSERT_TRUE(peer.Next(connection, frames, 5s));
  ASSERT_EQ(frames.size(), 1u);
  std::span<const uint8_t> bytes(static_cast<const uint8_t*>(frames[0].data()), frames[0].size());
  auto decoded = transport::DecodeMessage(bytes, std::nullopt);
  ASSERT_TRUE(decoded.ok());
  ASSERT_TRUE(std::holds_alternative<transport::Ping>(decoded->body));
  auto pong = transport::EncodeMessage(5, transport::Pong{77, 1});
  std::vector<zmq::message_t> out;
  out.emplace_back(pong->header.data(), pong->header.size());
  std::vector<zmq::message_t> prefix;
  prefix.push_back(TunnelTag(connection));
  ASSERT_TRUE(SendFrames(peer.tunnel->socket(), std::move(prefix), out, 0).ok());
  auto reply = client.Receive(5s);
  ASSERT_TRUE(reply.ok()) << reply.status();
  auto answer = transport::DecodeMessage(*reply);
  ASSERT_TRUE(answer.ok());
  EXPECT_TRUE(std::holds_alternative<transport::Pong>(answer->body));
  (void)context;
}

TEST(RelayServiceTest, ForwardsBothWaysAndRefusesWithoutCapacity) {
  zmq::context_t context(1);
  auto relay = StartRelay(context);
  ASSERT_NE(relay, nullptr);
  FakeRelayed peer = FakeRelayed::Register(context, relay->address());
  ASSERT_FALSE(peer.endpoint.empty());
  EXPECT_NE(peer.endpoint, relay->address());
  auto client = transport::DealerClient::Connect(context, peer.endpoint);
  ASSERT_TRUE(client.ok());
  RoundTrip(context, peer, **client);
  EXPECT_EQ(relay->stats().relayed_peers.load(), 1);

  // --relay-mbit 0: registration refused.
  auto none = StartRelay(context, 0);
  ASSERT_NE(none, nullptr);
  FakeRelayed refused = FakeRelayed::Register(context, none->address());
  EXPECT_TRUE(refused.endpoint.empty());
}

TEST(RelayServiceTest, BandwidthCapIsEnforced) {
  zmq::context_t context(1);
  // 8 Mbit/s: a megabyte takes about a second.
  auto relay = StartRelay(context, 8);
  ASSERT_NE(relay, nullptr);
  FakeRelayed peer = FakeRelayed::Register(context, relay->address());
  ASSERT_FALSE(peer.endpoint.empty());
  auto client = transport::DealerClient::Connect(context, peer.endpoint);
  ASSERT_TRUE(client.ok());
  constexpr int kMessages = 10;
  constexpr size_t kBytes = 100 * 1000;
  const std::string blob(kBytes, 'x');
  const auto start = Clock::now();
  for (int i = 0; i < kMessages; ++i) {
    transport::WireMessage wire{transport::Payload::Copy(blob), std::nullopt};
    ASSERT_TRUE((*client)->Send(wire).ok());
  }
  int received = 0;
  uint64_t connection = 0;
  std::vector<zmq::message_t> frames;
  while (received < kMessages && peer.Next(connection, frames, 10s)) ++received;
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_EQ(received, kMessages);
  const double mbit = kMessages * kBytes * 8 / seconds / 1e6;
  std::printf("relayed %d x %zu bytes in %.2f s: %.1f Mbit/s (cap 8)\n", kMessages, kBytes, seconds,
              mbit);
  // The bucket starts with a 64 KiB burst, and a message goes out on credit (the debt is paid
  // before the next): the rest takes at least its time at 8 Mbit/s.
  const double paced_bytes = kMessages * kBytes - 65536.0 - kBytes;
  EXPECT_GE(seconds, 0.95 * paced_bytes * 8 / 8e6);
  // And not much more: the relay is not slower than its cap.
  EXPECT_LT(seconds, 3.0);
}

TEST(RelayServiceTest, HostileFramesDoNotStopTheRelay) {
  zmq::context_t context(1);
  auto relay = StartRelay(context);
  ASSERT_NE(relay, nullptr);
  FakeRelayed peer = FakeRelayed::Register(context, relay->address());
  ASSERT_FALSE(peer.endpoint.empty());
  auto send_raw = [](zmq::socket_ref s, std::vector<std::string> parts) {
    std::vector<zmq::message_t> frames;
    for (const std::string& p : parts) frames.emplace_back(p.data(), p.size());
    (void)SendFrames(s, {}, frames, 0);
  };
  const std::string tag(reinterpret_cast<const char*>(TunnelTag(99).data()), kTunnelTagBytes);
  // At the service socket, from a stranger and from the relayed peer itself.
  auto stranger = transport::DealerClient::Connect(context, relay->address());
  ASSERT_TRUE(stranger.ok());
  for (auto* s : {stranger->get(), peer.tunnel.get()}) {
    send_raw(s->socket(), {"garbage"});
    send_raw(s->socket(), {""});
    send_raw(s->socket(), {tag});                        // a tag alone
    send_raw(s->socket(), {tag, "a", "b", "c", "d"});    // too many frames
    send_raw(s->socket(), {tag, "unknown connection"});  // nobody at 99
    send_raw(s->socket(), {"x", "y", "z"});
    send_raw(s->socket(), {std::string(100000, '\xff')});
  }
  // At the public endpoint.
  auto client = transport::DealerClient::Connect(context, peer.endpoint);
  ASSERT_TRUE(client.ok());
  send_raw((*client)->socket(), {"a", "b", "c", "d", "e"});
  // A stranger re-registering gets an endpoint of its own, not the peer's.
  FakeRelayed other = FakeRelayed::Register(context, relay->address());
  EXPECT_NE(other.endpoint, peer.endpoint);
  // Still relaying. (The peer skips what the relay forwarded of the junk: the error replies.)
  std::this_thread::sleep_for(100ms);
  while (true) {
    auto got = ReadFrames(peer.tunnel->socket(), 8);
    if (!got.ok()) break;
  }
  RoundTrip(context, peer, **client);
  EXPECT_GT(relay->stats().messages_dropped.load(), 0);
}

}  // namespace
}  // namespace swarm::peer
