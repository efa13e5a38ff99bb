// Relays as real processes on loopback: peers that decide by dial-back that they are reachable
// relay for one forced to be unreachable (--reachability relayed), which serves through a relay's
// endpoint; generation through a chain that includes it is the reference text, killing its relay
// fails the client over and the peer re-announces through another relay. Prints the per-token
// latency through the relayed peer against a direct one.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/subprocess.h"
#include "model/generator.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "peer/local_swarm.h"
#include "registry/dht_registry.h"
#include "router/chain_session.h"
#include "router/swarm_hop_provider.h"
#include "shard/local_model.h"
#include "support/files.h"
#include "support/shared_model.h"

namespace swarm::swarm_test {
namespace {

using namespace std::chrono_literals;
const std::string& kModel = test_support::kSharedModel;
constexpr int kTokens = 200;

std::string ReferenceText() {
  std::string text = test_support::ReadFile(test_support::kSharedReferenceText);
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

peer::LocalSwarmOptions SwarmOptions() {
  return {
      .binary = SWARM_BINARY,
      .serve_args = {"-m", kModel, "--listen", "tcp://127.0.0.1:0", "--dht-bind", "127.0.0.1",
                     "--backend", "reference", "--announce-interval", "0.2", "--record-ttl", "3"},
      .log_dir = ::testing::TempDir(),
      .log_name = "swarm-relay-peer",
      .ready_timeout = 120s};
}

std::string Bootstrap(const peer::LocalPeer& peer) {
  return absl::StrCat("127.0.0.1:", peer.ready.dht_port);
}

struct Generation {
  absl::Status status;
  std::string text;
  int failovers = 0;
  std::vector<router::FailoverEvent> failover_events;
  double ms_per_token = 0;  // mean over the decode steps
};

class RelaySwarm : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    swarm_ = new peer::LocalSwarm(SwarmOptions());
    // a, b: reachable (a finds nobody to ask; b is dialed back by a), so they relay. d: direct,
    // relays nobody. h: forced unreachable, relayed by a or b.
    auto a = swarm_->Start({"--blocks", "0:2"});
    ASSERT_TRUE(a.ok()) << a.status();
    const std::string bootstrap = Bootstrap(**a);
    ASSERT_TRUE(
        swarm_
            ->StartAll({{"--blocks", "0:2", "--initial-peers", bootstrap},
                        {"--blocks", "2:5", "--initial-peers", bootstrap, "--relay-mbit", "0"}})
            .ok());
    auto h = swarm_->Start(
        {"--blocks", "2:5", "--initial-peers", bootstrap, "--reachability", "relayed"});
    ASSERT_TRUE(h.ok()) << h.status();
  }
  static void TearDownTestSuite() {
    delete swarm_;
    swarm_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(swarm_, nullptr);
    ASSERT_EQ(swarm_->size(), 4u);
    auto local = shard::LocalModel::Load(kModel, kernels::BackendOptions{.name = "reference"},
                                         /*load_blocks=*/false);
    ASSERT_TRUE(local.ok()) << local.status();
    model_ = std::move(*local);
    registry::DhtRegistryOptions options;
    options.bind_address = "127.0.0.1";
    options.initial_peers = {Bootstrap(swarm_->peer(0))};
    options.client_only = true;
    options.op_timeout = absl::Seconds(2);
    auto registry = registry::DhtRegistry::Create(options);
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = std::move(*registry);
  }

  peer::LocalPeer& a() { return swarm_->peer(0); }
  peer::LocalPeer& b() { return swarm_->peer(1); }
  peer::LocalPeer& d() { return swarm_->peer(2); }
  peer::LocalPeer& h() { return swarm_->peer(3); }

  // h's record as the DHT has it once `done` holds (or the last one seen).
  std::optional<registry::PeerRecord> RecordOf(
      const peer::LocalPeer& peer, const std::function<bool(const registry::PeerRecord&)>& done,
      std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::optional<registry::PeerRecord> last;
    while (std::chrono::steady_clock::now() < deadline) {
      auto snapshot = registry_->Snapshot(model_->config.model_id);
      if (snapshot.ok()) {
        for (const auto& r : *snapshot) {
          if (r.peer_id.ToHex() != peer.ready.peer_id) continue;
          last = r;
          if (done(r)) return last;
        }
      }
      std::this_thread::sleep_for(100ms);
    }
    return last;
  }

  // Greedy BOS-only generation through `hops` (failing over through the DHT); on_token after
  // each token.
  Generation Generate(
      std::vector<router::ChainHop> hops, const std::function<void(int)>& on_token = [](int) {}) {
    Generation result;
    const model::ModelConfig& config = model_->config;
    router::SwarmHopProviderOptions provider_options;
    provider_options.model_id = config.model_id;
    provider_options.n_blocks = config.n_layer;
    provider_options.cache_tokens_needed = kTokens + 1;
    provider_options.route_wait = absl::Seconds(20);
    router::SwarmHopProvider provider(*registry_, provider_options);
    router::ChainOptions options;
    options.max_length = kTokens + 1;
    options.min_step_timeout = 500ms;
    zmq::context_t context(1);
    auto session = router::ChainSession::Open(context, hops, config.n_layer, config.n_embd, options,
                                              &provider);
    if (!session.ok()) {
      result.status = session.status();
      return result;
    }
    const model::Tokenizer& tokenizer = *model_->tokenizer;
    model::SamplingParams params;
    params.temperature = 0;
    model::Sampler sampler(params);
    model::StreamingDecoder decoder(tokenizer, /*at_start=*/true);
    model::GenerateOptions generate_options;
    generate_options.max_new_tokens = kTokens;
    int step = 0;
    auto first = std::chrono::steady_clock::now();
    const std::vector<int32_t> prompt = {tokenizer.bos_id()};
    auto stats = model::Generate(prompt, generate_options, *model_->head, **session, sampler,
                                 tokenizer, [&](int32_t token) {
                                   if (step == 0) first = std::chrono::steady_clock::now();
                                   result.text += decoder.Push(token);
                                   on_token(++step);
                                   return true;
                                 });
    const auto last = std::chrono::steady_clock::now();
    result.text += decoder.Finish();
    result.status = stats.status();
    result.failovers = (*session)->failovers();
    result.failover_events = (*session)->failover_events();
    if (step > 1) {
      result.ms_per_token =
          std::chrono::duration<double, std::milli>(last - first).count() / (step - 1);
    }
    return result;
  }

  std::vector<router::ChainHop> Through(const peer::LocalPeer& first,
                                        const peer::LocalPeer& second) {
    return {{first.ready.address, 0, 2, first.ready.peer_id},
            {second.ready.address, 2, 5, second.ready.peer_id}};
  }

  static peer::LocalSwarm* swarm_;
  std::unique_ptr<shard::LocalModel> model_;
  std::unique_ptr<registry::DhtRegistry> registry_;
};
peer::LocalSwarm* RelaySwarm::swarm_ = nullptr;

TEST_F(RelaySwarm, ReachablePeersRelayAndTheUnreachableOneIsRelayed) {
  EXPECT_EQ(a().ready.reach, "public");
  EXPECT_EQ(b().ready.reach, "public");  // b was dialed back
  EXPECT_EQ(d().ready.reach, "public");
  EXPECT_FALSE(a().ready.relay_service.empty());
  EXPECT_EQ(h().ready.reach, "relayed");
  EXPECT_TRUE(h().ready.via == a().ready.peer_id || h().ready.via == b().ready.peer_id)
      << h().ready.Format();
  EXPECT_TRUE(h().ready.relay_service.empty());
  auto record = RecordOf(
      h(), [](const registry::PeerRecord& r) { return r.state == registry::PeerState::kOnline; },
      20s);
  ASSERT_TRUE(record.has_value());
  EXPECT_TRUE(record->relayed);
  EXPECT_EQ(record->relay_peer.ToHex(), h().ready.via);
  EXPECT_EQ(record->address, h().ready.address);
  EXPECT_TRUE(record->relay_address.empty());
  auto relay = RecordOf(
      a(), [](const registry::PeerRecord& r) { return r.relay_mbit > 0; }, 20s);
  ASSERT_TRUE(relay.has_value());
  EXPECT_EQ(relay->relay_address, a().ready.relay_service);
  auto direct = RecordOf(
      d(), [](const registry::PeerRecord& r) { return !r.relay_address.empty(); }, 20s);
  ASSERT_TRUE(direct.has_value());
  EXPECT_EQ(direct->relay_mbit, 0);  // --relay-mbit 0: answers dial-backs, relays nobody
}

TEST_F(RelaySwarm, GenerationThroughTheRelayedPeerIsTheReferenceText) {
  // Through h (pushed into through its relay, answering through it), then through d directly,
  // three times each, alternating: the figure is each one's median.
  std::vector<double> relayed_ms, direct_ms;
  for (int round = 0; round < 3; ++round) {
    Generation relayed = Generate(Through(a(), h()));
    ASSERT_TRUE(relayed.status.ok()) << relayed.status;
    EXPECT_EQ(relayed.failovers, 0);
    EXPECT_EQ(relayed.text, ReferenceText());
    Generation direct = Generate(Through(a(), d()));
    ASSERT_TRUE(direct.status.ok()) << direct.status;
    EXPECT_EQ(direct.text, ReferenceText());
    relayed_ms.push_back(relayed.ms_per_token);
    direct_ms.push_back(direct.ms_per_token);
  }
  std::sort(relayed_ms.begin(), relayed_ms.end());
  std::sort(direct_ms.begin(), direct_ms.end());
  std::printf(
      "relay cost on loopback: %.3f ms/token through a relayed last hop, %.3f ms/token direct "
      "(median of 3 x %d tokens, reference backend)\n",
      relayed_ms[1], direct_ms[1], kTokens);
}

TEST_F(RelaySwarm, KillingTheRelayFailsOverAndThePeerFindsAnotherRelay) {
  peer::LocalPeer& relay = h().ready.via == a().ready.peer_id ? a() : b();
  peer::LocalPeer& other = &relay == &a() ? b() : a();
  const std::string old_address = h().ready.address;
  // The chain enters through the surviving 0:2 peer and leaves through h; the relay dies at
  // step 20.
  Generation result = Generate(Through(other, h()), [&](int step) {
    if (step == 20) {
      ASSERT_TRUE(relay.process->Signal(SIGKILL).ok());
    }
  });
  ASSERT_TRUE(result.status.ok()) << result.status;
  EXPECT_GE(result.failovers, 1);
  for (const router::FailoverEvent& e : result.failover_events) {
    std::printf(
        "failover of hop %d (%s): detected after %.3f s; route %.3f s, open %.3f s, "
        "replay %.3f s, %d attempts\n",
        e.hop, e.reason.c_str(), e.detect_seconds, e.route_seconds, e.open_seconds,
        e.replay_seconds, e.attempts);
  }
  EXPECT_EQ(result.text, ReferenceText());
  // h re-announced through the other relay.
  auto record = RecordOf(
      h(),
      [&](const registry::PeerRecord& r) {
        return r.relayed && r.relay_peer.ToHex() == other.ready.peer_id;
      },
      30s);
  ASSERT_TRUE(record.has_value());
  ASSERT_EQ(record->relay_peer.ToHex(), other.ready.peer_id);
  EXPECT_NE(record->address, old_address);
  // And serves there.
  std::vector<router::ChainHop> hops = {{other.ready.address, 0, 2, other.ready.peer_id},
                                        {record->address, 2, 5, h().ready.peer_id}};
  Generation again = Generate(hops);
  ASSERT_TRUE(again.status.ok()) << again.status;
  EXPECT_EQ(again.failovers, 0);
  EXPECT_EQ(again.text, ReferenceText());
}

// One `swarm ...` run to its end: exit code, stdout and stderr.
struct SwarmRun {
  int code = -1;
  std::string out, err;
};
SwarmRun RunSwarm(std::vector<std::string> args) {
  SwarmRun run;
  const std::string err_path = absl::StrCat(::testing::TempDir(), "relay-run-", getpid(), ".err");
  args.insert(args.begin(), SWARM_BINARY);
  Subprocess::Options options;
  options.argv = std::move(args);
  options.stderr_path = err_path;
  auto process = Subprocess::Start(options);
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return run;
  auto out = (*process)->ReadAll(std::chrono::seconds(120));
  run.out = out.ok() ? *out : "";
  auto code = (*process)->Wait(std::chrono::seconds(30));
  run.code = code.ok() ? *code : -1;
  run.err = test_support::ReadFile(err_path);
  std::filesystem::remove(err_path);
  return run;
}

// A private swarm: the relay's endpoint for the relayed peer and its tunnel are CurveZMQ links of
// the swarm, so members generate the reference through it and a client without the secret is
// refused there.
TEST(PrivateRelayTest, RelayedPeerOfAPrivateSwarm) {
  const std::string secret = absl::StrCat(::testing::TempDir(), "relay-", getpid(), ".secret");
  SwarmRun made = RunSwarm({"secret", "-o", secret, "--force"});
  ASSERT_EQ(made.code, 0) << made.err;
  peer::LocalSwarmOptions options = SwarmOptions();
  options.serve_args.push_back("--swarm-secret");
  options.serve_args.push_back(secret);
  options.log_name = "swarm-private-relay-peer";
  peer::LocalSwarm swarm(options);
  auto head = swarm.Start({"--blocks", "0:2"});
  ASSERT_TRUE(head.ok()) << head.status();
  const std::string bootstrap = Bootstrap(**head);
  auto tail =
      swarm.Start({"--blocks", "2:5", "--initial-peers", bootstrap, "--reachability", "relayed"});
  ASSERT_TRUE(tail.ok()) << tail.status();
  EXPECT_EQ((*tail)->ready.reach, "relayed");
  EXPECT_EQ((*tail)->ready.via, (*head)->ready.peer_id);
  const std::string peers = absl::StrCat((*head)->ready.address, ",", (*tail)->ready.address);
  const std::vector<std::string> generate = {
      "generate", "-m", kModel, "--backend", "reference", "--dht-bind",   "127.0.0.1", "-p",
      "",         "-n", "200",  "--temp",    "0",         "--route-wait", "10"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = generate;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  SwarmRun member = RunSwarm(with({"--peers", peers, "--swarm-secret", secret}));
  EXPECT_EQ(member.code, 0) << member.err;
  EXPECT_EQ(member.out, ReferenceText() + "\n") << member.err;
  SwarmRun outsider = RunSwarm(with({"--peers", peers}));
  EXPECT_NE(outsider.code, 0) << outsider.out;
  std::filesystem::remove(secret);
}

}  // namespace
}  // namespace swarm::swarm_test
