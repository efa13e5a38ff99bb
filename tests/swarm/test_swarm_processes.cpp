// The swarm as real processes on loopback: `swarm serve` peers (SWARM_BINARY) on one DHT, and a
// client that routes through the DHT records. Peers are killed (SIGKILL), frozen (SIGSTOP) or
// stopped (SIGTERM) mid-generation, and the greedy text must still be exactly the reference.
// The six-peer swarm is shared by the tests of one suite (dead peers are restarted before each).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/subprocess.h"
#include "model/generator.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "peer/local_swarm.h"
#include "registry/dht_registry.h"
#include "router/chain_session.h"
#include "router/route_builder.h"
#include "router/swarm_hop_provider.h"
#include "shard/local_model.h"
#include "support/files.h"
#include "support/shared_model.h"

namespace swarm::swarm_test {
namespace {

const std::string& kModel = test_support::kSharedModel;
const std::string& kReferencePath = test_support::kSharedReferenceText;
constexpr int kTokens = 200;
constexpr auto kStartTimeout = std::chrono::seconds(120);

using test_support::ReadFile;

// The reference file is `swarm generate`'s stdout: the text and a trailing newline.
std::string ReferenceText() {
  std::string text = ReadFile(kReferencePath);
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

// Seeded, printed, overridable (SWARM_TEST_SEED) so a failing draw can be replayed.
uint32_t TestSeed() {
  uint32_t seed = 20261122;
  if (const char* env = std::getenv("SWARM_TEST_SEED")) (void)absl::SimpleAtoi(env, &seed);
  return seed;
}

// One `swarm serve` process and what its ready line said.
using Peer = peer::LocalPeer;

std::vector<std::string> CommonServeArgs() {
  return {"-m",           kModel,      "--listen",  "tcp://127.0.0.1:0",   "--dht-bind",
          "127.0.0.1",    "--backend", "reference", "--announce-interval", "0.2",
          "--record-ttl", "3"};
}

peer::LocalSwarmOptions SwarmOptions() {
  return {.binary = SWARM_BINARY,
          .serve_args = CommonServeArgs(),
          .log_dir = ::testing::TempDir(),
          .log_name = "swarm-peer",
          .ready_timeout = kStartTimeout};
}

// Starts `swarm serve` with `args` (after the common ones); ReadListening() finishes the start.
Peer& Launch(peer::LocalSwarm& swarm, std::vector<std::string> args) {
  auto peer = swarm.Launch(std::move(args));
  EXPECT_TRUE(peer.ok()) << peer.status();
  return peer.ok() ? **peer : swarm.peers().back();
}

// Waits for the peer's ready line.
void ReadListening(peer::LocalSwarm& swarm, Peer& peer) {
  const absl::Status status = swarm.WaitReady(peer);
  ASSERT_TRUE(status.ok()) << status;
}

std::string Bootstrap(const Peer& peer) { return absl::StrCat("127.0.0.1:", peer.ready.dht_port); }

std::unique_ptr<registry::DhtRegistry> ClientRegistry(const std::string& bootstrap) {
  registry::DhtRegistryOptions options;
  options.bind_address = "127.0.0.1";
  options.initial_peers = {bootstrap};
  options.client_only = true;
  options.op_timeout = absl::Seconds(2);
  auto registry = registry::DhtRegistry::Create(options);
  EXPECT_TRUE(registry.ok()) << registry.status();
  return registry.ok() ? std::move(*registry) : nullptr;
}

// Polls the registry until `done(snapshot)` or the deadline; the last snapshot.
registry::RegistrySnapshot WaitForSnapshot(
    registry::DhtRegistry& registry, const std::string& model_id,
    const std::function<bool(const registry::RegistrySnapshot&)>& done,
    std::chrono::seconds timeout = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  registry::RegistrySnapshot last;
  while (true) {
    auto snapshot = registry.Snapshot(model_id);
    if (snapshot.ok()) {
      last = *snapshot;
      if (done(last)) return last;
    }
    if (std::chrono::steady_clock::now() > deadline) return last;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

bool Online(const registry::PeerRecord& r) { return r.state == registry::PeerState::kOnline; }

// Every block of [0, n_blocks) served by at least `replicas` online records.
bool Covered(const registry::RegistrySnapshot& s, int64_t n_blocks, int replicas = 1) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    int n = 0;
    for (const auto& r : s) n += Online(r) && r.blocks.Contains(b);
    if (n < replicas) return false;
  }
  return true;
}

std::string Describe(const registry::RegistrySnapshot& s) {
  std::string out;
  for (const auto& r : s) {
    absl::StrAppend(&out, r.peer_id.ShortHex(), " ", r.address, " ", r.blocks.first, ":",
                    r.blocks.last, " ", std::string(registry::PeerStateName(r.state)), "\n");
  }
  return out;
}

// The in-process client: head + tokenizer locally, blocks through the swarm.
struct GenerationResult {
  absl::Status status;
  std::string text;
  int failovers = 0;
  double failover_seconds = 0;
  std::vector<router::ChainHop> initial_route;  // as the provider first chose it
};

class SwarmClient {
 public:
  explicit SwarmClient(const std::string& bootstrap) {
    auto local = shard::LocalModel::Load(kModel, kernels::BackendOptions{.name = "reference"},
                                         /*load_blocks=*/false);
    EXPECT_TRUE(local.ok()) << local.status();
    if (!local.ok()) return;
    model_ = std::move(*local);
    registry_ = ClientRegistry(bootstrap);
  }
  bool ok() const { return model_ != nullptr && registry_ != nullptr; }
  const shard::LocalModel& model() const { return *model_; }
  registry::DhtRegistry& registry() { return *registry_; }

  // Greedy BOS-only generation; on_token(step, session) runs after each sampled token
  // (step counts from 1).
  GenerationResult Generate(const std::function<void(int, router::ChainSession&)>& on_token,
                            std::chrono::milliseconds min_step_timeout) {
    GenerationResult result;
    const model::ModelConfig& config = model_->config;
    router::SwarmHopProviderOptions provider_options;
    provider_options.model_id = config.model_id;
    provider_options.n_blocks = config.n_layer;
    provider_options.cache_tokens_needed = kTokens + 1;
    provider_options.route_wait = absl::Seconds(20);
    router::SwarmHopProvider provider(*registry_, provider_options);
    auto hops = provider.InitialRoute();
    if (!hops.ok()) {
      result.status = hops.status();
      return result;
    }
    result.initial_route = *hops;
    router::ChainOptions options;
    options.max_length = kTokens + 1;
    options.min_step_timeout = min_step_timeout;
    zmq::context_t context(1);
    auto session = router::ChainSession::Open(context, *hops, config.n_layer, config.n_embd,
                                              options, &provider);
    if (!session.ok()) {
      result.status = session.status();
      return result;
    }
    const model::Tokenizer& tokenizer = *model_->tokenizer;
    std::vector<int32_t> prompt = {tokenizer.bos_id()};
    model::SamplingParams params;
    params.temperature = 0;
    model::Sampler sampler(params);
    model::StreamingDecoder decoder(tokenizer, /*at_start=*/true);
    model::GenerateOptions generate_options;
    generate_options.max_new_tokens = kTokens;
    int step = 0;
    auto last_token_at = std::chrono::steady_clock::now();
    auto stats = model::Generate(
        prompt, generate_options, *model_->head, **session, sampler, tokenizer, [&](int32_t token) {
          // Slow steps (a failover) are printed: recovery time.
          const auto now = std::chrono::steady_clock::now();
          const double ms = std::chrono::duration<double, std::milli>(now - last_token_at).count();
          if (step > 0 && ms > 100) {
            std::printf("step %d took %.0f ms\n", step + 1, ms);
          }
          result.text += decoder.Push(token);
          on_token(++step, **session);
          last_token_at = std::chrono::steady_clock::now();
          return true;
        });
    result.text += decoder.Finish();
    result.status = stats.status();
    result.failovers = (*session)->failovers();
    result.failover_seconds = (*session)->failover_seconds();
    std::printf("%d failovers, %.2f s replacing hops\n", result.failovers, result.failover_seconds);
    return result;
  }

 private:
  std::unique_ptr<shard::LocalModel> model_;
  std::unique_ptr<registry::DhtRegistry> registry_;
};

// Six peers, two replicas of every span of stories260K's five blocks.
class SixPeerSwarm : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    swarm_ = new peer::LocalSwarm(SwarmOptions());
    const char* ranges[] = {"0:2", "0:2", "2:4", "2:4", "4:5", "4:5"};
    Peer& first = Launch(*swarm_, {"--blocks", ranges[0]});
    ReadListening(*swarm_, first);
    for (size_t i = 1; i < std::size(ranges); ++i) {
      Launch(*swarm_, {"--blocks", ranges[i], "--initial-peers", Bootstrap(first)});
    }
    for (size_t i = 1; i < swarm_->size(); ++i) ReadListening(*swarm_, swarm_->peer(i));
  }
  static void TearDownTestSuite() {
    delete swarm_;  // kills and reaps what is left
    swarm_ = nullptr;
  }

  // Restarts peers an earlier test killed (bootstrapping from a live one), then waits until the
  // client sees two online replicas of every block.
  void SetUp() override {
    ASSERT_NE(swarm_, nullptr);
    const Peer* live = nullptr;
    for (const Peer& p : swarm_->peers()) {
      if (p.alive() && p.ready.dht_port != 0) live = &p;
    }
    ASSERT_NE(live, nullptr);
    const std::string bootstrap = Bootstrap(*live);
    std::vector<Peer*> restarted;
    for (Peer& p : swarm_->peers()) {
      if (p.alive()) continue;
      // SIGKILL (a frozen one too), then the same blocks again.
      const absl::Status relaunched =
          swarm_->Relaunch(p, {"--blocks", p.ready.Blocks(), "--initial-peers", bootstrap});
      EXPECT_TRUE(relaunched.ok()) << relaunched;
      restarted.push_back(&p);
    }
    for (Peer* p : restarted) ReadListening(*swarm_, *p);
    client_ = std::make_unique<SwarmClient>(bootstrap);
    ASSERT_TRUE(client_->ok());
    // Records of peers that died stay until their TTL; count only the live peers' ids.
    const int64_t n_blocks = client_->model().config.n_layer;
    auto snapshot =
        WaitForSnapshot(*registry(), client_->model().config.model_id, [&](const auto& s) {
          registry::RegistrySnapshot live_records;
          for (const auto& r : s) {
            for (const Peer& p : swarm_->peers()) {
              if (p.alive() && r.peer_id.ToHex() == p.ready.peer_id) live_records.push_back(r);
            }
          }
          return Covered(live_records, n_blocks, 2);
        });
    ASSERT_GE(snapshot.size(), 6u) << Describe(snapshot);
  }

  registry::DhtRegistry* registry() { return &client_->registry(); }

  Peer* PeerAt(const std::string& address) {
    for (Peer& p : swarm_->peers()) {
      if (p.ready.address == address) return &p;
    }
    return nullptr;
  }

  static peer::LocalSwarm* swarm_;
  std::unique_ptr<SwarmClient> client_;
};
peer::LocalSwarm* SixPeerSwarm::swarm_ = nullptr;

// Kills (or freezes) the peer behind a random hop of the current route at each chosen step; the
// spans of earlier victims are avoided so the swarm always keeps a replica of every block.
struct Fault {
  int step;
  int signal;
};

class FaultInjector {
 public:
  FaultInjector(std::deque<Peer>& peers, std::vector<Fault> faults, uint32_t seed)
      : peers_(peers), faults_(std::move(faults)), rng_(seed) {}

  void operator()(int step, router::ChainSession& session) {
    for (const Fault& fault : faults_) {
      if (fault.step != step) continue;
      std::vector<Peer*> candidates;
      for (const router::ChainHop& hop : session.hops()) {
        for (Peer& p : peers_) {
          if (p.ready.address != hop.address || !p.alive()) continue;
          bool span_hit = false;
          for (const Peer* v : victims_) span_hit |= v->ready.Blocks() == p.ready.Blocks();
          if (!span_hit) candidates.push_back(&p);
        }
      }
      ASSERT_FALSE(candidates.empty()) << "no peer of the route to hit at step " << step;
      Peer* victim =
          candidates[std::uniform_int_distribution<size_t>(0, candidates.size() - 1)(rng_)];
      std::printf("step %d: signal %d to peer %s (blocks %s, pid %d)\n", step, fault.signal,
                  victim->ready.address.c_str(), victim->ready.Blocks().c_str(),
                  victim->process->pid());
      ASSERT_TRUE(victim->process->Signal(fault.signal).ok());
      victims_.push_back(victim);
      hit_.push_back({victim, fault.signal});
    }
  }

  // SIGCONT for frozen victims, then SIGKILL for all (SetUp restarts them).
  void Cleanup() {
    for (auto& [peer, signal] : hit_) {
      if (signal == SIGSTOP) (void)peer->process->Signal(SIGCONT);
      (void)peer->process->Signal(SIGKILL);
      (void)peer->process->Wait(std::chrono::seconds(30));
    }
  }
  size_t hits() const { return hit_.size(); }

 private:
  std::deque<Peer>& peers_;
  std::vector<Fault> faults_;
  std::mt19937 rng_;
  std::vector<Peer*> victims_;
  std::vector<std::pair<Peer*, int>> hit_;
};

void RunWithFaults(SwarmClient& client, std::deque<Peer>& peers, std::vector<int> signals,
                   std::chrono::milliseconds min_step_timeout) {
  const uint32_t seed = TestSeed();
  std::mt19937 rng(seed);
  std::vector<Fault> faults;
  // Steps spread over the run, strictly increasing, never the very last token.
  int lo = 2;
  for (size_t i = 0; i < signals.size(); ++i) {
    const int hi = static_cast<int>((i + 1) * (kTokens - 10) / signals.size());
    const int step = std::uniform_int_distribution<int>(lo, hi)(rng);
    faults.push_back({step, signals[i]});
    lo = step + 1;
  }
  std::printf("seed %u (SWARM_TEST_SEED to replay):", seed);
  for (const Fault& f : faults) std::printf(" signal %d at step %d;", f.signal, f.step);
  std::printf("\n");
  FaultInjector injector(peers, faults, seed);
  GenerationResult result = client.Generate(std::ref(injector), min_step_timeout);
  injector.Cleanup();
  ASSERT_TRUE(result.status.ok()) << result.status;
  EXPECT_EQ(injector.hits(), signals.size());
  EXPECT_GE(result.failovers, static_cast<int>(signals.size()));
  EXPECT_EQ(result.text, ReferenceText());
}

TEST_F(SixPeerSwarm, NoFaultGivesTheReferenceText) {
  GenerationResult result =
      client_->Generate([](int, router::ChainSession&) {}, std::chrono::milliseconds(2000));
  ASSERT_TRUE(result.status.ok()) << result.status;
  EXPECT_EQ(result.failovers, 0);
  EXPECT_EQ(result.text, ReferenceText());
}

TEST_F(SixPeerSwarm, PeerKilledMidGenerationIsReplaced) {
  RunWithFaults(*client_, swarm_->peers(), {SIGKILL}, std::chrono::milliseconds(500));
}

TEST_F(SixPeerSwarm, PeerFrozenMidGenerationIsReplaced) {
  RunWithFaults(*client_, swarm_->peers(), {SIGSTOP}, std::chrono::milliseconds(500));
}

TEST_F(SixPeerSwarm, TwoSuccessiveFailuresAreSurvived) {
  RunWithFaults(*client_, swarm_->peers(), {SIGKILL, SIGKILL}, std::chrono::milliseconds(500));
}

// A record that lies: a DHT identity of the test's own announces another peer's address with a
// wider block range than that peer serves. The peer refuses the blocks it does not hold at
// OpenSession; the client bans the liar's id and still produces the reference text.
TEST_F(SixPeerSwarm, LyingRecordIsRefusedAndBanned) {
  Peer* honest = nullptr;
  for (Peer& p : swarm_->peers()) {
    if (p.alive() && p.ready.Blocks() == "0:2") honest = &p;
  }
  ASSERT_NE(honest, nullptr);
  registry::DhtRegistryOptions options;
  options.bind_address = "127.0.0.1";
  options.initial_peers = {Bootstrap(*honest)};
  options.key_bits = 1024;
  options.record_ttl = absl::Seconds(3);
  options.refresh_interval = absl::Milliseconds(200);
  auto liar = registry::DhtRegistry::Create(options);
  ASSERT_TRUE(liar.ok()) << liar.status();
  registry::PeerRecord record;
  record.address = honest->ready.address;
  record.model_id = client_->model().config.model_id;
  record.blocks = {0, static_cast<int32_t>(client_->model().config.n_layer)};
  record.state = registry::PeerState::kOnline;
  // Far faster than anyone else, so the route builder prefers the one-hop lie.
  record.decode_tps_per_block = 1e6;
  record.prompt_tps_per_block = 1e6;
  record.network_tps = 1e6;
  record.free_cache_tokens = 1 << 20;
  record.total_cache_tokens = 1 << 20;
  absl::Status announced = (*liar)->Announce(record);
  ASSERT_TRUE(announced.ok() || absl::IsUnavailable(announced)) << announced;
  const registry::PeerId liar_id = (*liar)->peer_id();
  auto snapshot = WaitForSnapshot(*registry(), record.model_id, [&](const auto& s) {
    for (const auto& r : s) {
      if (r.peer_id == liar_id) return true;
    }
    return false;
  });
  bool seen = false;
  for (const auto& r : snapshot) seen |= r.peer_id == liar_id;
  ASSERT_TRUE(seen) << Describe(snapshot);

  GenerationResult result =
      client_->Generate([](int, router::ChainSession&) {}, std::chrono::milliseconds(2000));
  ASSERT_TRUE(result.status.ok()) << result.status;
  EXPECT_EQ(result.text, ReferenceText());
  // The lie was on the route the client first chose (else this test proves nothing).
  bool lie_routed = false;
  for (const router::ChainHop& hop : result.initial_route) {
    lie_routed |= hop.peer_id == liar_id.ToHex();
  }
  EXPECT_TRUE(lie_routed) << Describe(snapshot);
  (void)(*liar)->Withdraw();
}

// Fewer blocks served than the model has: `swarm generate` gives up after --route-wait with a
// message naming the missing blocks.
TEST(SwarmCoverage, ClientNamesMissingBlocks) {
  peer::LocalSwarm swarm(SwarmOptions());
  Peer& peer = Launch(swarm, {"--blocks", "0:2"});
  ReadListening(swarm, peer);
  const std::string err_path =
      absl::StrCat(::testing::TempDir(), "swarm-generate-", ::getpid(), ".err");
  Subprocess::Options options;
  options.argv = {SWARM_BINARY,
                  "generate",
                  "-m",
                  kModel,
                  "--initial-peers",
                  Bootstrap(peer),
                  "--dht-bind",
                  "127.0.0.1",
                  "--route-wait",
                  "1",
                  "-p",
                  "",
                  "-n",
                  "20",
                  "--temp",
                  "0"};
  options.stderr_path = err_path;
  auto client = Subprocess::Start(options);
  ASSERT_TRUE(client.ok()) << client.status();
  (void)(*client)->ReadAll(std::chrono::seconds(120));
  auto code = (*client)->Wait(std::chrono::seconds(60));
  ASSERT_TRUE(code.ok()) << code.status();
  const std::string err = ReadFile(err_path);
  EXPECT_NE(*code, 0) << err;
  EXPECT_NE(err.find("no online peer serves blocks 2"), std::string::npos) << err;
  std::filesystem::remove(err_path);
}

// Peers that choose their own blocks (--num-blocks 2), started one at a time, cover the model;
// when a block's only server leaves, another peer moves to cover it.
TEST(SwarmPlacement, PeersCoverEveryBlockAndMoveToCoverALeaver) {
  auto local = shard::LocalModel::Load(kModel, kernels::BackendOptions{.name = "reference"},
                                       /*load_blocks=*/false);
  ASSERT_TRUE(local.ok()) << local.status();
  const int64_t n_blocks = (*local)->config.n_layer;
  const std::string model_id = (*local)->config.model_id;
  peer::LocalSwarm swarm(SwarmOptions());
  std::deque<Peer>& peers = swarm.peers();
  std::unique_ptr<registry::DhtRegistry> registry;
  const std::vector<std::string> placement = {"--num-blocks", "2", "--rebalance-interval", "0.5"};
  for (size_t i = 0; i < 4; ++i) {
    std::vector<std::string> args = placement;
    if (i > 0) {
      args.push_back("--initial-peers");
      args.push_back(Bootstrap(peers[0]));
    }
    ReadListening(swarm, Launch(swarm, args));
    if (registry == nullptr) registry = ClientRegistry(Bootstrap(peers[0]));
    ASSERT_NE(registry, nullptr);
    // The next peer starts once this one's record is visible, so it sees where the gaps are.
    const std::string id = peers[i].ready.peer_id;
    auto s = WaitForSnapshot(*registry, model_id, [&](const auto& snap) {
      for (const auto& r : snap) {
        if (r.peer_id.ToHex() == id && Online(r)) return true;
      }
      return false;
    });
    std::printf("after peer %zu (%s):\n%s", i, peers[i].ready.Blocks().c_str(),
                Describe(s).c_str());
  }
  auto s = WaitForSnapshot(*registry, model_id,
                           [&](const auto& snap) { return Covered(snap, n_blocks); });
  ASSERT_TRUE(Covered(s, n_blocks)) << Describe(s);

  // A peer that is the only server of some block (one exists: 4 peers x 2 blocks over 5 blocks
  // leave at most 3 blocks doubly served). Prefer one that is not the bootstrap node.
  Peer* leaver = nullptr;
  for (size_t i = peers.size(); i-- > 0 && leaver == nullptr;) {
    for (const auto& r : s) {
      if (r.peer_id.ToHex() != peers[i].ready.peer_id) continue;
      for (int32_t b = r.blocks.first; b < r.blocks.last; ++b) {
        int n = 0;
        for (const auto& o : s) n += Online(o) && o.blocks.Contains(b);
        if (n == 1) leaver = &peers[i];
      }
    }
  }
  ASSERT_NE(leaver, nullptr) << Describe(s);
  std::printf("stopping %s (blocks %s)\n", leaver->ready.peer_id.c_str(),
              leaver->ready.Blocks().c_str());
  ASSERT_TRUE(leaver->process->Signal(SIGTERM).ok());
  auto code = leaver->process->Wait(std::chrono::seconds(60));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << ReadFile(leaver->log_path);
  const std::string gone = leaver->ready.peer_id;
  s = WaitForSnapshot(
      *registry, model_id,
      [&](const auto& snap) {
        registry::RegistrySnapshot rest;
        for (const auto& r : snap) {
          if (r.peer_id.ToHex() != gone) rest.push_back(r);
        }
        return Covered(rest, n_blocks);
      },
      std::chrono::seconds(60));
  registry::RegistrySnapshot rest;
  for (const auto& r : s) {
    if (r.peer_id.ToHex() != gone) rest.push_back(r);
  }
  EXPECT_TRUE(Covered(rest, n_blocks)) << Describe(s);
}

double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Sends SIGTERM and waits for the exit; the seconds it took (-1 on failure).
double TerminateTimed(Peer& peer) {
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(peer.process->Signal(SIGTERM).ok());
  auto code = peer.process->Wait(std::chrono::seconds(60));
  const double seconds = SecondsSince(start);
  EXPECT_TRUE(code.ok()) << code.status();
  if (!code.ok()) return -1;
  EXPECT_EQ(*code, 0) << ReadFile(peer.log_path);
  return seconds;
}

const registry::PeerRecord* FindRecord(const registry::RegistrySnapshot& s, const std::string& id) {
  for (const auto& r : s) {
    if (r.peer_id.ToHex() == id) return &r;
  }
  return nullptr;
}

// A peer's life as the swarm sees it: "joining" while it loads (held there by --hold-joining
// until SIGUSR2), never routed through meanwhile; "online", with the round trip its upstream
// neighbour measured to it; gone from the registry soon after SIGTERM, which it obeys quickly.
TEST(SwarmLifecycle, JoiningThenOnlineWithMeasuredRttThenQuickLeave) {
  auto local = shard::LocalModel::Load(kModel, kernels::BackendOptions{.name = "reference"},
                                       /*load_blocks=*/false);
  ASSERT_TRUE(local.ok()) << local.status();
  const int64_t n_blocks = (*local)->config.n_layer;
  const std::string model_id = (*local)->config.model_id;
  const auto t0 = std::chrono::steady_clock::now();
  auto phase = [&](const char* what) { std::printf("%.2f s: %s\n", SecondsSince(t0), what); };
  peer::LocalSwarm swarm(SwarmOptions());
  Peer& head = Launch(swarm, {"--blocks", "0:2", "--rtt-interval", "0.2"});
  ReadListening(swarm, head);
  Peer& tail =
      Launch(swarm, {"--blocks", "2:5", "--hold-joining", "--initial-peers", Bootstrap(head)});
  auto registry = ClientRegistry(Bootstrap(head));
  ASSERT_NE(registry, nullptr);

  // Joining: announced (with the address it will serve at), not routable.
  auto s = WaitForSnapshot(*registry, model_id, [&](const auto& snap) {
    for (const auto& r : snap) {
      if (r.blocks == registry::BlockRange{2, 5}) return true;
    }
    return false;
  });
  const registry::PeerRecord* joining = nullptr;
  for (const auto& r : s) {
    if (r.blocks == registry::BlockRange{2, 5}) joining = &r;
  }
  ASSERT_NE(joining, nullptr) << Describe(s);
  phase("joining record seen");
  EXPECT_EQ(joining->state, registry::PeerState::kJoining) << Describe(s);
  const registry::PeerRecord joining_record = *joining;
  auto route = router::BuildRoute(s, n_blocks);
  ASSERT_FALSE(route.ok());
  EXPECT_NE(route.status().message().find("still-joining"), std::string_view::npos)
      << route.status();

  // Released: it loads, goes online under the same id and address, and the head measures it.
  ASSERT_TRUE(tail.process->Signal(SIGUSR2).ok());
  ReadListening(swarm, tail);
  phase("released peer listening");
  EXPECT_EQ(joining_record.peer_id.ToHex(), tail.ready.peer_id);
  EXPECT_EQ(joining_record.address, tail.ready.address);
  bool tail_online = false;
  s = WaitForSnapshot(
      *registry, model_id,
      [&](const auto& snap) {
        const registry::PeerRecord* h = FindRecord(snap, head.ready.peer_id);
        const registry::PeerRecord* t = FindRecord(snap, tail.ready.peer_id);
        if (!tail_online && t != nullptr && Online(*t)) {
          tail_online = true;
          phase("online");
        }
        return h != nullptr && t != nullptr && Online(*t) && !h->rtt_ms.empty();
      },
      std::chrono::seconds(60));  // usually under a second; a DHT get can take op_timeout
  phase("RTT measured");
  const registry::PeerRecord* h = FindRecord(s, head.ready.peer_id);
  ASSERT_NE(h, nullptr) << Describe(s);
  ASSERT_EQ(h->rtt_ms.size(), 1u) << Describe(s);
  EXPECT_EQ(h->rtt_ms.begin()->first.ToHex(), tail.ready.peer_id);
  EXPECT_GT(h->rtt_ms.begin()->second, 0);
  std::printf("head -> tail RTT %.3f ms\n", h->rtt_ms.begin()->second);
  route = router::BuildRoute(s, n_blocks);
  ASSERT_TRUE(route.ok()) << route.status();
  EXPECT_EQ(route->hops.size(), 2u) << router::DescribeRoute(*route);

  // Leaving: quick, and withdrawn (offline) well before the 3 s record TTL would hide it.
  const double tail_exit_s = TerminateTimed(tail);
  const auto left_at = std::chrono::steady_clock::now();
  s = WaitForSnapshot(
      *registry, model_id,
      [&](const auto& snap) { return FindRecord(snap, tail.ready.peer_id) == nullptr; },
      std::chrono::seconds(2));
  const double withdrawn_s = SecondsSince(left_at);
  EXPECT_EQ(FindRecord(s, tail.ready.peer_id), nullptr) << Describe(s);
  // The last node of the swarm: nobody to hand anything over to.
  const double head_exit_s = TerminateTimed(head);
  std::printf(
      "SIGTERM to exit: %.3f s (tail), %.3f s (head, last node); withdrawal seen after "
      "%.3f s\n",
      tail_exit_s, head_exit_s, withdrawn_s);
  // Generous for sanitizers and loaded machines; it takes a fraction of a second.
  EXPECT_LT(tail_exit_s, 3.0);
  EXPECT_LT(head_exit_s, 3.0);
}

// The node everyone bootstrapped from leaves: a new peer and a client join through another
// peer's DHT port, and the client generates the reference text.
TEST(SwarmBootstrap, SwarmOutlivesItsBootstrapNode) {
  const auto t0 = std::chrono::steady_clock::now();
  auto phase = [&](const char* what) {
    std::printf("%.2f s: %s\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), what);
  };
  peer::LocalSwarm swarm(SwarmOptions());
  std::deque<Peer>& peers = swarm.peers();
  ReadListening(swarm, Launch(swarm, {"--blocks", "0:2"}));
  Launch(swarm, {"--blocks", "2:4", "--initial-peers", Bootstrap(peers[0])});
  Launch(swarm, {"--blocks", "4:5", "--initial-peers", Bootstrap(peers[0])});
  ReadListening(swarm, peers[1]);
  ReadListening(swarm, peers[2]);
  phase("three peers listening");
  ASSERT_TRUE(peers[0].process->Signal(SIGTERM).ok());
  auto code = peers[0].process->Wait(std::chrono::seconds(60));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << ReadFile(peers[0].log_path);

  phase("bootstrap node stopped");
  ReadListening(swarm, Launch(swarm, {"--blocks", "0:2", "--initial-peers", Bootstrap(peers[1])}));
  phase("newcomer listening");
  SwarmClient client(Bootstrap(peers[2]));
  ASSERT_TRUE(client.ok());
  phase("client joined");
  auto s =
      WaitForSnapshot(client.registry(), client.model().config.model_id, [&](const auto& snap) {
        registry::RegistrySnapshot live;
        for (const auto& r : snap) {
          if (r.peer_id.ToHex() != peers[0].ready.peer_id) live.push_back(r);
        }
        return Covered(live, client.model().config.n_layer);
      });
  phase("client sees every block");
  GenerationResult result =
      client.Generate([](int, router::ChainSession&) {}, std::chrono::milliseconds(2000));
  phase("generated");
  ASSERT_TRUE(result.status.ok()) << result.status << "\n" << Describe(s);
  EXPECT_EQ(result.text, ReferenceText());
}

}  // namespace
}  // namespace swarm::swarm_test
