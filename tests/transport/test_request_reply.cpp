// transport::Call and TakeReply against a real ROUTER on loopback (an OS-chosen port): the
// matching reply is returned, replies to other requests are skipped, an ErrorReply becomes its
// Status, an undecodable reply is DataLoss, the deadline is kept, an unanswered request is sent
// again; and DealerClient's disconnect watch reports a ROUTER that went away.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <thread>

#include "transport/protocol.h"
#include "transport/request_reply.h"
#include "transport/zmq_socket.h"

namespace swarm::transport {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Generous: only reached when something is broken.
constexpr auto kLong = 5000ms;

WireMessage Encode(uint64_t request_id, Message body) {
  return EncodeMessage(request_id, std::move(body)).value();
}

// A ROUTER served by its own thread: `serve` sees each request (decoded) and the server, and
// returns false to stop. The server is destroyed on that thread when serving ends.
class TestPeer {
 public:
  using Serve = std::function<bool(RouterServer&, const RoutedMessage&, const DecodedMessage&)>;

  TestPeer(zmq::context_t& context, Serve serve) {
    auto server = RouterServer::Bind(context, "tcp://127.0.0.1:0");
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return;
    endpoint_ = (*server)->endpoint();
    thread_ = std::thread([this, server = std::move(*server), serve = std::move(serve)]() mutable {
      const auto until = Clock::now() + 4 * kLong;
      while (!stop_.load() && Clock::now() < until) {
        auto routed = server->Receive(20ms);
        if (!routed.ok() || !routed->message.ok()) continue;
        auto decoded = DecodeMessage(*routed->message);
        if (!decoded.ok()) continue;
        if (!serve(*server, *routed, *decoded)) break;
      }
      server.reset();  // closes the ROUTER: the client sees its connection drop
    });
  }
  ~TestPeer() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }

  const std::string& endpoint() const { return endpoint_; }

 private:
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

void Reply(RouterServer& server, const RoutedMessage& to, const WireMessage& reply) {
  EXPECT_TRUE(server.Send(to.routing_id, reply).ok());
}

Pong PongFor(const DecodedMessage& request) {
  const auto& ping = std::get<Ping>(request.body);
  return Pong{ping.nonce, ping.send_time_ns};
}

std::unique_ptr<DealerClient> Connect(zmq::context_t& context, const std::string& endpoint,
                                      ClientOptions options = {}) {
  auto client = DealerClient::Connect(context, endpoint, options);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? std::move(*client) : nullptr;
}

TEST(RequestReplyTest, ReturnsTheMatchingReply) {
  zmq::context_t context;
  TestPeer peer(context,
                [](RouterServer& server, const RoutedMessage& from, const DecodedMessage& request) {
                  Reply(server, from, Encode(request.request_id, PongFor(request)));
                  return true;
                });
  auto client = Connect(context, peer.endpoint());
  ASSERT_NE(client, nullptr);
  auto reply = Call(*client, Encode(7, Ping{70, 1}), 7, {.deadline = Clock::now() + kLong});
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->request_id, 7u);
  EXPECT_EQ(std::get<Pong>(reply->body).nonce, 70u);
}

TEST(RequestReplyTest, SkipsRepliesToOtherRequests) {
  zmq::context_t context;
  TestPeer peer(context,
                [](RouterServer& server, const RoutedMessage& from, const DecodedMessage& request) {
                  // Late answers to earlier requests (an error among them) come first.
                  Reply(server, from, Encode(request.request_id - 1, Pong{1, 0}));
                  Reply(server, from,
                        Encode(request.request_id - 2,
                               ErrorReply::FromStatus(absl::ResourceExhaustedError("an old one"))));
                  Reply(server, from, Encode(request.request_id, PongFor(request)));
                  return true;
                });
  auto client = Connect(context, peer.endpoint());
  ASSERT_NE(client, nullptr);
  auto reply = Call(*client, Encode(9, Ping{90, 1}), 9, {.deadline = Clock::now() + kLong});
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->request_id, 9u);
  EXPECT_EQ(std::get<Pong>(reply->body).nonce, 90u);
}

TEST(RequestReplyTest, ErrorReplyBecomesItsStatus) {
  zmq::context_t context;
  TestPeer peer(
      context, [](RouterServer& server, const RoutedMessage& from, const DecodedMessage& request) {
        Reply(server, from,
              Encode(request.request_id,
                     ErrorReply::FromStatus(absl::ResourceExhaustedError("cache is full"))));
        return true;
      });
  auto client = Connect(context, peer.endpoint());
  ASSERT_NE(client, nullptr);
  auto reply = Call(*client, Encode(3, Ping{3, 1}), 3, {.deadline = Clock::now() + kLong});
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kResourceExhausted) << reply.status();
  EXPECT_NE(reply.status().message().find("cache is full"), std::string_view::npos)
      << reply.status();
}

TEST(RequestReplyTest, UndecodableReplyIsDataLoss) {
  zmq::context_t context;
  TestPeer peer(context,
                [](RouterServer& server, const RoutedMessage& from, const DecodedMessage&) {
                  WireMessage garbage;
                  garbage.header = Payload::FromVector(std::vector<uint8_t>(24, 0xab));
                  Reply(server, from, garbage);
                  return true;
                });
  auto client = Connect(context, peer.endpoint());
  ASSERT_NE(client, nullptr);
  auto reply = Call(*client, Encode(4, Ping{4, 1}), 4, {.deadline = Clock::now() + kLong});
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDataLoss) << reply.status();
}

TEST(RequestReplyTest, UnansweredRequestFailsAtTheDeadline) {
  zmq::context_t context;
  TestPeer peer(context, [](RouterServer&, const RoutedMessage&, const DecodedMessage&) {
    return true;  // never answers
  });
  auto client = Connect(context, peer.endpoint());
  ASSERT_NE(client, nullptr);
  const auto start = Clock::now();
  auto reply = Call(*client, Encode(5, Ping{5, 1}), 5, {.deadline = start + 300ms});
  const auto took = Clock::now() - start;
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded) << reply.status();
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, kLong);
}

TEST(RequestReplyTest, UnansweredRequestIsSentAgain) {
  zmq::context_t context;
  std::atomic<int> seen{0};
  TestPeer peer(context, [&seen](RouterServer& server, const RoutedMessage& from,
                                 const DecodedMessage& request) {
    if (seen.fetch_add(1) > 0) Reply(server, from, Encode(request.request_id, PongFor(request)));
    return true;  // the first one is lost
  });
  auto client = Connect(context, peer.endpoint());
  ASSERT_NE(client, nullptr);
  auto reply = Call(*client, Encode(6, Ping{6, 1}), 6,
                    {.deadline = Clock::now() + kLong, .resend_interval = 100ms});
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_GE(seen.load(), 2);
}

TEST(RequestReplyTest, TakeReplyReturnsNothingWhenNothingIsQueued) {
  zmq::context_t context;
  TestPeer peer(context,
                [](RouterServer&, const RoutedMessage&, const DecodedMessage&) { return true; });
  auto client = Connect(context, peer.endpoint());
  ASSERT_NE(client, nullptr);
  auto reply = TakeReply(*client, [](const DecodedMessage&) { return true; });
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_FALSE(reply->has_value());
}

TEST(DisconnectWatchTest, ClosedRouterIsReported) {
  zmq::context_t context;
  TestPeer peer(context,
                [](RouterServer& server, const RoutedMessage& from, const DecodedMessage& request) {
                  Reply(server, from, Encode(request.request_id, PongFor(request)));
                  return false;  // then close the ROUTER
                });
  ClientOptions options;
  options.watch_disconnects = true;
  auto client = Connect(context, peer.endpoint(), options);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->watches_disconnects());
  EXPECT_FALSE(client->ConnectionDropped());
  auto reply = Call(*client, Encode(1, Ping{1, 1}), 1, {.deadline = Clock::now() + kLong});
  ASSERT_TRUE(reply.ok()) << reply.status();

  const zmq::socket_ref events[] = {client->disconnect_events()};
  bool dropped = false;
  const auto deadline = Clock::now() + kLong;
  while (!dropped && Clock::now() < deadline) {
    auto readable = PollReadable(events, 100ms);
    ASSERT_TRUE(readable.ok()) << readable.status();
    dropped = client->ConnectionDropped();
  }
  EXPECT_TRUE(dropped);
  EXPECT_FALSE(client->ConnectionDropped());  // reported once
}

TEST(DisconnectWatchTest, CallFailsWhenTheRouterGoesAwayBeforeReplying) {
  zmq::context_t context;
  TestPeer peer(context, [](RouterServer&, const RoutedMessage&, const DecodedMessage&) {
    return false;  // close the ROUTER without replying
  });
  ClientOptions options;
  options.watch_disconnects = true;
  auto client = Connect(context, peer.endpoint(), options);
  ASSERT_NE(client, nullptr);
  const auto start = Clock::now();
  auto reply = Call(*client, Encode(2, Ping{2, 1}), 2, {.deadline = start + kLong});
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable) << reply.status();
  EXPECT_LT(Clock::now() - start, kLong);  // known from the TCP close, not the deadline
}

TEST(DisconnectWatchTest, UnwatchedSocketReportsNothing) {
  zmq::context_t context;
  auto client = Connect(context, "tcp://127.0.0.1:1");
  ASSERT_NE(client, nullptr);
  EXPECT_FALSE(client->watches_disconnects());
  EXPECT_FALSE(client->ConnectionDropped());
}

}  // namespace
}  // namespace swarm::transport
