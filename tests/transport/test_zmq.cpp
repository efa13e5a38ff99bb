// ZeroMQ sockets over loopback with OS-chosen ports: ROUTER/DEALER exchange of protocol messages,
// timeouts, unknown routing ids, oversized frames (ZMQ_MAXMSGSIZE) while the server keeps
// serving, framing errors, and CurveZMQ with a ZAP allow-list.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "transport/protocol.h"
#include "transport/zmq_curve.h"
#include "transport/zmq_socket.h"
#include "transport/zmq_status.h"

namespace swarm::transport {
namespace {

using namespace std::chrono_literals;
using absl::StatusCode;

// Generous: only reached when something is broken.
constexpr auto kLong = 5000ms;

WireMessage PingMessage(uint64_t id) { return EncodeMessage(id, Ping{id, 1000 + id}).value(); }

DecodedMessage MustDecode(const WireMessage& wire) {
  auto decoded = DecodeMessage(wire);
  EXPECT_TRUE(decoded.ok()) << decoded.status();
  return std::move(decoded).value();
}

// Serves exactly one request: answers a Ping with a Pong and a Step with a StepOutput that
// carries the same tensor. Returns the request as received.
RoutedMessage ServeOne(RouterServer& server) {
  auto routed = server.Receive(kLong);
  EXPECT_TRUE(routed.ok()) << routed.status();
  if (!routed.ok()) return RoutedMessage{"", "", "", routed.status()};
  if (!routed->message.ok()) {
    EXPECT_TRUE(
        server
            .Send(routed->routing_id,
                  EncodeMessage(0, ErrorReply::FromStatus(routed->message.status())).value())
            .ok());
    return std::move(*routed);
  }
  auto request = DecodeMessage(*routed->message);
  WireMessage reply;
  if (!request.ok()) {
    auto id = PeekRequestId(routed->message->header.bytes()).value_or(0);
    reply = EncodeMessage(id, ErrorReply::FromStatus(request.status())).value();
  } else if (auto* ping = std::get_if<Ping>(&request->body)) {
    reply = EncodeMessage(request->request_id, Pong{ping->nonce, ping->send_time_ns}).value();
  } else if (auto* step = std::get_if<Step>(&request->body)) {
    StepOutput out{step->session_id, step->step_id, step->start_position, step->n_tokens, 0, 0, 1,
                   step->tensor};
    reply = EncodeMessage(request->request_id, out, request->tensor).value();
  } else {
    reply = EncodeMessage(request->request_id,
                          ErrorReply::FromStatus(absl::UnimplementedError("test server")))
                .value();
  }
  EXPECT_TRUE(server.Send(routed->routing_id, reply).ok());
  return std::move(*routed);
}

TEST(ZmqTest, RouterDealerExchangeOnAnOsChosenPort) {
  zmq::context_t context;
  auto server = RouterServer::Bind(context, "tcp://127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string endpoint = (*server)->endpoint();
  EXPECT_EQ(endpoint.rfind("tcp://127.0.0.1:", 0), 0u) << endpoint;
  EXPECT_NE(endpoint, "tcp://127.0.0.1:0");
  auto client = DealerClient::Connect(context, endpoint);
  ASSERT_TRUE(client.ok()) << client.status();

  // Ping / Pong.
  ASSERT_TRUE((*client)->Send(PingMessage(5)).ok());
  std::thread serve([&] { ServeOne(**server); });
  auto reply = (*client)->Receive(kLong);
  serve.join();
  ASSERT_TRUE(reply.ok()) << reply.status();
  DecodedMessage pong = MustDecode(*reply);
  EXPECT_EQ(pong.request_id, 5u);
  EXPECT_EQ(std::get<Pong>(pong.body), (Pong{5, 1005}));

  // A step with a 64 KiB tensor frame comes back intact.
  std::vector<float> x(128 * 128);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) * 0.5f;
  auto t = EncodeActivations(x, {128, 128}, ParseCodec("f32").value()).value();
  Step step;
  step.session_id = SessionId{1, 2};
  step.step_id = 3;
  step.n_tokens = 128;
  step.tensor = t.desc;
  ASSERT_TRUE((*client)->Send(EncodeMessage(6, step, t.bytes).value()).ok());
  serve = std::thread([&] { ServeOne(**server); });
  reply = (*client)->Receive(kLong);
  serve.join();
  ASSERT_TRUE(reply.ok()) << reply.status();
  DecodedMessage out = MustDecode(*reply);
  ASSERT_TRUE(std::holds_alternative<StepOutput>(out.body));
  EXPECT_EQ(DecodeActivations(out).value(), x);
}

TEST(ZmqTest, ReceiveTimesOutWithDeadlineExceeded) {
  zmq::context_t context;
  auto server = RouterServer::Bind(context, "tcp://127.0.0.1:0").value();
  auto client = DealerClient::Connect(context, server->endpoint()).value();
  EXPECT_EQ(client->Receive(20ms).status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(client->ReceiveUntil(std::chrono::steady_clock::now() - 1s).status().code(),
            StatusCode::kDeadlineExceeded);
  EXPECT_EQ(server->Receive(0ms).status().code(), StatusCode::kDeadlineExceeded);
}

TEST(ZmqTest, SendToUnknownRoutingIdIsUnavailable) {
  zmq::context_t context;
  auto server = RouterServer::Bind(context, "tcp://127.0.0.1:0").value();
  EXPECT_EQ(server->Send("no-such-client", PingMessage(1)).code(), StatusCode::kUnavailable);
}

TEST(ZmqTest, BadEndpointsAreErrors) {
  zmq::context_t context;
  EXPECT_FALSE(RouterServer::Bind(context, "nonsense").ok());
  EXPECT_FALSE(RouterServer::Bind(context, "tcp://256.1.1.1:0").ok());
  EXPECT_FALSE(DealerClient::Connect(context, "bogus://x").ok());
  auto first = RouterServer::Bind(context, "tcp://127.0.0.1:0").value();
  auto second = RouterServer::Bind(context, first->endpoint());
  EXPECT_EQ(second.status().code(), StatusCode::kAlreadyExists);
}

TEST(ZmqTest, OversizedMessageIsRefusedAndTheServerKeepsServing) {
  zmq::context_t context;
  ServerOptions options;
  options.max_message_bytes = 64 * 1024;
  auto server = RouterServer::Bind(context, "tcp://127.0.0.1:0", options).value();
  auto big = DealerClient::Connect(context, server->endpoint()).value();
  auto good = DealerClient::Connect(context, server->endpoint()).value();

  // 1 MiB tensor frame: the server drops the connection on the frame's size prefix.
  std::vector<float> x(512 * 512, 1.0f);
  auto t = EncodeActivations(x, {512, 512}, ParseCodec("f32").value()).value();
  Step step;
  step.n_tokens = 512;
  step.tensor = t.desc;
  ASSERT_TRUE(big->Send(EncodeMessage(1, step, t.bytes).value()).ok());
  ASSERT_TRUE(good->Send(PingMessage(2)).ok());

  // The first (and only) message the server sees is the small one.
  RoutedMessage served = ServeOne(*server);
  ASSERT_TRUE(served.message.ok());
  EXPECT_EQ(MustDecode(*served.message).request_id, 2u);
  auto reply = good->Receive(kLong);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_TRUE(std::holds_alternative<Pong>(MustDecode(*reply).body));
  EXPECT_EQ(server->Receive(100ms).status().code(), StatusCode::kDeadlineExceeded);

  // The refused client reconnects by itself and is served again with a small message.
  ASSERT_TRUE(big->Send(PingMessage(3)).ok());
  served = ServeOne(*server);
  ASSERT_TRUE(served.message.ok());
  EXPECT_EQ(MustDecode(*served.message).request_id, 3u);
  reply = big->Receive(kLong);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(MustDecode(*reply).request_id, 3u);
}

TEST(ZmqTest, FramingAndDecodingErrorsGetErrorReplies) {
  zmq::context_t context;
  auto server = RouterServer::Bind(context, "tcp://127.0.0.1:0").value();
  // A raw DEALER that sends what it likes.
  zmq::socket_t raw(context, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  raw.connect(server->endpoint());
  auto receive_error = [&]() -> ErrorReply {
    zmq::message_t header;
    zmq_pollitem_t item{raw.handle(), 0, ZMQ_POLLIN, 0};
    EXPECT_EQ(zmq_poll(&item, 1, 5000), 1);
    EXPECT_TRUE(raw.recv(header, zmq::recv_flags::dontwait));
    EXPECT_FALSE(header.more());
    auto decoded = DecodeMessage(
        std::span<const uint8_t>(static_cast<const uint8_t*>(header.data()), header.size()),
        std::nullopt);
    EXPECT_TRUE(decoded.ok()) << decoded.status();
    if (!decoded.ok()) return {};
    return std::get<ErrorReply>(decoded->body);
  };

  // Three payload frames.
  raw.send(zmq::str_buffer("a"), zmq::send_flags::sndmore);
  raw.send(zmq::str_buffer("b"), zmq::send_flags::sndmore);
  raw.send(zmq::str_buffer("c"), zmq::send_flags::none);
  RoutedMessage served = ServeOne(*server);
  EXPECT_EQ(served.message.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(receive_error().code, StatusCode::kInvalidArgument);

  // Garbage header: DataLoss, and the server keeps serving.
  raw.send(zmq::str_buffer("not a capnp message"), zmq::send_flags::none);
  ServeOne(*server);
  EXPECT_EQ(receive_error().code, StatusCode::kDataLoss);

  // Another protocol version: FailedPrecondition, with the request id echoed.
  auto wire = PingMessage(41);
  std::vector<uint8_t> header(wire.header.data(), wire.header.data() + wire.header.size());
  header[8 + 8] ^= 0x40;  // first data word of the envelope holds the version
  raw.send(zmq::buffer(header), zmq::send_flags::none);
  ServeOne(*server);
  ErrorReply version_error = receive_error();
  EXPECT_EQ(version_error.code, StatusCode::kFailedPrecondition) << version_error.message;

  // And a well-formed request still works.
  raw.send(zmq::buffer(wire.header.view()), zmq::send_flags::none);
  ServeOne(*server);
  zmq::message_t pong;
  zmq_pollitem_t item{raw.handle(), 0, ZMQ_POLLIN, 0};
  ASSERT_EQ(zmq_poll(&item, 1, 5000), 1);
  ASSERT_TRUE(raw.recv(pong));
  auto decoded = DecodeMessage(
      std::span<const uint8_t>(static_cast<const uint8_t*>(pong.data()), pong.size()), {});
  ASSERT_TRUE(decoded.ok());
  EXPECT_TRUE(std::holds_alternative<Pong>(decoded->body));
}

TEST(ZmqTest, PollReadableReportsReadySockets) {
  zmq::context_t context;
  auto server = RouterServer::Bind(context, "tcp://127.0.0.1:0").value();
  auto client = DealerClient::Connect(context, server->endpoint()).value();
  const zmq::socket_ref sockets[] = {client->socket(), server->socket()};
  auto ready = PollReadable(sockets, 0ms);
  ASSERT_TRUE(ready.ok());
  EXPECT_TRUE(ready->empty());
  ASSERT_TRUE(client->Send(PingMessage(1)).ok());
  ready = PollReadable(sockets, kLong);
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(*ready, std::vector<size_t>{1});
}

TEST(ZmqTest, ErrorMapping) {
  EXPECT_EQ(ZmqErrorToStatus(EHOSTUNREACH, "x").code(), StatusCode::kUnavailable);
  EXPECT_EQ(ZmqErrorToStatus(ETERM, "x").code(), StatusCode::kUnavailable);
  EXPECT_EQ(ZmqErrorToStatus(EAGAIN, "x").code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(ZmqErrorToStatus(EINVAL, "x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ZmqErrorToStatus(EADDRINUSE, "x").code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(ZmqErrorToStatus(EMSGSIZE, "x").code(), StatusCode::kResourceExhausted);
}

TEST(ZmqTest, ContextShutdownMakesSocketsUnavailable) {
  zmq::context_t context;
  auto client = DealerClient::Connect(context, "tcp://127.0.0.1:1").value();
  context.shutdown();
  EXPECT_EQ(client->Receive(kLong).status().code(), StatusCode::kUnavailable);
}

// ---------------------------------------------------------------------------------------------
// CurveZMQ

TEST(CurveTest, KeysAreValidated) {
  if (!CheckCurveAvailable().ok()) GTEST_SKIP() << "libzmq without CURVE";
  auto pair = GenerateCurveKeyPair();
  ASSERT_TRUE(pair.ok());
  EXPECT_EQ(pair->public_key.size(), 40u);
  EXPECT_TRUE(ValidateCurveKey(pair->public_key).ok());
  EXPECT_EQ(CurvePublicKeyFromSecret(pair->secret_key).value(), pair->public_key);
  EXPECT_FALSE(ValidateCurveKey("short").ok());
  EXPECT_FALSE(ValidateCurveKey(std::string(40, '"')).ok());  // not Z85
  EXPECT_NE(GenerateCurveKeyPair()->public_key, pair->public_key);
}

class CurveServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CheckCurveAvailable().ok()) GTEST_SKIP() << "libzmq without CURVE";
    server_keys_ = GenerateCurveKeyPair().value();
    allowed_keys_ = GenerateCurveKeyPair().value();
    denied_keys_ = GenerateCurveKeyPair().value();
    auto auth = ZapAuthenticator::Start(context_, {allowed_keys_.public_key});
    ASSERT_TRUE(auth.ok()) << auth.status();
    auth_ = std::move(*auth);
    ServerOptions options;
    options.curve = CurveServerOptions{server_keys_.secret_key, auth_.get()};
    auto server = RouterServer::Bind(context_, "tcp://127.0.0.1:0", options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  std::unique_ptr<DealerClient> Client(const CurveKeyPair& keys) {
    ClientOptions options;
    options.curve = CurveClientOptions{server_keys_.public_key, keys.public_key, keys.secret_key};
    return DealerClient::Connect(context_, server_->endpoint(), options).value();
  }

  zmq::context_t context_;
  CurveKeyPair server_keys_, allowed_keys_, denied_keys_;
  std::unique_ptr<ZapAuthenticator> auth_;
  std::unique_ptr<RouterServer> server_;
};

TEST_F(CurveServerTest, AllowedClientTalks) {
  auto client = Client(allowed_keys_);
  ASSERT_TRUE(client->Send(PingMessage(7)).ok());
  RoutedMessage served = ServeOne(*server_);
  EXPECT_EQ(served.user_id, allowed_keys_.public_key);  // the server knows who it is
  auto reply = client->Receive(kLong);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(MustDecode(*reply).request_id, 7u);
  EXPECT_GE(auth_->allowed_count(), 1u);
}

TEST_F(CurveServerTest, ClientNotOnTheAllowListGetsNothingThrough) {
  auto client = Client(denied_keys_);
  ASSERT_TRUE(client->Send(PingMessage(8)).ok());
  // Wait for the handler's verdict instead of sleeping.
  ASSERT_TRUE(auth_->WaitForDecisions(0, 1, kLong));
  EXPECT_EQ(server_->Receive(200ms).status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(client->Receive(50ms).status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(auth_->allowed_count(), 0u);

  // The allow-list is live: once the key is allowed, a new connection with it gets in. (libzmq
  // does not retry a handshake the server refused, so the refused socket itself stays out.)
  ASSERT_TRUE(auth_->SetAllowedKeys({allowed_keys_.public_key, denied_keys_.public_key}).ok());
  auto again = Client(denied_keys_);
  ASSERT_TRUE(again->Send(PingMessage(11)).ok());
  RoutedMessage served = ServeOne(*server_);
  EXPECT_EQ(served.user_id, denied_keys_.public_key);
  ASSERT_TRUE(served.message.ok());
  EXPECT_EQ(MustDecode(*served.message).request_id, 11u);
}

TEST_F(CurveServerTest, PlainClientGetsNothingThrough) {
  auto plain = DealerClient::Connect(context_, server_->endpoint()).value();
  ASSERT_TRUE(plain->Send(PingMessage(9)).ok());
  EXPECT_EQ(server_->Receive(200ms).status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(plain->Receive(10ms).status().code(), StatusCode::kDeadlineExceeded);
}

TEST_F(CurveServerTest, ClientWithTheWrongServerKeyGetsNothingThrough) {
  ClientOptions options;
  const CurveKeyPair impostor = GenerateCurveKeyPair().value();
  options.curve =
      CurveClientOptions{impostor.public_key, allowed_keys_.public_key, allowed_keys_.secret_key};
  auto client = DealerClient::Connect(context_, server_->endpoint(), options).value();
  ASSERT_TRUE(client->Send(PingMessage(10)).ok());
  EXPECT_EQ(server_->Receive(200ms).status().code(), StatusCode::kDeadlineExceeded);
}

TEST_F(CurveServerTest, OneAuthenticatorPerContext) {
  EXPECT_FALSE(ZapAuthenticator::Start(context_, {}).ok());
  zmq::context_t other;
  ServerOptions options;
  options.curve = CurveServerOptions{server_keys_.secret_key, auth_.get()};
  EXPECT_EQ(RouterServer::Bind(other, "tcp://127.0.0.1:0", options).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(ZapAuthenticator::Start(other, {"not a key"}).ok());
}

}  // namespace
}  // namespace swarm::transport
