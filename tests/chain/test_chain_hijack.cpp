// Sessions belong to the client that opened them, tested against real peer processes. A client
// generates through three peers; transparent proxies in front of the first and the last record
// what those hops receive (a proxy sees exactly what its peer sees, so the first proxy knows what
// a malicious hop 0 would). Midway, a stranger who knows hop 1's session id and a DEALER holding
// hop 1's push capability (learned from hop 0's route layer) try to open that session again,
// close it, roll it back and step into it: each gets PERMISSION_DENIED and nothing else, and the
// client's text equals the in-process reference. Hop 0's bytes name hop 1 alone: nothing of
// hop 2's session id, capabilities or address, and no owner capability or route key of any hop.
// And the failover retry, which pushes positions the hops before the failed one already hold,
// still goes through (the client marks it a redo in each layer).
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <thread>

#include "chain_test_util.h"
#include "transport/route_seal.h"
#include "transport/zmq_socket.h"

namespace swarm::chain_test {
namespace {

using std::chrono::milliseconds;
using transport::Capability;
using transport::DealerClient;
using transport::DecodedMessage;
using transport::SessionCapabilities;
using transport::SessionId;

constexpr uint32_t kEmbd = 64;  // stories260K

// Forwards every message between a client and one peer, recording what it received (the header
// bytes and the decoded message): the client's openings and steps, and the steps the previous hop
// pushes. Replies go to the client that opened the session. Its own thread owns both sockets.
class RecordingProxy {
 public:
  RecordingProxy(zmq::context_t& context, const std::string& peer) {
    auto front = transport::RouterServer::Bind(context, "tcp://127.0.0.1:0");
    auto back = DealerClient::Connect(context, peer);
    EXPECT_TRUE(front.ok() && back.ok());
    if (!front.ok() || !back.ok()) return;
    front_ = std::move(*front);
    back_ = std::move(*back);
    thread_ = std::thread([this] { Serve(); });
  }
  ~RecordingProxy() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }

  std::string address() const { return front_ ? front_->endpoint() : ""; }
  struct Record {
    std::vector<uint8_t> header;  // the bytes as they came
    DecodedMessage message;
  };
  std::vector<Record> records() {
    std::lock_guard lock(mu_);
    return records_;
  }

 private:
  void Serve() {
    std::string client;
    const zmq::socket_ref sockets[] = {front_->socket(), back_->socket()};
    while (!stop_.load()) {
      auto readable = transport::PollReadable(sockets, milliseconds(20));
      if (!readable.ok()) return;
      for (size_t k : *readable) {
        if (k == 0) {
          auto received = front_->Receive(milliseconds(0));
          if (!received.ok() || !received->message.ok()) continue;
          auto decoded = transport::DecodeMessage(*received->message);
          // Replies go to the client that opened the session (the previous hop pushes here too).
          if (decoded.ok() && std::holds_alternative<transport::OpenSession>(decoded->body)) {
            client = received->routing_id;
          }
          if (decoded.ok()) {
            auto bytes = received->message->header.bytes();
            std::lock_guard lock(mu_);
            records_.push_back({{bytes.begin(), bytes.end()}, *decoded});
          }
          (void)back_->Send(*received->message);
        } else {
          auto reply = back_->Receive(milliseconds(0));
          if (reply.ok() && !client.empty()) (void)front_->Send(client, *reply);
        }
      }
    }
  }

  std::unique_ptr<transport::RouterServer> front_;
  std::unique_ptr<DealerClient> back_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Record> records_;
  std::thread thread_;
};

template <typename T>
bool Contains(std::span<const uint8_t> haystack, const T& needle) {
  const auto* begin = reinterpret_cast<const uint8_t*>(&needle);
  return std::search(haystack.begin(), haystack.end(), begin, begin + sizeof(T)) != haystack.end();
}
bool ContainsText(std::span<const uint8_t> haystack, const std::string& needle) {
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end()) !=
         haystack.end();
}

// Runs the chain, and after `attack_after` steps calls `attack` once (between two steps).
class AttackingPipeline : public model::BlockPipeline {
 public:
  AttackingPipeline(model::BlockPipeline& chain, int attack_after, std::function<void()> attack)
      : chain_(chain), attack_after_(attack_after), attack_(std::move(attack)) {}
  absl::Status Forward(int64_t n_tokens, const float* hidden_in, float* hidden_out) override {
    if (steps_++ == attack_after_) attack_();
    return chain_.Forward(n_tokens, hidden_in, hidden_out);
  }
  bool waits_on_peers() const override { return true; }

 private:
  model::BlockPipeline& chain_;
  int steps_ = 0;
  int attack_after_;
  std::function<void()> attack_;
};

// A one-token step and its tensor frame.
struct StepMessage {
  transport::Step step;
  transport::Payload tensor;
};
StepMessage MakeStep(const SessionId& id, int64_t start, Capability capability,
                     std::vector<uint8_t> sealed) {
  std::vector<float> x(kEmbd, 0.25f);
  auto encoded = transport::EncodeActivations(x, {kEmbd, 1}, {}).value();
  StepMessage m;
  m.step.session_id = id;
  m.step.start_position = start;
  m.step.n_tokens = 1;
  m.step.tensor = encoded.desc;
  m.step.capability = capability;
  m.step.sealed_route = std::move(sealed);
  m.tensor = encoded.bytes;
  return m;
}

// A DEALER that sends one message and expects PERMISSION_DENIED back, and nothing else ever.
class Intruder {
 public:
  Intruder(zmq::context_t& context, const std::string& address) {
    auto socket = DealerClient::Connect(context, address);
    EXPECT_TRUE(socket.ok()) << socket.status();
    if (socket.ok()) socket_ = std::move(*socket);
  }

  void ExpectDenied(const char* what, transport::Message body,
                    std::optional<transport::Payload> tensor = std::nullopt) {
    SCOPED_TRACE(what);
    const uint64_t id = next_id_++;
    // A step keeps the id it was given (a replayed one); others get the request's.
    if (auto* step = std::get_if<transport::Step>(&body); step && step->step_id == 0) {
      step->step_id = id;
    }
    auto wire = transport::EncodeMessage(id, std::move(body), std::move(tensor));
    ASSERT_TRUE(wire.ok()) << wire.status();
    ASSERT_TRUE(socket_->Send(*wire).ok());
    auto reply = socket_->Receive(std::chrono::seconds(30));
    ASSERT_TRUE(reply.ok()) << reply.status();
    auto decoded = transport::DecodeMessage(*reply);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(decoded->request_id, id);
    const auto* error = std::get_if<transport::ErrorReply>(&decoded->body);
    ASSERT_NE(error, nullptr) << "got " << transport::MessageName(decoded->body);
    EXPECT_EQ(error->code, absl::StatusCode::kPermissionDenied) << error->message;
    std::printf("refused %-45s %s\n", what, error->message.c_str());
    ++refused_;
  }
  void ExpectDenied(const char* what, StepMessage m) {
    ExpectDenied(what, std::move(m.step), std::move(m.tensor));
  }
  // Nothing queued for it: no output of the victim, no stray reply.
  bool Silent() { return !socket_->Receive(milliseconds(0)).ok(); }
  int refused() const { return refused_; }
  uint64_t next_id() const { return next_id_; }

 private:
  std::unique_ptr<DealerClient> socket_;
  uint64_t next_id_ =
      uint64_t{1} << 40;  // above the client's step ids, so freshness alone cannot refuse
  int refused_ = 0;
};

TEST(ChainHijackTest, SessionsBelongToTheirOpenerAndHopsLearnOnlyTheNextHop) {
  auto peers = StartPeers(kModel, {{0, 2}, {2, 4}, {4, 5}});
  ASSERT_EQ(peers.size(), 3u);
  for (const Peer& peer : peers) ASSERT_FALSE(peer.ready.address.empty());
  kernels::BackendOptions backend;
  auto client = shard::LocalModel::Load(kModel, backend, /*load_blocks=*/false);
  ASSERT_TRUE(client.ok()) << client.status();
  zmq::context_t zmq(1);
  RecordingProxy hop0(zmq, peers[0].ready.address);
  RecordingProxy hop2(zmq, peers[2].ready.address);
  std::vector<router::ChainHop> hops = HopsOf({&peers[0], &peers[1], &peers[2]});
  hops[0].address = hop0.address();
  hops[2].address = hop2.address();
  router::ChainOptions options;
  options.max_length = 1 + kReferenceTokens;
  auto chain = router::ChainSession::Open(zmq, hops, (*client)->config.n_layer,
                                          (*client)->config.n_embd, options);
  ASSERT_TRUE(chain.ok()) << chain.status();

  Intruder stranger(zmq, peers[1].ready.address);
  Intruder upstream(zmq, peers[1].ready.address);
  bool attacked = false;
  auto attack = [&] {
    attacked = true;
    // What hop 0 was told: its opening (its own capabilities) and the steps, whose layers it opens.
    const auto seen0 = hop0.records();
    const transport::OpenSession* open0 = nullptr;
    std::vector<const transport::Step*> steps0;
    for (const auto& r : seen0) {
      if (auto* o = std::get_if<transport::OpenSession>(&r.message.body)) open0 = o;
      if (auto* s = std::get_if<transport::Step>(&r.message.body)) steps0.push_back(s);
    }
    ASSERT_NE(open0, nullptr);
    ASSERT_GE(steps0.size(), 2u);
    const transport::OpenSession* open2 = nullptr;
    const auto seen2 = hop2.records();
    for (const auto& r : seen2) {
      if (auto* o = std::get_if<transport::OpenSession>(&r.message.body)) open2 = o;
    }
    ASSERT_NE(open2, nullptr);
    // Hop 2 is reached through its proxy: its address is the proxy's.
    const std::string hop2_address = hop2.address();

    // Hop 0's layers name hop 1 (its session and push capability), nothing further.
    std::optional<transport::RouteLayer> last_layer;
    for (const auto& r : seen0) {
      const auto* step = std::get_if<transport::Step>(&r.message.body);
      if (step == nullptr) continue;
      auto layer = transport::OpenRouteLayer(open0->capabilities.route_key, step->sealed_route);
      ASSERT_TRUE(layer.ok()) << layer.status();
      ASSERT_TRUE(layer->next.has_value());
      EXPECT_EQ(layer->next->address, peers[1].ready.address);
      auto plain = transport::EncodeRouteLayer(*layer).value();
      for (std::span<const uint8_t> bytes :
           {std::span<const uint8_t>(r.header), std::span<const uint8_t>(plain)}) {
        EXPECT_FALSE(Contains(bytes, open2->session_id));
        EXPECT_FALSE(Contains(bytes, open2->capabilities.push.bytes));
        EXPECT_FALSE(Contains(bytes, open2->capabilities.owner.bytes));
        EXPECT_FALSE(Contains(bytes, open2->capabilities.route_key.bytes));
        EXPECT_FALSE(ContainsText(bytes, hop2_address));
      }
      last_layer = *layer;
    }
    ASSERT_TRUE(last_layer.has_value());
    std::printf("a step's header at hop 0 of 3: %zu bytes, its sealed route %zu bytes\n",
                seen0.back().header.size(), steps0.back()->sealed_route.size());
    const transport::Hop hop1 = *last_layer->next;
    const int64_t position = (*chain)->position();

    // A stranger who knows hop 1's session id.
    transport::OpenSession again;
    again.session_id = hop1.session_id;
    again.first_block = peers[1].ready.first_block;
    again.last_block = peers[1].ready.last_block;
    again.max_length = static_cast<uint32_t>(options.max_length);
    again.output_codec = options.codec;
    again.hop_index = 1;
    again.capabilities = SessionCapabilities::Random();
    stranger.ExpectDenied("stranger opens it again", again);
    stranger.ExpectDenied("stranger closes it", transport::CloseSession{hop1.session_id, {}});
    stranger.ExpectDenied("stranger closes it with a made-up capability",
                          transport::CloseSession{hop1.session_id, Capability::Random()});
    stranger.ExpectDenied("stranger steps at position 0", MakeStep(hop1.session_id, 0, {}, {}));
    stranger.ExpectDenied("stranger steps at the next position",
                          MakeStep(hop1.session_id, position, Capability::Random(), {}));

    // Hop 0 (any holder of hop 1's push capability): roll back, replaying a layer the client
    // sealed for hop 1 or with one of its own; step without a layer; close; open again.
    upstream.ExpectDenied(
        "upstream rolls back with the client's last layer",
        MakeStep(hop1.session_id, 0, hop1.push_capability, last_layer->sealed_next));
    StepMessage replay = MakeStep(hop1.session_id, last_layer->start_position, hop1.push_capability,
                                  last_layer->sealed_next);
    replay.step.step_id = last_layer->step_id;
    upstream.ExpectDenied("upstream replays the client's last step", std::move(replay));
    const transport::SealingHop forged[] = {{{}, transport::RouteKey::Random()}};
    upstream.ExpectDenied(
        "upstream rolls back with a layer of its own",
        MakeStep(hop1.session_id, 0, hop1.push_capability,
                 transport::SealRoute(forged, {upstream.next_id(), 0, 1, true}).value()));
    upstream.ExpectDenied("upstream steps without the client's layer",
                          MakeStep(hop1.session_id, position, hop1.push_capability, {}));
    upstream.ExpectDenied("upstream closes it",
                          transport::CloseSession{hop1.session_id, hop1.push_capability});
    again.capabilities.owner = hop1.push_capability;
    upstream.ExpectDenied("upstream opens it again", again);
  };

  AttackingPipeline pipeline(**chain, /*attack_after=*/20, attack);
  auto generation = GenerateGreedy(**client, pipeline, kReferenceTokens);
  ASSERT_TRUE(generation.ok()) << generation.status();
  EXPECT_TRUE(attacked);
  EXPECT_EQ(stranger.refused() + upstream.refused(), 11);
  EXPECT_EQ(generation->text, ReadFile(kReferenceText));
  EXPECT_EQ((*chain)->failovers(), 0);
  // Neither intruder received anything but its refusals: no output of the client's session.
  EXPECT_TRUE(stranger.Silent());
  EXPECT_TRUE(upstream.Silent());
  chain->reset();
  for (Peer& peer : peers) EXPECT_EQ(StopPeer(peer), 0) << ReadFile(peer.log_path);
}

// Offers one spare peer for the blocks of the last hop, nothing else.
class SpareProvider : public router::HopProvider {
 public:
  explicit SpareProvider(router::ChainHop spare) : spare_(std::move(spare)) {}
  void ReportFailure(const router::ChainHop&) override {}
  void ReportSuccess(const router::ChainHop&) override {}
  absl::StatusOr<std::vector<router::ChainHop>> Replace(uint32_t first, uint32_t last) override {
    if (first != spare_.first_block || last != spare_.last_block || used_) {
      return absl::UnavailableError(absl::StrCat("no spare for blocks ", first, "..", last));
    }
    used_ = true;
    return std::vector<router::ChainHop>{spare_};
  }

 private:
  router::ChainHop spare_;
  bool used_ = false;
};

// The last hop dies mid-generation: the retried step reaches hop 1, which holds its positions
// already, from hop 0, as a push. The client's redo mark lets it through, once; the text is exact.
TEST(ChainHijackTest, FailoverRetryIsAcceptedByTheHopsBeforeTheFailedOne) {
  auto peers = StartPeers(kModel, {{0, 2}, {2, 4}, {4, 5}, {4, 5}});
  ASSERT_EQ(peers.size(), 4u);
  for (const Peer& peer : peers) ASSERT_FALSE(peer.ready.address.empty());
  kernels::BackendOptions backend;
  auto client = shard::LocalModel::Load(kModel, backend, /*load_blocks=*/false);
  ASSERT_TRUE(client.ok()) << client.status();
  zmq::context_t zmq(1);
  SpareProvider spare(HopsOf({&peers[3]})[0]);
  router::ChainOptions options;
  options.max_length = 1 + kReferenceTokens;
  auto chain = router::ChainSession::Open(zmq, HopsOf({&peers[0], &peers[1], &peers[2]}),
                                          (*client)->config.n_layer, (*client)->config.n_embd,
                                          options, &spare);
  ASSERT_TRUE(chain.ok()) << chain.status();
  AttackingPipeline pipeline(**chain, /*attack_after=*/30,
                             [&] { ASSERT_TRUE(peers[2].process->Signal(SIGKILL).ok()); });
  auto generation = GenerateGreedy(**client, pipeline, kReferenceTokens);
  ASSERT_TRUE(generation.ok()) << generation.status();
  EXPECT_EQ(generation->text, ReadFile(kReferenceText));
  ASSERT_EQ((*chain)->failovers(), 1);
  EXPECT_EQ((*chain)->failover_events()[0].hop, 2);
  EXPECT_EQ((*chain)->hops()[2].address, peers[3].ready.address);
  chain->reset();
  for (size_t i : {0, 1, 3}) EXPECT_EQ(StopPeer(peers[i]), 0) << ReadFile(peers[i].log_path);
}

}  // namespace
}  // namespace swarm::chain_test
