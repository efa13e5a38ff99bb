// Quotas and limits of real peer processes (`swarm serve`) on loopback: a flood of queued steps
// from one connection is refused beyond its cap while the peer's memory stays bounded and another
// client generates the reference text; one connection's idle sessions cannot take the KV budget;
// sessions that never get a step expire after --unstarted-timeout; a route naming an ipc:// or
// inproc:// hop is refused; a frame larger than the model's shapes allow is dropped by libzmq; and
// on the client's side, a lying peer's tiny output that declares a huge shape is refused before it
// is inflated. Each refusal names the limit, and the peer keeps serving everyone else.
#include <unistd.h>
#include <zstd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "base/status_macros.h"
#include "chain_test_util.h"
#include "peer/admission.h"
#include "transport/protocol.h"
#include "transport/route_seal.h"
#include "transport/zmq_socket.h"

namespace swarm::chain_test {
namespace {

using absl::StatusCode;
using std::chrono::milliseconds;
using std::chrono::seconds;
using transport::DealerClient;
using transport::DecodedMessage;
using transport::SessionId;

constexpr uint32_t kEmbd = 64;  // stories260K
constexpr uint32_t kLayers = 5;
using Clock = std::chrono::steady_clock;

// A client speaking the wire directly over one connection.
class RawClient {
 public:
  RawClient(zmq::context_t& context, const std::string& address,
            transport::ClientOptions options = {}) {
    auto socket = DealerClient::Connect(context, address, options);
    EXPECT_TRUE(socket.ok()) << socket.status();
    if (socket.ok()) socket_ = std::move(*socket);
  }

  void Send(uint64_t request_id, transport::Message body,
            std::optional<transport::Payload> tensor = std::nullopt) {
    auto wire = transport::EncodeMessage(request_id, std::move(body), std::move(tensor));
    ASSERT_TRUE(wire.ok()) << wire.status();
    ASSERT_TRUE(socket_->Send(*wire).ok());
  }
  // The next reply (of any request).
  absl::StatusOr<DecodedMessage> Next(Clock::time_point deadline) {
    SWARM_ASSIGN_OR_RETURN(auto wire, socket_->ReceiveUntil(deadline));
    return transport::DecodeMessage(wire);
  }
  absl::StatusOr<DecodedMessage> Await(uint64_t request_id) {
    const auto deadline = Clock::now() + seconds(30);
    while (true) {
      SWARM_ASSIGN_OR_RETURN(auto reply, Next(deadline));
      if (reply.request_id == request_id) return reply;
    }
  }
  absl::StatusOr<DecodedMessage> Call(transport::Message body,
                                      std::optional<transport::Payload> tensor = std::nullopt) {
    const uint64_t id = next_id_++;
    Send(id, std::move(body), std::move(tensor));
    return Await(id);
  }
  // The opening's reply: OK, or the error the peer answered with.
  absl::Status Open(const SessionId& id, uint32_t max_length) {
    transport::OpenSession open;
    open.session_id = id;
    open.first_block = 0;
    open.last_block = kLayers;
    open.max_length = max_length;
    open.capabilities = transport::SessionCapabilities::Random();
    caps_[id] = open.capabilities;
    SWARM_ASSIGN_OR_RETURN(auto reply, Call(open));
    if (auto* error = std::get_if<transport::ErrorReply>(&reply.body)) return error->ToStatus();
    if (!std::holds_alternative<transport::OpenSessionReply>(reply.body)) {
      return absl::InternalError(std::string(transport::MessageName(reply.body)));
    }
    return absl::OkStatus();
  }
  // A step of n_tokens positions at `start` (input: a pattern), its reply: the output or an error.
  // `next`: the hop this peer should push the output to.
  absl::StatusOr<DecodedMessage> Step(const SessionId& id, int64_t start, int32_t n_tokens,
                                      std::optional<transport::Hop> next = std::nullopt) {
    std::vector<float> x(size_t{kEmbd} * n_tokens);
    for (size_t i = 0; i < x.size(); ++i) x[i] = 0.01f * static_cast<float>(i % 97);
    auto encoded = transport::EncodeActivations(x, {kEmbd, static_cast<uint32_t>(n_tokens)}, {});
    if (!encoded.ok()) return encoded.status();
    transport::Step step;
    step.session_id = id;
    step.step_id = next_id_++;
    step.start_position = start;
    step.n_tokens = n_tokens;
    step.tensor = encoded->desc;
    step.capability = caps_[id].owner;
    if (next) {
      const transport::SealingHop route[] = {{{}, caps_[id].route_key},
                                             {*next, transport::RouteKey::Random()}};
      SWARM_ASSIGN_OR_RETURN(step.sealed_route,
                             transport::SealRoute(route, {step.step_id, start, n_tokens, false}));
    }
    const uint64_t step_id = step.step_id;
    Send(step_id, std::move(step), encoded->bytes);
    return Await(step_id);
  }
  uint64_t NextId() { return next_id_++; }
  // The owner capability of a session this client opened.
  transport::Capability Owner(const SessionId& id) { return caps_[id].owner; }
  DealerClient& socket() { return *socket_; }

 private:
  std::unique_ptr<DealerClient> socket_;
  uint64_t next_id_ = 1;
  absl::flat_hash_map<SessionId, transport::SessionCapabilities> caps_;
};

const transport::ErrorReply* ErrorOf(const absl::StatusOr<DecodedMessage>& reply) {
  return reply.ok() ? std::get_if<transport::ErrorReply>(&reply->body) : nullptr;
}

// The peak resident memory of a process so far (VmHWM), in bytes; -1 when unreadable.
int64_t PeakRss(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (absl::StartsWith(line, "VmHWM:")) return 1024 * std::stoll(line.substr(6));
  }
  return -1;
}

class ChainQuotasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kernels::BackendOptions backend;
    auto local = shard::LocalModel::Load(kModel, backend, /*load_blocks=*/false);
    ASSERT_TRUE(local.ok()) << local.status();
    client_ = std::move(*local);
    ASSERT_EQ(client_->config.n_embd, kEmbd);
    ASSERT_EQ(client_->config.n_layer, kLayers);
  }
  void TearDown() override {
    for (Peer& peer : peers_) {
      EXPECT_EQ(StopPeer(peer), 0) << "the peer did not stop cleanly (or leaked)\n"
                                   << ReadFile(peer.log_path);
    }
  }

  // One peer serving every block, with these flags.
  void StartPeer(std::vector<std::string> flags) {
    peers_ = StartPeers(kModel, {{0, kLayers}}, flags);
    ASSERT_EQ(peers_.size(), 1u);
    ASSERT_FALSE(peers_[0].ready.address.empty());
  }
  const std::string& address() const { return peers_[0].ready.address; }

  uint64_t FreeCacheTokens() {
    auto info = router::QueryInfo(zmq_, address(), seconds(30));
    EXPECT_TRUE(info.ok()) << info.status();
    return info.ok() ? info->free_cache_tokens : 0;
  }

  absl::StatusOr<Generation> GoodSession() {
    return GenerateThroughChain(zmq_, *client_, HopsOf({&peers_[0]}), kReferenceTokens);
  }

  zmq::context_t zmq_{1};
  std::vector<Peer> peers_;
  std::unique_ptr<shard::LocalModel> client_;
};

TEST_F(ChainQuotasTest, AFloodOfQueuedStepsIsRefusedAndMemoryStaysBounded) {
  // 32768 positions (f16 cache); one connection may hold a 4096-long session.
  StartPeer({"--cache-tokens", "16384", "--max-length", "4096"});
  const pid_t pid = peers_[0].process->pid();
  const int64_t rss_before = PeakRss(pid);
  ASSERT_GT(rss_before, 0);

  // Another client generates while the flood goes on.
  absl::StatusOr<Generation> good = absl::UnknownError("not run");
  std::thread generation([&] { good = GoodSession(); });

  // 400 steps of 4095 positions: ~1 MiB each decoded, a few hundred bytes each compressed. They
  // start past the session's end, so each that is queued is refused when its turn comes, without
  // compute: what the queue holds is all they cost.
  RawClient flood(zmq_, address());
  const SessionId session = SessionId::Random();
  ASSERT_TRUE(flood.Open(session, 4096).ok());
  constexpr int kSteps = 400;
  constexpr int32_t kTokens = 4095;
  const std::vector<float> zeros(size_t{kEmbd} * kTokens, 0.0f);
  auto encoded = transport::EncodeActivations(zeros, {kEmbd, kTokens},
                                              transport::ParseCodec("f32+zstd").value());
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  ASSERT_LT(encoded->bytes.size(), 4096u);
  for (int i = 0; i < kSteps; ++i) {
    transport::Step step;
    step.session_id = session;
    step.step_id = flood.NextId();
    step.capability = flood.Owner(session);
    step.start_position = 1;
    step.n_tokens = kTokens;
    step.tensor = encoded->desc;
    flood.Send(step.step_id, std::move(step), encoded->bytes);
  }
  int over_quota = 0, refused_later = 0;
  std::string quota_message;
  const auto deadline = Clock::now() + seconds(60);
  for (int i = 0; i < kSteps; ++i) {
    auto reply = flood.Next(deadline);
    ASSERT_TRUE(reply.ok()) << "reply " << i << ": " << reply.status();
    const auto* error = ErrorOf(reply);
    ASSERT_NE(error, nullptr) << transport::MessageName(reply->body);
    if (error->code == StatusCode::kResourceExhausted) {
      ++over_quota;
      quota_message = error->message;
    } else {
      EXPECT_EQ(error->code, StatusCode::kInvalidArgument) << error->message;
      ++refused_later;
    }
  }
  const int64_t rss_after = PeakRss(pid);
  generation.join();
  std::printf("flood of %d steps: %d refused over quota, %d queued; peak RSS %.1f -> %.1f MiB\n",
              kSteps, over_quota, refused_later, rss_before / 1048576.0, rss_after / 1048576.0);
  EXPECT_GE(over_quota, kSteps / 2);
  EXPECT_TRUE(absl::StrContains(quota_message, "queued")) << quota_message;
  // Uncapped, the queue alone held 400 MiB.
  EXPECT_LT(rss_after - rss_before, int64_t{160} << 20);
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(good->text, ReadFile(kReferenceText));
  // The flooding connection is served again once its queue is empty.
  auto step = flood.Step(session, 0, 1);
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_TRUE(std::holds_alternative<transport::StepOutput>(step->body))
      << (ErrorOf(step) ? ErrorOf(step)->message : "");
}

TEST_F(ChainQuotasTest, IdleSessionsOfOneConnectionCannotTakeTheBudget) {
  // 8192 positions; 8 sessions of 1024 would take them all.
  StartPeer({"--cache-tokens", "4096", "--max-length", "1024"});
  RawClient greedy(zmq_, address());
  int opened = 0;
  absl::Status refused;
  for (int i = 0; i < 8; ++i) {
    absl::Status status = greedy.Open(SessionId::Random(), 1024);
    if (status.ok()) {
      ++opened;
    } else {
      refused = status;
    }
  }
  EXPECT_EQ(opened, 1);  // 1/8 of the budget per connection
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), "quota: KV-cache positions per connection"))
      << refused;
  EXPECT_EQ(FreeCacheTokens(), 8192u - 1024u);
  // Another client opens its sessions and generates.
  auto good = GoodSession();
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(good->text, ReadFile(kReferenceText));
}

TEST_F(ChainQuotasTest, SessionsThatNeverStepExpireQuickly) {
  StartPeer({"--cache-tokens", "4096", "--max-length", "1024", "--unstarted-timeout", "0.5"});
  const uint64_t full = FreeCacheTokens();
  RawClient client(zmq_, address());
  const SessionId idle = SessionId::Random();
  const SessionId working = SessionId::Random();
  const auto opened_at = Clock::now();
  ASSERT_TRUE(client.Open(idle, 256).ok());
  ASSERT_TRUE(client.Open(working, 256).ok());
  auto first = client.Step(working, 0, 1);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(std::holds_alternative<transport::StepOutput>(first->body));

  // Only the session that never stepped ends; poll until it has.
  const auto deadline = Clock::now() + seconds(20);
  uint64_t free = FreeCacheTokens();
  while (free != full - 256 && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(50));
    free = FreeCacheTokens();
  }
  const double waited = std::chrono::duration<double>(Clock::now() - opened_at).count();
  ASSERT_EQ(free, full - 256) << "after " << waited << " s";
  EXPECT_GE(waited, 0.5);
  std::printf("a session that never stepped ended after %.2f s\n", waited);
  auto gone = client.Step(idle, 0, 1);
  ASSERT_NE(ErrorOf(gone), nullptr);
  EXPECT_EQ(ErrorOf(gone)->code, StatusCode::kNotFound);
  auto second = client.Step(working, 1, 1);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(std::holds_alternative<transport::StepOutput>(second->body));
}

TEST_F(ChainQuotasTest, RoutesNameOnlyTcpHops) {
  StartPeer({"--cache-tokens", "4096", "--max-length", "1024"});
  RawClient client(zmq_, address());
  const SessionId session = SessionId::Random();
  ASSERT_TRUE(client.Open(session, 64).ok());
  for (const char* hop : {"ipc:///tmp/swarm-quotas-test.sock", "inproc://swarm-dealer-monitor-1",
                          "tcp://127.0.0.1:1;127.0.0.1:2"}) {
    auto reply =
        client.Step(session, 0, 1,
                    transport::Hop{hop, SessionId::Random(), {}, transport::Capability::Random()});
    const auto* error = ErrorOf(reply);
    ASSERT_NE(error, nullptr) << hop;
    EXPECT_EQ(error->code, StatusCode::kInvalidArgument) << hop;
    EXPECT_TRUE(absl::StrContains(error->message, "refused")) << error->message;
  }
  // Nothing ran: the session still starts at position 0, and serves.
  auto step = client.Step(session, 0, 2);
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_TRUE(std::holds_alternative<transport::StepOutput>(step->body))
      << (ErrorOf(step) ? ErrorOf(step)->message : "");
}

TEST_F(ChainQuotasTest, AFrameLargerThanTheModelAllowsIsDroppedUnread) {
  StartPeer({"--cache-tokens", "4096", "--max-length", "1024"});
  // The largest frame a step of this model may need, and one byte more.
  const int64_t limit = peer::MaxMessageBytes(kEmbd, 1024);
  transport::ClientOptions options;
  options.watch_disconnects = true;
  RawClient sender(zmq_, address(), options);
  // Connected first (an Info answered), so that the drop is the oversized frame's doing.
  ASSERT_TRUE(sender.Call(transport::InfoRequest{}).ok());
  std::vector<uint8_t> big(static_cast<size_t>(limit) + 1, 0);
  auto wire = transport::EncodeMessage(sender.NextId(), transport::InfoRequest{});
  ASSERT_TRUE(wire.ok());
  wire->tensor = transport::Payload::FromVector(std::move(big));
  ASSERT_TRUE(sender.socket().Send(*wire).ok());
  const auto deadline = Clock::now() + seconds(20);
  bool dropped = false;
  while (!dropped && Clock::now() < deadline) {
    zmq::socket_ref events[] = {sender.socket().disconnect_events()};
    (void)transport::PollReadable(events, milliseconds(100));
    dropped = sender.socket().ConnectionDropped();
  }
  EXPECT_TRUE(dropped) << "a frame of " << limit + 1 << " bytes was not refused by libzmq";
  // Everyone else is served.
  EXPECT_GT(FreeCacheTokens(), 0u);
}

// A peer that accepts every session and answers every step with a zstd frame of a few KiB that
// declares [2^26, n_tokens] f32 values: 256 MiB once inflated.
class BombingPeer {
 public:
  explicit BombingPeer(zmq::context_t& context) {
    auto router = transport::RouterServer::Bind(context, "tcp://127.0.0.1:0");
    EXPECT_TRUE(router.ok()) << router.status();
    router_ = std::move(*router);
    bomb_ = ZeroFrame(uint64_t{4} << 26);
    thread_ = std::thread([this] { Serve(); });
  }
  ~BombingPeer() {
    stop_.store(true);
    thread_.join();
  }
  const std::string& address() const { return router_->endpoint(); }
  size_t bomb_bytes() const { return bomb_.size(); }

 private:
  static std::vector<uint8_t> ZeroFrame(uint64_t bytes) {
    std::vector<uint8_t> zeros(size_t{1} << 20, 0), frame(1 << 20);
    ZSTD_CCtx* cctx = ZSTD_createCCtx();
    ZSTD_CCtx_setPledgedSrcSize(cctx, bytes);
    ZSTD_outBuffer out{frame.data(), frame.size(), 0};
    for (uint64_t done = 0; done < bytes;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), bytes - done));
      done += n;
      ZSTD_inBuffer in{zeros.data(), n, 0};
      const ZSTD_EndDirective mode = done == bytes ? ZSTD_e_end : ZSTD_e_continue;
      size_t left;
      do {
        left = ZSTD_compressStream2(cctx, &out, &in, mode);
      } while (!ZSTD_isError(left) && (in.pos < in.size || (mode == ZSTD_e_end && left != 0)));
    }
    ZSTD_freeCCtx(cctx);
    frame.resize(out.pos);
    return frame;
  }

  void Serve() {
    while (!stop_.load()) {
      auto received = router_->Receive(milliseconds(50));
      if (!received.ok() || !received->message.ok()) continue;
      auto decoded = transport::DecodeMessage(*received->message);
      if (!decoded.ok()) continue;
      if (auto* open = std::get_if<transport::OpenSession>(&decoded->body)) {
        Reply(received->routing_id, decoded->request_id,
              transport::OpenSessionReply{open->session_id, true, open->max_length, ""});
      } else if (auto* step = std::get_if<transport::Step>(&decoded->body)) {
        transport::StepOutput output;
        output.session_id = step->session_id;
        output.step_id = step->step_id;
        output.start_position = step->start_position;
        output.n_tokens = step->n_tokens;
        output.last_block = kLayers;
        output.tensor = {step->tensor.codec,
                         {uint32_t{1} << 26, static_cast<uint32_t>(step->n_tokens)}};
        Reply(received->routing_id, step->step_id, output,
              transport::Payload::FromVector(std::vector<uint8_t>(bomb_)));
      }
    }
  }
  void Reply(const std::string& to, uint64_t request_id, transport::Message body,
             std::optional<transport::Payload> tensor = std::nullopt) {
    auto wire = transport::EncodeMessage(request_id, std::move(body), std::move(tensor));
    EXPECT_TRUE(wire.ok()) << wire.status();
    if (wire.ok()) (void)router_->Send(to, *wire);
  }

  std::unique_ptr<transport::RouterServer> router_;
  std::vector<uint8_t> bomb_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST(ChainClientLimitsTest, ALyingPeersOversizedOutputIsRefusedBeforeInflating) {
  zmq::context_t context(1);
  BombingPeer liar(context);
  router::ChainOptions options;
  options.codec = transport::ParseCodec("f32+zstd").value();
  options.max_length = 16;
  auto chain = router::ChainSession::Open(context, {{liar.address(), 0, kLayers, ""}}, kLayers,
                                          kEmbd, options);
  ASSERT_TRUE(chain.ok()) << chain.status();
  const int64_t rss_before = PeakRss(getpid());
  std::vector<float> hidden(kEmbd, 0.25f), out(kEmbd);
  const absl::Status status = (*chain)->Forward(1, hidden.data(), out.data());
  const int64_t rss_after = PeakRss(getpid());
  std::printf("a %zu-byte output declaring 256 MiB: %s; peak RSS %.1f -> %.1f MiB\n",
              liar.bomb_bytes(), status.ToString().c_str(), rss_before / 1048576.0,
              rss_after / 1048576.0);
  EXPECT_EQ(status.code(), StatusCode::kDataLoss) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "declared [67108864, 1]")) << status;
  // Inflated, it would have cost 512 MiB (the values and zstd's output).
  EXPECT_LT(rss_after - rss_before, int64_t{64} << 20);
}

}  // namespace
}  // namespace swarm::chain_test
