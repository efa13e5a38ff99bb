// The client's session opening over a lossy connection: a peer that loses the first opening (as a
// reconnection drops what was queued on the old connection) still gets the session opened, by the
// client sending the opening again after ChainOptions::open_resend_interval; a peer that never
// answers fails the opening after open_timeout. The peer here is a ZeroMQ ROUTER on loopback
// speaking the real protocol that drops what the test tells it to.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "router/chain_session.h"
#include "transport/protocol.h"
#include "transport/zmq_socket.h"

namespace swarm::chain_test {
namespace {

using std::chrono::milliseconds;

constexpr int64_t kLayers = 5;
constexpr int64_t kEmbd = 64;

// Answers OpenSession (except the first `drop_openings`) and CloseSession; counts openings.
class LossyPeer {
 public:
  LossyPeer(zmq::context_t& context, int drop_openings) : drop_openings_(drop_openings) {
    auto server = transport::RouterServer::Bind(context, "tcp://127.0.0.1:0");
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return;
    server_ = std::move(*server);
    thread_ = std::thread([this] { Serve(); });
  }
  ~LossyPeer() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }

  std::string address() const { return server_ ? server_->endpoint() : ""; }
  int openings() const { return openings_.load(); }

 private:
  void Serve() {
    while (!stop_.load()) {
      auto received = server_->Receive(milliseconds(20));
      if (!received.ok() || !received->message.ok()) continue;
      auto decoded = transport::DecodeMessage(*received->message);
      if (!decoded.ok()) continue;
      if (auto* open = std::get_if<transport::OpenSession>(&decoded->body)) {
        if (openings_.fetch_add(1) < drop_openings_) continue;
        transport::OpenSessionReply reply{open->session_id, true, open->max_length, ""};
        auto wire = transport::EncodeMessage(decoded->request_id, reply);
        if (wire.ok()) (void)server_->Send(received->routing_id, *wire);
      } else if (auto* close = std::get_if<transport::CloseSession>(&decoded->body)) {
        auto wire = transport::EncodeMessage(decoded->request_id,
                                             transport::CloseSessionReply{close->session_id});
        if (wire.ok()) (void)server_->Send(received->routing_id, *wire);
      }
    }
  }

  const int drop_openings_;
  std::unique_ptr<transport::RouterServer> server_;
  std::atomic<int> openings_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::vector<router::ChainHop> OneHop(const LossyPeer& peer) {
  return {{peer.address(), 0, static_cast<uint32_t>(kLayers), ""}};
}

TEST(ChainOpenResendTest, LostOpeningIsSentAgainAndTheSessionOpens) {
  zmq::context_t context(1);
  LossyPeer peer(context, /*drop_openings=*/1);
  ASSERT_FALSE(peer.address().empty());
  router::ChainOptions options;
  options.open_timeout = milliseconds(20000);
  options.open_resend_interval = milliseconds(200);
  const auto start = std::chrono::steady_clock::now();
  auto chain = router::ChainSession::Open(context, OneHop(peer), kLayers, kEmbd, options);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(chain.ok()) << chain.status();
  // The first was dropped, the second answered (a third may have left before that answer came).
  EXPECT_GE(peer.openings(), 2);
  // Answered by the second sending, long before the open timeout.
  EXPECT_LT(took, options.open_timeout / 2);
}

TEST(ChainOpenResendTest, PeerThatNeverAnswersFailsAfterTheOpenTimeout) {
  zmq::context_t context(1);
  LossyPeer peer(context, /*drop_openings=*/1000);
  ASSERT_FALSE(peer.address().empty());
  router::ChainOptions options;
  options.open_timeout = milliseconds(700);
  options.open_resend_interval = milliseconds(200);
  auto chain = router::ChainSession::Open(context, OneHop(peer), kLayers, kEmbd, options);
  ASSERT_FALSE(chain.ok());
  EXPECT_EQ(chain.status().code(), absl::StatusCode::kDeadlineExceeded) << chain.status();
  // Sent at 0, 200, 400 and 600 ms: at least three reach the peer (its thread may lag behind).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (peer.openings() < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_GE(peer.openings(), 3);
}

}  // namespace
}  // namespace swarm::chain_test
