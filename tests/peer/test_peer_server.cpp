// A real PeerServer in a thread on loopback TCP, serving a BlockStack over the stories260K model,
// driven by a DEALER the way a client drives it: Info, opening a session, steps whose hidden states
// equal the stack's own, closing, hostile or misdirected messages answered with errors while the
// server keeps serving, sessions that only their opener (and, for the next step, the upstream
// hop) may use, and Stop() ending Run() with the open sessions' clients told.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "base/status_macros.h"
#include "peer/peer_server.h"
#include "shard/local_model.h"
#include "transport/route_seal.h"
#include "transport/zmq_socket.h"

namespace swarm::peer {
namespace {

using namespace swarm::transport;

const char* kModel = SWARM_SHARED_DIR "/models/stories260K.gguf";
constexpr std::chrono::seconds kReplyTimeout{10};

class PeerServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kernels::BackendOptions backend;
    backend.name = "reference";
    auto m = shard::LocalModel::Load(kModel, backend);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
    n_embd_ = model_->config.n_embd;
    options_.peer_id = "test-peer";
    options_.model_id = model_->config.model_id;
    options_.limits.cache_tokens = 64;
    options_.limits.max_session_length = 32;
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Stop();
    if (run_.valid()) run_.wait();
  }

  // The server serves every block of the model; the test thread leaves the stack alone from here
  // on (one thread computes at a time).
  void StartServer() {
    auto server = PeerServer::Create(context_, *model_->blocks, options_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    run_ = std::async(std::launch::async, [server = server_.get()] { return server->Run(); });
    auto client = DealerClient::Connect(context_, server_->endpoint());
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }

  std::unique_ptr<DealerClient> Connect() {
    auto client = DealerClient::Connect(context_, server_->endpoint());
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  // On `via` (the test's client by default).
  absl::Status Send(uint64_t request_id, Message body, std::optional<Payload> tensor = {},
                    DealerClient* via = nullptr) {
    SWARM_ASSIGN_OR_RETURN(auto wire,
                           EncodeMessage(request_id, std::move(body), std::move(tensor)));
    return (via ? via : client_.get())->Send(wire);
  }
  absl::StatusOr<DecodedMessage> Receive(DealerClient* via = nullptr) {
    SWARM_ASSIGN_OR_RETURN(auto wire, (via ? via : client_.get())->Receive(kReplyTimeout));
    return DecodeMessage(wire);
  }
  absl::StatusOr<DecodedMessage> Call(uint64_t request_id, Message body,
                                      std::optional<Payload> tensor = {},
                                      DealerClient* via = nullptr) {
    SWARM_RETURN_IF_ERROR(Send(request_id, std::move(body), std::move(tensor), via));
    return Receive(via);
  }

  // Embeddings of tokens: [n_embd, tokens.size()].
  std::vector<float> Embed(const std::vector<int32_t>& tokens) {
    std::vector<float> x(static_cast<size_t>(n_embd_) * tokens.size());
    EXPECT_TRUE(model_->head->Embed(tokens, x.data()).ok());
    return x;
  }

  // Blocks [first, last) of the stack run directly on one new sequence, step after step.
  std::vector<std::vector<float>> RunDirectly(const std::vector<std::vector<float>>& inputs,
                                              int64_t first, int64_t last) {
    auto cache = model_->blocks->NewCache(options_.limits.max_session_length);
    EXPECT_TRUE(cache.ok()) << cache.status();
    std::vector<std::vector<float>> outputs;
    for (const std::vector<float>& input : inputs) {
      const shard::SequenceStep step{cache->get(), static_cast<int64_t>(input.size()) / n_embd_};
      std::vector<float> output(input.size());
      EXPECT_TRUE(
          model_->blocks->Forward({&step, 1}, first, last, input.data(), output.data()).ok());
      outputs.push_back(std::move(output));
    }
    return outputs;
  }

  // An opening with new capabilities for `id` (kept in caps_ for the steps and the close).
  OpenSession Opening(SessionId id, uint32_t first, uint32_t last, uint32_t max_length = 16) {
    OpenSession open;
    open.session_id = id;
    open.first_block = first;
    open.last_block = last;
    open.max_length = max_length;
    open.hop_index = 1;
    open.return_outputs = true;
    open.capabilities = SessionCapabilities::Random();
    caps_[id] = open.capabilities;
    return open;
  }

  // A step of `input` ([n_embd, n_tokens], f32) at `start` with no further hops, carrying
  // `capability` and `sealed_route`.
  absl::StatusOr<Step> MakeStep(SessionId id, uint64_t step_id, int64_t start,
                                const std::vector<float>& input, Capability capability,
                                std::vector<uint8_t> sealed_route, Payload* tensor) {
    const int32_t n_tokens = static_cast<int32_t>(input.size() / n_embd_);
    SWARM_ASSIGN_OR_RETURN(
        auto encoded,
        EncodeActivations(input, {static_cast<uint32_t>(n_embd_), static_cast<uint32_t>(n_tokens)},
                          Codec{}));
    Step step;
    step.session_id = id;
    step.step_id = step_id;
    step.start_position = start;
    step.n_tokens = n_tokens;
    step.tensor = encoded.desc;
    step.capability = capability;
    step.sealed_route = std::move(sealed_route);
    *tensor = encoded.bytes;
    return step;
  }

  // The session's owner runs a step (as the client does).
  absl::StatusOr<DecodedMessage> RunStep(SessionId id, uint64_t step_id, int64_t start,
                                         const std::vector<float>& input) {
    Payload tensor;
    SWARM_ASSIGN_OR_RETURN(Step step,
                           MakeStep(id, step_id, start, input, caps_[id].owner, {}, &tensor));
    return Call(step_id, std::move(step), tensor);
  }

  std::unique_ptr<shard::LocalModel> model_;
  int64_t n_embd_ = 0;
  PeerServerOptions options_;
  zmq::context_t context_{1};
  std::unique_ptr<PeerServer> server_;
  std::unique_ptr<DealerClient> client_;
  std::future<absl::Status> run_;
  absl::flat_hash_map<SessionId, SessionCapabilities> caps_;
};

absl::StatusCode ErrorCode(const DecodedMessage& message) {
  const auto* error = std::get_if<ErrorReply>(&message.body);
  return error == nullptr ? absl::StatusCode::kOk : error->code;
}

TEST_F(PeerServerTest, InfoDescribesThePeer) {
  StartServer();
  auto reply = Call(7, InfoRequest{});
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->request_id, 7u);
  const auto* info = std::get_if<InfoReply>(&reply->body);
  ASSERT_NE(info, nullptr) << MessageName(reply->body);
  EXPECT_EQ(info->peer_id, "test-peer");
  EXPECT_EQ(info->model_id, model_->config.model_id);
  EXPECT_EQ(info->first_block, 0u);
  EXPECT_EQ(info->last_block, static_cast<uint32_t>(model_->config.n_layer));
  EXPECT_EQ(info->backend, model_->blocks->devices());
  EXPECT_EQ(info->free_cache_tokens, 64u);
  EXPECT_EQ(info->max_session_length, 32u);
}

TEST_F(PeerServerTest, StepsEqualTheStackRunDirectly) {
  ASSERT_GE(model_->config.n_layer, 3);
  const std::vector<float> prompt = Embed({1, 42, 7});
  const std::vector<float> next = Embed({99});
  const auto expected = RunDirectly({prompt, next}, 1, 3);
  StartServer();

  const SessionId id = SessionId::Random();
  auto opened = Call(1, Opening(id, 1, 3));
  ASSERT_TRUE(opened.ok()) << opened.status();
  const auto* open_reply = std::get_if<OpenSessionReply>(&opened->body);
  ASSERT_NE(open_reply, nullptr) << MessageName(opened->body);
  EXPECT_TRUE(open_reply->accepted);
  EXPECT_EQ(open_reply->session_id, id);

  int64_t position = 0;
  uint64_t step_id = 10;
  for (size_t i = 0; i < 2; ++i) {
    const std::vector<float>& input = i == 0 ? prompt : next;
    auto reply = RunStep(id, step_id, position, input);
    ASSERT_TRUE(reply.ok()) << reply.status();
    const auto* output = std::get_if<StepOutput>(&reply->body);
    ASSERT_NE(output, nullptr) << MessageName(reply->body) << " "
                               << (std::holds_alternative<ErrorReply>(reply->body)
                                       ? std::get<ErrorReply>(reply->body).message
                                       : "");
    EXPECT_EQ(output->session_id, id);
    EXPECT_EQ(output->step_id, step_id);
    EXPECT_EQ(output->start_position, position);
    EXPECT_EQ(output->hop_index, 1u);  // the route given when opening
    EXPECT_EQ(output->first_block, 1u);
    EXPECT_EQ(output->last_block, 3u);
    auto hidden = DecodeActivations(*reply);
    ASSERT_TRUE(hidden.ok()) << hidden.status();
    EXPECT_EQ(*hidden, expected[i]) << "step " << i;
    position += static_cast<int64_t>(input.size()) / n_embd_;
    ++step_id;
  }

  auto closed = Call(2, CloseSession{id, caps_[id].owner});
  ASSERT_TRUE(closed.ok()) << closed.status();
  ASSERT_TRUE(std::holds_alternative<CloseSessionReply>(closed->body)) << MessageName(closed->body);
  // Closed: its steps are refused, and its tokens are free again.
  auto after = RunStep(id, step_id, position, next);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(ErrorCode(*after), absl::StatusCode::kNotFound);
  auto info = Call(3, InfoRequest{});
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_TRUE(std::holds_alternative<InfoReply>(info->body));
  EXPECT_EQ(std::get<InfoReply>(info->body).free_cache_tokens, 64u);
}

TEST_F(PeerServerTest, RefusesWhatItCannotServeAndKeepsServing) {
  StartServer();
  // Not a message at all.
  ASSERT_TRUE(client_->Send(WireMessage{Payload::Copy("this is no Cap'n Proto header"), {}}).ok());
  auto garbage = Receive();
  ASSERT_TRUE(garbage.ok()) << garbage.status();
  EXPECT_NE(ErrorCode(*garbage), absl::StatusCode::kOk) << MessageName(garbage->body);
  // A message a peer does not take.
  auto pong = Call(4, Pong{1, 2});
  ASSERT_TRUE(pong.ok()) << pong.status();
  EXPECT_EQ(ErrorCode(*pong), absl::StatusCode::kInvalidArgument);
  // Blocks it does not serve; more tokens than its budget; a session nobody opened.
  auto outside = Call(5, Opening(SessionId::Random(), 0, 99));
  ASSERT_TRUE(outside.ok()) << outside.status();
  EXPECT_EQ(ErrorCode(*outside), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(Call(6, Opening(SessionId::Random(), 0, 1, 32)).ok());
  ASSERT_TRUE(Call(7, Opening(SessionId::Random(), 0, 1, 32)).ok());
  auto over_budget = Call(8, Opening(SessionId::Random(), 0, 1, 32));
  ASSERT_TRUE(over_budget.ok()) << over_budget.status();
  EXPECT_EQ(ErrorCode(*over_budget), absl::StatusCode::kResourceExhausted);
  auto unknown = RunStep(SessionId::Random(), 9, 0, Embed({1}));
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_EQ(ErrorCode(*unknown), absl::StatusCode::kNotFound);

  auto ping = Call(10, Ping{123, 456});
  ASSERT_TRUE(ping.ok()) << ping.status();
  const auto* pong_reply = std::get_if<Pong>(&ping->body);
  ASSERT_NE(pong_reply, nullptr) << MessageName(ping->body);
  EXPECT_EQ(pong_reply->nonce, 123u);
}

// The session's client (client_) opened it as hop 1 of its chain; `upstream` plays hop 0, which
// learned the session's id and push capability from its route layer; `stranger` knows the id.
// Every forbidden move is refused with PERMISSION_DENIED to whoever made it and changes nothing:
// the client's outputs stay exactly the stack's, and the client hears of none of it.
TEST_F(PeerServerTest, SessionsBelongToTheirOpener) {
  ASSERT_GE(model_->config.n_layer, 3);
  const std::vector<float> prompt = Embed({1, 42, 7});
  const std::vector<float> next = Embed({99});
  const auto expected = RunDirectly({prompt, next}, 1, 3);
  StartServer();
  auto upstream = Connect();
  auto stranger = Connect();
  ASSERT_NE(upstream, nullptr);
  ASSERT_NE(stranger, nullptr);

  const SessionId id = SessionId::Random();
  const OpenSession opening = Opening(id, 1, 3);
  const SessionCapabilities caps = caps_[id];
  auto opened = Call(1, opening);
  ASSERT_TRUE(opened.ok()) << opened.status();
  ASSERT_TRUE(std::holds_alternative<OpenSessionReply>(opened->body)) << MessageName(opened->body);

  // The client seals this hop's layer of each step (a one-hop route: nothing follows).
  auto layer_for = [&](uint64_t step_id, int64_t start, const std::vector<float>& input, bool redo,
                       const RouteKey& key) {
    const int32_t n = static_cast<int32_t>(input.size() / n_embd_);
    return SealRoute(std::vector<SealingHop>{{Hop{}, key}}, {step_id, start, n, redo}).value();
  };
  auto push = [&](DealerClient* via, uint64_t step_id, int64_t start,
                  const std::vector<float>& input, Capability capability,
                  std::vector<uint8_t> layer) -> absl::Status {
    Payload tensor;
    SWARM_ASSIGN_OR_RETURN(
        Step step, MakeStep(id, step_id, start, input, capability, std::move(layer), &tensor));
    return Send(step_id, std::move(step), tensor, via);
  };
  // What `via` got back: an error whose code the caller checks.
  auto refused = [&](DealerClient* via, const char* what) {
    auto reply = Receive(via);
    ASSERT_TRUE(reply.ok()) << what << ": " << reply.status();
    const auto* error = std::get_if<ErrorReply>(&reply->body);
    ASSERT_NE(error, nullptr) << what << ": got " << MessageName(reply->body);
    EXPECT_EQ(error->code, absl::StatusCode::kPermissionDenied) << what << ": " << error->message;
    EXPECT_FALSE(error->message.empty());
  };
  // The client's next message is this step's output, equal to the stack's.
  auto output_is = [&](uint64_t step_id, int64_t start, const std::vector<float>& want) {
    auto reply = Receive();
    ASSERT_TRUE(reply.ok()) << reply.status();
    const auto* output = std::get_if<StepOutput>(&reply->body);
    ASSERT_NE(output, nullptr) << MessageName(reply->body) << " "
                               << (std::holds_alternative<ErrorReply>(reply->body)
                                       ? std::get<ErrorReply>(reply->body).message
                                       : "");
    EXPECT_EQ(output->step_id, step_id);
    EXPECT_EQ(output->start_position, start);
    auto hidden = DecodeActivations(*reply);
    ASSERT_TRUE(hidden.ok()) << hidden.status();
    EXPECT_EQ(*hidden, want);
  };

  // The upstream hop delivers step 1 with the push capability and the client's layer; the output
  // goes to the client, not to the hop.
  const auto layer1 = layer_for(1, 0, prompt, false, caps.route_key);
  ASSERT_TRUE(push(upstream.get(), 1, 0, prompt, caps.push, layer1).ok());
  output_is(1, 0, expected[0]);

  // A stranger who knows the id: open it again (with capabilities of its own), close it, step at
  // position 0 (a rollback) and at the next position, with no capability or a made-up one, or
  // the push capability of another session.
  {
    OpenSession again = opening;
    again.capabilities = SessionCapabilities::Random();
    ASSERT_TRUE(Send(20, again, {}, stranger.get()).ok());
    refused(stranger.get(), "open again");
    ASSERT_TRUE(Send(21, CloseSession{id, {}}, {}, stranger.get()).ok());
    refused(stranger.get(), "close without a capability");
    ASSERT_TRUE(Send(22, CloseSession{id, Capability::Random()}, {}, stranger.get()).ok());
    refused(stranger.get(), "close with a made-up capability");
    ASSERT_TRUE(push(stranger.get(), 23, 0, prompt, {}, {}).ok());
    refused(stranger.get(), "step at 0 without a capability");
    ASSERT_TRUE(push(stranger.get(), 24, 3, next, Capability::Random(), {}).ok());
    refused(stranger.get(), "step at the next position with a made-up capability");
    ASSERT_TRUE(push(stranger.get(), 25, 3, next, Capability::Random(),
                     layer_for(25, 3, next, false, caps.route_key))
                    .ok());
    refused(stranger.get(), "step with a made-up capability and a good layer");
  }
  // The upstream hop: roll back (replaying step 1's layer, or a layer of its own making, or
  // step 1's layer on another step), step without the client's layer, close, open again.
  {
    ASSERT_TRUE(push(upstream.get(), 1, 0, prompt, caps.push, layer1).ok());
    refused(upstream.get(), "step 1 delivered again");
    ASSERT_TRUE(push(upstream.get(), 30, 0, prompt, caps.push,
                     layer_for(30, 0, prompt, true, RouteKey::Random()))
                    .ok());
    refused(upstream.get(), "rollback with a forged layer");
    ASSERT_TRUE(push(upstream.get(), 31, 0, prompt, caps.push, layer1).ok());
    refused(upstream.get(), "rollback with step 1's layer");
    ASSERT_TRUE(push(upstream.get(), 32, 3, next, caps.push, {}).ok());
    refused(upstream.get(), "next step without the client's layer");
    ASSERT_TRUE(Send(33, CloseSession{id, caps.push}, {}, upstream.get()).ok());
    refused(upstream.get(), "close with the push capability");
    OpenSession again = opening;
    again.capabilities.owner = caps.push;
    ASSERT_TRUE(Send(34, again, {}, upstream.get()).ok());
    refused(upstream.get(), "open again with the push capability");
  }

  // Nothing changed: the next step, delivered as the client sealed it, continues from position 3
  // with the outputs the stack gives, and it is the first thing the client hears since step 1.
  ASSERT_TRUE(
      push(upstream.get(), 2, 3, next, caps.push, layer_for(2, 3, next, false, caps.route_key))
          .ok());
  output_is(2, 3, expected[1]);

  // A retry after a failover redoes positions: only where the client marked its layer a redo may
  // a pushed step start below the session's position (without: refused, to the client).
  ASSERT_TRUE(
      push(upstream.get(), 3, 3, next, caps.push, layer_for(3, 3, next, false, caps.route_key))
          .ok());
  {
    auto reply = Receive();
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(ErrorCode(*reply), absl::StatusCode::kPermissionDenied) << MessageName(reply->body);
  }
  ASSERT_TRUE(
      push(upstream.get(), 4, 3, next, caps.push, layer_for(4, 3, next, true, caps.route_key))
          .ok());
  output_is(4, 3, expected[1]);
  // The client itself may roll back to any position it holds.
  auto rolled = RunStep(id, 5, 0, prompt);
  ASSERT_TRUE(rolled.ok()) << rolled.status();
  ASSERT_TRUE(std::holds_alternative<StepOutput>(rolled->body)) << MessageName(rolled->body);
  EXPECT_EQ(DecodeActivations(*rolled).value(), expected[0]);

  // Neither intruder got anything but its refusals.
  EXPECT_FALSE(stranger->Receive(std::chrono::milliseconds(0)).ok());
  EXPECT_FALSE(upstream->Receive(std::chrono::milliseconds(0)).ok());
  auto closed = Call(6, CloseSession{id, caps.owner});
  ASSERT_TRUE(closed.ok()) << closed.status();
  EXPECT_TRUE(std::holds_alternative<CloseSessionReply>(closed->body)) << MessageName(closed->body);
}

TEST_F(PeerServerTest, StopEndsRunAndTellsTheOpenSessions) {
  StartServer();
  const SessionId id = SessionId::Random();
  auto opened = Call(1, Opening(id, 0, 2));
  ASSERT_TRUE(opened.ok()) << opened.status();
  ASSERT_TRUE(std::holds_alternative<OpenSessionReply>(opened->body));

  server_->Stop();
  ASSERT_EQ(run_.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(run_.get().ok());
  auto goodbye = Receive();
  ASSERT_TRUE(goodbye.ok()) << goodbye.status();
  const auto* error = std::get_if<ErrorReply>(&goodbye->body);
  ASSERT_NE(error, nullptr) << MessageName(goodbye->body);
  EXPECT_EQ(error->code, absl::StatusCode::kUnavailable);
  EXPECT_EQ(error->session_id, id);
  EXPECT_EQ(server_->stats().errors_sent, 1);
}

}  // namespace
}  // namespace swarm::peer
