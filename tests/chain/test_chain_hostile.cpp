// Hostile input to real peer processes: random bytes (as ZeroMQ frames and as raw TCP), broken
// framing, truncated and oversized frames, another protocol version, unknown session ids, wrong
// shapes and dtypes, NaN and infinite activations, positions that jump or pass max_length, steps
// on a closed session, bad routes. Each message gets an error reply with the right code; the
// peers keep running, free every session's cache, exit cleanly on SIGTERM (under ASan: with no
// leak), and a well-behaved session running through them at the same time produces the
// reference text.
#include <arpa/inet.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <thread>
#include <zmq_addon.hpp>

#include "absl/container/flat_hash_map.h"
#include "base/status_macros.h"
#include "chain_test_util.h"
#include "transport/link_emulator.h"
#include "transport/protocol.capnp.h"
#include "transport/protocol.h"
#include "transport/route_seal.h"
#include "transport/zmq_socket.h"

namespace swarm::chain_test {
namespace {

using absl::StatusCode;
using std::chrono::milliseconds;
using std::chrono::seconds;
using transport::DealerClient;
using transport::Payload;
using transport::SessionId;
using transport::WireMessage;
namespace wire = transport::wire;

constexpr uint32_t kEmbd = 64;  // stories260K
constexpr int64_t kCacheTokens = 4096;
// Positions that budget holds in the peers' default f16 cache (--cache-tokens is an f32 cache's
// worth of memory).
constexpr int64_t kCachePositions = 2 * kCacheTokens;

std::vector<uint8_t> Flat(capnp::MessageBuilder& builder) {
  auto words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  return {bytes.begin(), bytes.end()};
}

Payload Bytes(std::vector<uint8_t> b) { return Payload::FromVector(std::move(b)); }

std::vector<uint8_t> RandomBytes(std::mt19937& rng, size_t n) {
  std::vector<uint8_t> b(n);
  for (uint8_t& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

std::vector<float> Activations(size_t n, float scale = 0.5f) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = scale * std::sin(0.37f * static_cast<float>(i));
  return x;
}

// Talks to one peer as a hostile (or careless) client would.
class RawClient {
 public:
  RawClient(zmq::context_t& context, const std::string& address) : address_(address) {
    auto socket = DealerClient::Connect(context, address);
    EXPECT_TRUE(socket.ok()) << socket.status();
    if (socket.ok()) socket_ = std::move(*socket);
  }

  void Send(const WireMessage& wire) { ASSERT_TRUE(socket_->Send(wire).ok()); }
  void Send(uint64_t request_id, transport::Message body,
            std::optional<Payload> tensor = std::nullopt) {
    auto wire = transport::EncodeMessage(request_id, std::move(body), std::move(tensor));
    ASSERT_TRUE(wire.ok()) << wire.status();
    Send(*wire);
  }

  // The next reply echoing `request_id` (errors included); skips anything else.
  absl::StatusOr<transport::DecodedMessage> Await(uint64_t request_id) {
    const auto deadline = std::chrono::steady_clock::now() + seconds(30);
    while (true) {
      auto wire = socket_->ReceiveUntil(deadline);
      if (!wire.ok()) return wire.status();
      auto decoded = transport::DecodeMessage(*wire);
      if (!decoded.ok()) return decoded.status();
      if (decoded->request_id == request_id) return decoded;
    }
  }

  // Waits for the error reply to `request_id` and returns its code (kOk if something else came).
  StatusCode AwaitError(uint64_t request_id) {
    auto reply = Await(request_id);
    if (!reply.ok()) {
      ADD_FAILURE() << "no reply to request " << request_id << ": " << reply.status();
      return StatusCode::kOk;
    }
    auto* error = std::get_if<transport::ErrorReply>(&reply->body);
    if (error == nullptr) {
      ADD_FAILURE() << "request " << request_id << " got " << transport::MessageName(reply->body)
                    << ", not an error";
      return StatusCode::kOk;
    }
    return error->code;
  }

  SessionId Open(uint32_t first, uint32_t last, uint32_t max_length) {
    const SessionId id = SessionId::Random();
    transport::OpenSession open;
    open.session_id = id;
    open.first_block = first;
    open.last_block = last;
    open.max_length = max_length;
    open.capabilities = transport::SessionCapabilities::Random();
    caps_[id] = open.capabilities;
    const uint64_t request_id = next_id_++;
    Send(request_id, open);
    auto reply = Await(request_id);
    EXPECT_TRUE(reply.ok() && std::holds_alternative<transport::OpenSessionReply>(reply->body))
        << (reply.ok() ? std::string(transport::MessageName(reply->body))
                       : reply.status().ToString());
    return id;
  }

  void Close(const SessionId& id) {
    const uint64_t request_id = next_id_++;
    Send(request_id, transport::CloseSession{id, caps_[id].owner});
    auto reply = Await(request_id);
    EXPECT_TRUE(reply.ok() && std::holds_alternative<transport::CloseSessionReply>(reply->body));
  }

  // A step whose request id equals its step id (the peer answers step errors with the step id),
  // with the owner capability of a session this client opened.
  transport::Step MakeStep(const SessionId& id, int64_t start, int32_t n_tokens, uint64_t step_id) {
    transport::Step step;
    step.session_id = id;
    step.step_id = step_id;
    step.start_position = start;
    step.n_tokens = n_tokens;
    if (auto it = caps_.find(id); it != caps_.end()) step.capability = it->second.owner;
    return step;
  }
  // The capabilities a session this client opened was given.
  const transport::SessionCapabilities& Caps(const SessionId& id) { return caps_[id]; }
  // For a session opened by hand.
  void Remember(const transport::OpenSession& open) { caps_[open.session_id] = open.capabilities; }
  StatusCode StepError(transport::Step step, const std::vector<float>& x, const char* codec = "f32",
                       std::vector<uint32_t> shape = {}) {
    if (shape.empty()) shape = {kEmbd, static_cast<uint32_t>(step.n_tokens)};
    auto encoded = transport::EncodeActivations(x, shape, transport::ParseCodec(codec).value());
    EXPECT_TRUE(encoded.ok()) << encoded.status();
    step.tensor = encoded->desc;
    const uint64_t id = step.step_id;
    Send(id, std::move(step), encoded->bytes);
    return AwaitError(id);
  }

  uint64_t NextId() { return next_id_++; }
  DealerClient& socket() { return *socket_; }

 private:
  std::string address_;
  std::unique_ptr<DealerClient> socket_;
  uint64_t next_id_ = 1000;
  absl::flat_hash_map<SessionId, transport::SessionCapabilities> caps_;
};

// A Step header built by hand for what EncodeMessage refuses to write; `edit` breaks one thing.
template <typename Edit>
std::vector<uint8_t> HandStep(uint64_t request_id, const SessionId& id, Edit edit) {
  capnp::MallocMessageBuilder builder;
  auto env = builder.initRoot<wire::Envelope>();
  env.setVersion(transport::kProtocolVersion);
  env.setRequestId(request_id);
  auto step = env.initBody().initStep();
  step.initSessionId().setHi(id.hi);
  step.getSessionId().setLo(id.lo);
  step.setStepId(request_id);
  step.setNTokens(1);
  auto tensor = step.initTensor();
  tensor.initCodec().setDtype(wire::Dtype::F32);
  auto shape = tensor.initShape(2);
  shape.set(0, kEmbd);
  shape.set(1, 1);
  tensor.setFrameBytes(4 * kEmbd);
  edit(env, step);
  return Flat(builder);
}

class ChainHostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    peers_ = StartPeers(kModel, {{0, 2}, {2, 5}},
                        {"--cache-tokens", std::to_string(kCacheTokens), "--max-length", "1024"});
    for (const Peer& peer : peers_) ASSERT_FALSE(peer.ready.address.empty());
    kernels::BackendOptions backend;
    auto local = shard::LocalModel::Load(kModel, backend, /*load_blocks=*/false);
    ASSERT_TRUE(local.ok()) << local.status();
    client_ = std::move(*local);
  }

  void TearDown() override {
    for (Peer& peer : peers_) {
      EXPECT_EQ(StopPeer(peer), 0) << "the peer did not stop cleanly (or leaked)\n"
                                   << ReadFile(peer.log_path);
    }
  }

  // Greedy 200 tokens through both peers: must equal the reference.
  absl::StatusOr<Generation> GoodSession() {
    return GenerateThroughChain(zmq_, *client_, HopsOf({&peers_[0], &peers_[1]}), kReferenceTokens);
  }

  // Every hostile message once against peer `index`; expects the right error for each.
  void Barrage(size_t index, std::mt19937& rng) {
    const Peer& peer = peers_[index];
    RawClient c(zmq_, peer.ready.address);
    const std::vector<float> one = Activations(kEmbd);

    // Random bytes as a header, alone and with a tensor frame.
    // (The error reply echoes whatever request id the peer could make out of the bytes.)
    for (size_t n : {size_t{1}, size_t{7}, size_t{8}, size_t{64}, size_t{1000}}) {
      std::vector<uint8_t> junk = RandomBytes(rng, n);
      c.Send(WireMessage{Bytes(junk), std::nullopt});
      EXPECT_NE(c.AwaitError(PeekOr0(junk)), StatusCode::kOk) << n << " random bytes";
      junk = RandomBytes(rng, n);
      c.Send(WireMessage{Bytes(junk), Bytes(RandomBytes(rng, 256))});
      EXPECT_NE(c.AwaitError(PeekOr0(junk)), StatusCode::kOk) << n << " random bytes + a frame";
    }
    // An empty header.
    c.Send(WireMessage{Payload(), std::nullopt});
    EXPECT_NE(c.AwaitError(0), StatusCode::kOk);

    // Framing: three frames in one message (raw ZeroMQ).
    {
      zmq::socket_t raw(zmq_, zmq::socket_type::dealer);
      raw.set(zmq::sockopt::linger, 0);
      raw.connect(peer.ready.address);
      raw.send(zmq::buffer(std::string("a")), zmq::send_flags::sndmore);
      raw.send(zmq::buffer(std::string("b")), zmq::send_flags::sndmore);
      raw.send(zmq::buffer(std::string("c")), zmq::send_flags::none);
      zmq::pollitem_t item{raw.handle(), 0, ZMQ_POLLIN, 0};
      ASSERT_EQ(zmq::poll(&item, 1, seconds(30)), 1);
      std::vector<zmq::message_t> parts;
      ASSERT_TRUE(zmq::recv_multipart(raw, std::back_inserter(parts)).has_value());
      ASSERT_FALSE(parts.empty());
      auto decoded = transport::DecodeMessage(
          parts[0].data<uint8_t>() == nullptr
              ? std::span<const uint8_t>()
              : std::span<const uint8_t>(parts[0].data<uint8_t>(), parts[0].size()),
          std::nullopt);
      ASSERT_TRUE(decoded.ok()) << decoded.status();
      auto* error = std::get_if<transport::ErrorReply>(&decoded->body);
      ASSERT_NE(error, nullptr);
      EXPECT_EQ(error->code, StatusCode::kInvalidArgument);
    }

    // A valid step header, truncated; a valid step with its tensor frame cut short or too long.
    const SessionId session = c.Open(peer.ready.first_block, peer.ready.last_block, 64);
    {
      transport::Step step = c.MakeStep(session, 0, 1, c.NextId());
      auto encoded = transport::EncodeActivations(one, {kEmbd, 1}, {}).value();
      step.tensor = encoded.desc;
      const uint64_t id = step.step_id;
      WireMessage good = transport::EncodeMessage(id, step, encoded.bytes).value();
      auto header = good.header.bytes();
      for (size_t keep : {header.size() / 2, header.size() - 8, size_t{16}}) {
        std::vector<uint8_t> cut(header.begin(), header.begin() + keep);
        c.Send(WireMessage{Bytes(cut), good.tensor});
        EXPECT_EQ(c.AwaitError(PeekOr0(cut)), StatusCode::kDataLoss) << "header cut to " << keep;
      }
      auto frame = good.tensor->bytes();
      c.Send(WireMessage{good.header, Bytes(std::vector<uint8_t>(frame.begin(), frame.end() - 4))});
      EXPECT_EQ(c.AwaitError(id), StatusCode::kDataLoss) << "short tensor frame";
      std::vector<uint8_t> longer(frame.begin(), frame.end());
      longer.resize(longer.size() + 4096);
      c.Send(WireMessage{good.header, Bytes(longer)});
      EXPECT_EQ(c.AwaitError(id), StatusCode::kDataLoss) << "long tensor frame";
      c.Send(WireMessage{good.header, std::nullopt});
      EXPECT_EQ(c.AwaitError(id), StatusCode::kInvalidArgument) << "missing tensor frame";
      // A header larger than any real one.
      std::vector<uint8_t> huge = RandomBytes(rng, transport::kMaxHeaderBytes + 4096);
      c.Send(WireMessage{Bytes(huge), std::nullopt});
      EXPECT_NE(c.AwaitError(PeekOr0(huge)), StatusCode::kOk) << "oversized header";
    }

    // Hand-built headers: another protocol version, an unknown dtype, an absurd shape.
    {
      const uint64_t id = c.NextId();
      auto header = HandStep(
          id, session, [](auto env, auto) { env.setVersion(transport::kProtocolVersion + 1); });
      c.Send(WireMessage{Bytes(header), Bytes(std::vector<uint8_t>(4 * kEmbd))});
      EXPECT_EQ(c.AwaitError(id), StatusCode::kFailedPrecondition) << "another protocol version";
    }
    {
      const uint64_t id = c.NextId();
      auto header = HandStep(id, session, [](auto, auto step) {
        step.getTensor().getCodec().setDtype(static_cast<wire::Dtype>(9));
      });
      c.Send(WireMessage{Bytes(header), Bytes(std::vector<uint8_t>(4 * kEmbd))});
      EXPECT_EQ(c.AwaitError(id), StatusCode::kInvalidArgument) << "unknown dtype";
    }
    {
      const uint64_t id = c.NextId();
      auto header = HandStep(id, session, [](auto, auto step) {
        auto shape = step.getTensor().initShape(2);
        shape.set(0, 1u << 16);
        shape.set(1, 1u << 16);  // 2^32 values claimed
        step.getTensor().setFrameBytes(4 * kEmbd);
      });
      c.Send(WireMessage{Bytes(header), Bytes(std::vector<uint8_t>(4 * kEmbd))});
      EXPECT_NE(c.AwaitError(id), StatusCode::kOk) << "absurd shape";
    }
    {
      const uint64_t id = c.NextId();
      auto header = HandStep(id, session, [](auto, auto step) {
        step.getTensor().getCodec().setDtype(wire::Dtype::INT8_BLOCK);
        step.getTensor().getCodec().setBlockSize(3);
      });
      c.Send(WireMessage{Bytes(header), Bytes(std::vector<uint8_t>(4 * kEmbd))});
      EXPECT_EQ(c.AwaitError(id), StatusCode::kInvalidArgument) << "int8 block size 3";
    }

    // Unknown and closed sessions.
    EXPECT_EQ(c.StepError(c.MakeStep(SessionId::Random(), 0, 1, c.NextId()), one),
              StatusCode::kNotFound);
    {
      const SessionId closed = c.Open(peer.ready.first_block, peer.ready.last_block, 16);
      c.Close(closed);
      EXPECT_EQ(c.StepError(c.MakeStep(closed, 0, 1, c.NextId()), one), StatusCode::kNotFound);
      // Closing it again is harmless (the reply says it is closed).
      c.Close(closed);
    }

    // Wrong shapes and dtypes for this model (what the encoder refuses to write is built by hand).
    EXPECT_EQ(c.StepError(c.MakeStep(session, 0, 1, c.NextId()), Activations(kEmbd + 1), "f32",
                          {kEmbd + 1, 1}),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(c.StepError(c.MakeStep(session, 0, 1, c.NextId()), Activations(kEmbd / 2), "f16",
                          {kEmbd / 2, 1}),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(c.StepError(c.MakeStep(session, 0, 4, c.NextId()), Activations(2 * kEmbd), "bf16",
                          {kEmbd / 2, 4}),
              StatusCode::kInvalidArgument);
    {
      const uint64_t id = c.NextId();
      auto header = HandStep(id, session, [](auto, auto step) {
        auto shape = step.getTensor().initShape(2);
        shape.set(0, kEmbd);
        shape.set(1, 2);  // but n_tokens = 1
        step.getTensor().setFrameBytes(8 * kEmbd);
      });
      c.Send(WireMessage{Bytes(header), Bytes(std::vector<uint8_t>(8 * kEmbd))});
      EXPECT_EQ(c.AwaitError(id), StatusCode::kInvalidArgument) << "shape[1] != n_tokens";
    }
    {
      const uint64_t id = c.NextId();
      auto header = HandStep(id, session, [](auto, auto step) {
        auto shape = step.getTensor().initShape(3);
        shape.set(0, kEmbd);
        shape.set(1, 1);
        shape.set(2, 1);
      });
      c.Send(WireMessage{Bytes(header), Bytes(std::vector<uint8_t>(4 * kEmbd))});
      EXPECT_EQ(c.AwaitError(id), StatusCode::kInvalidArgument) << "three dimensions";
    }
    {
      const uint64_t id = c.NextId();
      auto header = HandStep(id, session, [](auto, auto step) { step.setNTokens(0); });
      c.Send(WireMessage{Bytes(header), Bytes(std::vector<uint8_t>(4 * kEmbd))});
      EXPECT_EQ(c.AwaitError(id), StatusCode::kInvalidArgument) << "zero tokens";
    }

    // Non-finite activations, in every codec that can carry them.
    for (float bad :
         {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
      for (const char* codec : {"f32", "f16", "bf16+zstd", "int8"}) {
        std::vector<float> x = one;
        x[17] = bad;
        EXPECT_EQ(c.StepError(c.MakeStep(session, 0, 1, c.NextId()), x, codec),
                  StatusCode::kInvalidArgument)
            << codec << " " << bad;
      }
    }

    // Positions: a jump ahead, past max_length (64), and far past any length.
    EXPECT_EQ(c.StepError(c.MakeStep(session, 5, 1, c.NextId()), one),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(c.StepError(c.MakeStep(session, 63, 2, c.NextId()), Activations(2 * kEmbd)),
              StatusCode::kOutOfRange);
    for (int64_t start : {int64_t{1} << 40, int64_t{-1}, std::numeric_limits<int64_t>::min()}) {
      const uint64_t id = c.NextId();
      auto header = HandStep(id, session, [&](auto, auto step) { step.setStartPosition(start); });
      c.Send(WireMessage{Bytes(header), Bytes(std::vector<uint8_t>(4 * kEmbd))});
      EXPECT_EQ(c.AwaitError(id), StatusCode::kInvalidArgument) << "start " << start;
    }

    // Sessions the peer cannot give: blocks outside its range or empty, a length beyond its
    // maximum or zero (built by hand: the encoder refuses some of these).
    for (auto [first, last, length] : std::vector<std::tuple<uint32_t, uint32_t, uint32_t>>{
             {peer.ready.last_block, peer.ready.last_block + 1, 16},
             {peer.ready.first_block, peer.ready.first_block, 16},
             {peer.ready.last_block, peer.ready.first_block, 16},
             {peer.ready.first_block, peer.ready.last_block, 1u << 20},
             {peer.ready.first_block, peer.ready.last_block, 0}}) {
      capnp::MallocMessageBuilder builder;
      auto env = builder.initRoot<wire::Envelope>();
      env.setVersion(transport::kProtocolVersion);
      const uint64_t id = c.NextId();
      env.setRequestId(id);
      auto open = env.initBody().initOpenSession();
      open.initSessionId().setLo(id);
      open.setFirstBlock(first);
      open.setLastBlock(last);
      open.setMaxLength(length);
      c.Send(WireMessage{Bytes(Flat(builder)), std::nullopt});
      EXPECT_NE(c.AwaitError(id), StatusCode::kOk) << first << ":" << last << " len " << length;
    }
    {
      // The same session id twice (with other capabilities: the session is not this opening's).
      transport::OpenSession open;
      open.session_id = session;
      open.first_block = peer.ready.first_block;
      open.last_block = peer.ready.last_block;
      open.max_length = 16;
      open.capabilities = transport::SessionCapabilities::Random();
      const uint64_t id = c.NextId();
      c.Send(id, open);
      EXPECT_NE(c.AwaitError(id), StatusCode::kOk) << "an id already in use";
    }

    // A route to nowhere: refused before the step runs (a peer pushes only to tcp:// hops).
    {
      transport::Step step = c.MakeStep(session, 0, 1, c.NextId());
      const transport::SealingHop route[] = {
          {{}, c.Caps(session).route_key},
          {{"not-an-endpoint", SessionId::Random(), {}, transport::Capability::Random()},
           transport::RouteKey::Random()}};
      step.sealed_route = transport::SealRoute(route, {step.step_id, 0, 1, false}).value();
      EXPECT_EQ(c.StepError(step, one), StatusCode::kInvalidArgument);
    }

    // Messages a peer never accepts.
    {
      const uint64_t id = c.NextId();
      c.Send(id, transport::Pong{1, 2});
      EXPECT_EQ(c.AwaitError(id), StatusCode::kInvalidArgument);
      const uint64_t id2 = c.NextId();
      transport::StepOutput output;
      output.session_id = session;
      output.n_tokens = 1;
      output.first_block = peer.ready.first_block;
      output.last_block = peer.ready.last_block;
      auto encoded = transport::EncodeActivations(one, {kEmbd, 1}, {}).value();
      output.tensor = encoded.desc;
      c.Send(id2, output, encoded.bytes);
      EXPECT_EQ(c.AwaitError(id2), StatusCode::kInvalidArgument);
    }

    c.Close(session);
  }

  static uint64_t PeekOr0(const std::vector<uint8_t>& header) {
    return transport::PeekRequestId(header).value_or(0);
  }

  // Random bytes straight into the TCP port (not ZMTP at all): ZeroMQ drops the connection.
  static void RawTcpGarbage(const std::string& address, std::mt19937& rng) {
    auto endpoint = transport::ParseTcpEndpoint(address);
    ASSERT_TRUE(endpoint.ok()) << endpoint.status();
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(endpoint->port);
    ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      auto garbage = RandomBytes(rng, 64 * 1024);
      (void)::send(fd, garbage.data(), garbage.size(), MSG_NOSIGNAL);
    }
    ::close(fd);
  }

  uint64_t FreeCacheTokens(const Peer& peer) {
    auto info = router::QueryInfo(zmq_, peer.ready.address, std::chrono::seconds(30));
    EXPECT_TRUE(info.ok()) << info.status();
    return info.ok() ? info->free_cache_tokens : 0;
  }

  zmq::context_t zmq_{1};
  std::vector<Peer> peers_;
  std::unique_ptr<shard::LocalModel> client_;
};

TEST_F(ChainHostileTest, EveryHostileMessageGetsAnErrorAndAGoodSessionStillCompletes) {
  // Good sessions run back to back in their own thread (their own sockets on the shared
  // context) for as long as the barrage goes on, so every hostile message meets a live session.
  // The barrage also goes on until the first good session has finished, so the two overlap.
  std::atomic<bool> barrage_done{false};
  std::atomic<int> completed{0};
  std::vector<absl::StatusOr<Generation>> good;
  std::thread sessions([&] {
    do {
      good.push_back(GoodSession());
      completed.fetch_add(1);
    } while (!barrage_done.load());
  });
  std::mt19937 rng(1234);
  constexpr int kRounds = 2;
  int rounds = 0;
  while ((rounds < kRounds || completed.load() == 0) && !HasFatalFailure() && rounds < 1000) {
    for (size_t i = 0; i < peers_.size() && !HasFatalFailure(); ++i) {
      RawTcpGarbage(peers_[i].ready.address, rng);
      Barrage(i, rng);
    }
    ++rounds;
  }
  barrage_done.store(true);
  sessions.join();
  std::printf("good sessions completed during %d hostile rounds: %zu\n", rounds, good.size());

  const std::string reference = ReadFile(kReferenceText);
  for (const auto& g : good) {
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ(g->text, reference);
  }
  for (Peer& peer : peers_) {
    EXPECT_TRUE(peer.process->running()) << ReadFile(peer.log_path);
    // Every session (the good ones and the barrage's) is closed: the whole budget is free again.
    EXPECT_EQ(FreeCacheTokens(peer), static_cast<uint64_t>(kCachePositions));
  }
  // And they still serve correctly after it all.
  auto again = GoodSession();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->text, reference);
}

// A client whose opening got no reply in time sends it again: the peer answers a repeated opening
// of the same session (same blocks and length) as the first and leaves the session as it is; a
// different opening under an id in use is still refused.
TEST_F(ChainHostileTest, RepeatedOpeningIsAnsweredLikeTheFirst) {
  RawClient c(zmq_, peers_[0].ready.address);
  transport::OpenSession open;
  open.session_id = SessionId::Random();
  open.first_block = 0;
  open.last_block = 2;
  open.max_length = 64;
  open.capabilities = transport::SessionCapabilities::Random();
  c.Remember(open);
  for (int i = 0; i < 2; ++i) {
    const uint64_t id = c.NextId();
    c.Send(id, open);
    auto reply = c.Await(id);
    ASSERT_TRUE(reply.ok()) << reply.status();
    auto* accepted = std::get_if<transport::OpenSessionReply>(&reply->body);
    ASSERT_NE(accepted, nullptr) << transport::MessageName(reply->body);
    EXPECT_TRUE(accepted->accepted);
  }
  // One step, then the same opening again: the session keeps its position.
  const std::vector<float> x = Activations(kEmbd);
  auto encoded = transport::EncodeActivations(x, {kEmbd, 1}, transport::ParseCodec("f32").value());
  ASSERT_TRUE(encoded.ok());
  transport::Step step = c.MakeStep(open.session_id, 0, 1, c.NextId());
  step.tensor = encoded->desc;
  const uint64_t step_id = step.step_id;
  c.Send(step_id, step, encoded->bytes);
  auto output = c.Await(step_id);
  ASSERT_TRUE(output.ok()) << output.status();
  ASSERT_TRUE(std::holds_alternative<transport::StepOutput>(output->body))
      << transport::MessageName(output->body);
  const uint64_t again = c.NextId();
  c.Send(again, open);
  auto reply = c.Await(again);
  ASSERT_TRUE(reply.ok() && std::holds_alternative<transport::OpenSessionReply>(reply->body));
  // Position 1 is next (position 0 was not forgotten), so a step at 2 is a jump.
  EXPECT_EQ(c.StepError(c.MakeStep(open.session_id, 2, 1, c.NextId()), x),
            StatusCode::kInvalidArgument);

  // Another length (or other blocks) under the same id: refused.
  open.max_length = 32;
  const uint64_t other = c.NextId();
  c.Send(other, open);
  EXPECT_EQ(c.AwaitError(other), StatusCode::kAlreadyExists);
  c.Close(open.session_id);
  EXPECT_EQ(FreeCacheTokens(peers_[0]), static_cast<uint64_t>(kCachePositions));
}

}  // namespace
}  // namespace swarm::chain_test
