// Routing that trusts measurements, not claims, against real `swarm serve` processes (SWARM_BINARY)
// on loopback: a peer whose edited throughput cache claims 1e12 tokens/s but delivers slowly
// loses the client's traffic after one generation; a record announcing another peer's address is
// refused (the peer there answers with its own id) and its id banned; `swarm status` shows the
// impostor and which spans more than one distinct peer serves.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/subprocess.h"
#include "model/generator.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "nlohmann/json.hpp"
#include "peer/local_swarm.h"
#include "registry/dht_registry.h"
#include "router/chain_session.h"
#include "router/peer_performance.h"
#include "router/route_builder.h"
#include "router/swarm_hop_provider.h"
#include "shard/local_model.h"
#include "support/files.h"
#include "support/shared_model.h"

namespace swarm::swarm_test {
namespace {

const std::string& kModel = test_support::kSharedModel;
using test_support::ReadFile;
using Peer = peer::LocalPeer;
constexpr int kTokens = 16;

// The greedy reference text's start: a shorter generation is a prefix of it.
std::string ReferenceText() {
  std::string text = ReadFile(test_support::kSharedReferenceText);
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

peer::LocalSwarmOptions SwarmOptions() {
  return {
      .binary = SWARM_BINARY,
      .serve_args = {"-m", kModel, "--listen", "tcp://127.0.0.1:0", "--dht-bind", "127.0.0.1",
                     "--backend", "reference", "--announce-interval", "0.2", "--record-ttl", "3"},
      .log_dir = ::testing::TempDir(),
      .log_name = "swarm-routing-peer",
      .ready_timeout = std::chrono::seconds(120)};
}

std::string Bootstrap(const Peer& peer) { return absl::StrCat("127.0.0.1:", peer.ready.dht_port); }

registry::PeerId IdOf(const Peer& peer) {
  auto id = registry::PeerId::FromHex(peer.ready.peer_id);
  EXPECT_TRUE(id.ok()) << peer.ready.peer_id;
  return id.ok() ? *id : registry::PeerId();
}

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

// Polls the registry until `done(snapshot)` (30 s at most); the last snapshot.
registry::RegistrySnapshot WaitForSnapshot(
    registry::DhtRegistry& registry, const std::string& model_id,
    const std::function<bool(const registry::RegistrySnapshot&)>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  registry::RegistrySnapshot last;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto snapshot = registry.Snapshot(model_id); snapshot.ok()) {
      last = *snapshot;
      if (done(last)) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return last;
}

bool HasOnline(const registry::RegistrySnapshot& s, const registry::PeerId& id) {
  for (const auto& r : s) {
    if (r.peer_id == id && r.state == registry::PeerState::kOnline) return true;
  }
  return false;
}

// A DHT identity of the test's own announcing `address` as a peer of every block, far faster
// than anyone: the record is correctly signed, only its content lies.
std::unique_ptr<registry::DhtRegistry> AnnounceImpostor(const std::string& bootstrap,
                                                        const std::string& address,
                                                        const model::ModelConfig& config) {
  registry::DhtRegistryOptions options;
  options.bind_address = "127.0.0.1";
  options.initial_peers = {bootstrap};
  options.key_bits = 1024;
  options.record_ttl = absl::Seconds(3);
  options.refresh_interval = absl::Milliseconds(200);
  auto liar = registry::DhtRegistry::Create(options);
  EXPECT_TRUE(liar.ok()) << liar.status();
  if (!liar.ok()) return nullptr;
  registry::PeerRecord record;
  record.address = address;
  record.model_id = config.model_id;
  record.blocks = {0, static_cast<int32_t>(config.n_layer)};
  record.state = registry::PeerState::kOnline;
  record.decode_tps_per_block = 1e12;
  record.prompt_tps_per_block = 1e12;
  record.free_cache_tokens = 1 << 20;
  record.total_cache_tokens = 1 << 20;
  absl::Status announced = (*liar)->Announce(record);
  EXPECT_TRUE(announced.ok() || absl::IsUnavailable(announced)) << announced;
  return std::move(*liar);
}

struct Generation {
  absl::Status status;
  std::string text;
  std::vector<router::ChainHop> route;  // as the provider first chose it
  bool impostor_banned = false;
};

// The in-process client, shaped like the gateway's engine: the model's head locally, one DHT
// node and one PeerPerformance for all generations, a router and chain per generation.
class Client {
 public:
  explicit Client(const std::string& bootstrap) {
    auto local = shard::LocalModel::Load(kModel, kernels::BackendOptions{.name = "reference"},
                                         /*load_blocks=*/false);
    EXPECT_TRUE(local.ok()) << local.status();
    if (local.ok()) model_ = std::move(*local);
    registry_ = ClientRegistry(bootstrap);
  }
  bool ok() const { return model_ != nullptr && registry_ != nullptr; }
  const model::ModelConfig& config() const { return model_->config; }
  registry::DhtRegistry& registry() { return *registry_; }
  router::PeerPerformance& performance() { return performance_; }

  Generation Generate(const registry::PeerId& impostor = {}) {
    Generation result;
    const model::ModelConfig& config = model_->config;
    router::SwarmHopProviderOptions provider_options;
    provider_options.model_id = config.model_id;
    provider_options.n_blocks = config.n_layer;
    provider_options.cache_tokens_needed = kTokens + 1;
    provider_options.route_wait = absl::Seconds(20);
    provider_options.performance = &performance_;
    provider_options.context = &context_;
    router::SwarmHopProvider provider(*registry_, provider_options);
    auto hops = provider.InitialRoute();
    result.impostor_banned = provider.bans().IsBanned(impostor);
    if (!hops.ok()) {
      result.status = hops.status();
      return result;
    }
    result.route = *hops;
    router::ChainOptions options;
    options.max_length = kTokens + 1;
    auto session = router::ChainSession::Open(context_, *hops, config.n_layer, config.n_embd,
                                              options, &provider);
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
    const std::vector<int32_t> prompt = {tokenizer.bos_id()};
    auto stats = model::Generate(prompt, generate_options, *model_->head, **session, sampler,
                                 tokenizer, [&](int32_t token) {
                                   result.text += decoder.Push(token);
                                   return true;
                                 });
    result.text += decoder.Finish();
    result.status = stats.status();
    return result;
  }

 private:
  std::unique_ptr<shard::LocalModel> model_;
  std::unique_ptr<registry::DhtRegistry> registry_;
  zmq::context_t context_{1};
  router::PeerPerformance performance_;
};

std::string Describe(const std::vector<router::ChainHop>& route) {
  std::string out;
  for (const auto& hop : route) {
    absl::StrAppend(&out, hop.first_block, ":", hop.last_block, "@", hop.peer_id.substr(0, 8), " ");
  }
  return out;
}

void ExpectReferencePrefix(const Generation& g) {
  ASSERT_TRUE(g.status.ok()) << g.status;
  ASSERT_FALSE(g.text.empty());
  EXPECT_EQ(ReferenceText().substr(0, g.text.size()), g.text);
}

// Two peers serve every block. One of them edited its throughput cache to claim 1e12 tokens/s
// and is frozen (SIGSTOP) for 60 ms of every 63 ms, so it delivers a step in tens of
// milliseconds where the other takes one or two. The claim, capped at 4x the other's,
// wins the first generation; from the second on the client routes by what it measured.
TEST(SwarmRouting, PeerClaimingMoreThanItDeliversLosesTraffic) {
  peer::LocalSwarm swarm(SwarmOptions());
  auto honest = swarm.Start({"--blocks", "0:5"});
  ASSERT_TRUE(honest.ok()) << honest.status();
  // The liar's first start writes its measured throughput; the attack is editing that file.
  const std::string cache_dir =
      absl::StrCat(::testing::TempDir(), "swarm-routing-cache-", getpid());
  std::filesystem::remove_all(cache_dir);
  const std::vector<std::string> liar_args = {
      "--blocks", "0:5", "--throughput-cache", cache_dir, "--initial-peers", Bootstrap(**honest)};
  auto liar = swarm.Start(liar_args);
  ASSERT_TRUE(liar.ok()) << liar.status();
  int edited = 0;
  for (const auto& entry : std::filesystem::directory_iterator(cache_dir)) {
    std::ofstream(entry.path()) << "1e12 1e12\n";
    ++edited;
  }
  ASSERT_GT(edited, 0) << "the peer wrote no throughput cache in " << cache_dir;
  ASSERT_TRUE(swarm.Restart(**liar, liar_args).ok());

  Client client(Bootstrap(**honest));
  ASSERT_TRUE(client.ok());
  const registry::PeerId liar_id = IdOf(**liar), honest_id = IdOf(**honest);
  auto snapshot = WaitForSnapshot(client.registry(), client.config().model_id, [&](const auto& s) {
    for (const auto& r : s) {
      // Online: a joining peer announces its cached claim too, but is not routed to yet.
      if (r.peer_id == liar_id && r.decode_tps_per_block >= 1e12 &&
          r.state == registry::PeerState::kOnline && HasOnline(s, honest_id)) {
        return true;
      }
    }
    return false;
  });
  bool claims = false;
  for (const auto& r : snapshot) {
    claims |= r.peer_id == liar_id && r.decode_tps_per_block >= 1e12 &&
              r.state == registry::PeerState::kOnline;
  }
  ASSERT_TRUE(claims) << "the liar's record does not claim 1e12";

  std::atomic<bool> stop{false};
  const pid_t liar_pid = (*liar)->process->pid();
  std::thread freezer([&] {
    while (!stop.load()) {
      ::kill(liar_pid, SIGSTOP);
      std::this_thread::sleep_for(std::chrono::milliseconds(60));
      ::kill(liar_pid, SIGCONT);
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
    }
    ::kill(liar_pid, SIGCONT);
  });
  std::vector<Generation> generations;
  for (int g = 0; g < 4; ++g) {
    generations.push_back(client.Generate());
    std::printf("generation %d: %s\n", g + 1, Describe(generations.back().route).c_str());
  }
  stop = true;
  freezer.join();

  for (const Generation& g : generations) ExpectReferencePrefix(g);
  ASSERT_EQ(generations[0].route.size(), 1u);
  // The claim attracted the first generation (else this test proves nothing)...
  EXPECT_EQ(generations[0].route[0].peer_id, liar_id.ToHex());
  // ...and measuring it lost it the others.
  for (size_t g = 1; g < generations.size(); ++g) {
    ASSERT_EQ(generations[g].route.size(), 1u);
    EXPECT_EQ(generations[g].route[0].peer_id, honest_id.ToHex()) << "generation " << g + 1;
  }
  auto liar_tps = client.performance().MeasuredTpsPerBlock(liar_id);
  auto honest_tps = client.performance().MeasuredTpsPerBlock(honest_id);
  ASSERT_TRUE(liar_tps && honest_tps);
  std::printf("measured steps/s per block: liar %.4g (claims 1e12), honest %.4g\n", *liar_tps,
              *honest_tps);
  EXPECT_LT(*liar_tps * 4, *honest_tps);
  std::filesystem::remove_all(cache_dir);
}

// A record announcing another peer's address (signed by its own key, claiming every block at
// 1e12 tokens/s) would win the route; the client asks the peer there who it is, refuses the
// record and bans its id, and the text is exact. `swarm status` shows the impostor and counts the
// address once: blocks two peers serve are verifiable, blocks one peer serves are not.
TEST(SwarmRouting, RecordAtAnotherPeersAddressIsRefused) {
  peer::LocalSwarm swarm(SwarmOptions());
  auto whole = swarm.Start({"--blocks", "0:5"});
  ASSERT_TRUE(whole.ok()) << swarm.LogTail(swarm.peers().back());
  auto half = swarm.Start({"--blocks", "0:2", "--initial-peers", Bootstrap(**whole)});
  ASSERT_TRUE(half.ok()) << half.status();
  Client client(Bootstrap(**whole));
  ASSERT_TRUE(client.ok());
  auto impostor = AnnounceImpostor(Bootstrap(**whole), (*whole)->ready.address, client.config());
  ASSERT_NE(impostor, nullptr);
  const registry::PeerId impostor_id = impostor->peer_id();
  auto snapshot = WaitForSnapshot(client.registry(), client.config().model_id, [&](const auto& s) {
    return HasOnline(s, impostor_id) && HasOnline(s, IdOf(**whole)) && HasOnline(s, IdOf(**half));
  });
  ASSERT_TRUE(HasOnline(snapshot, impostor_id));
  // Without the check the record would be routed to.
  auto unchecked = router::BuildRoute(snapshot, client.config().n_layer);
  ASSERT_TRUE(unchecked.ok()) << unchecked.status();
  ASSERT_EQ(unchecked->hops.size(), 1u);
  EXPECT_EQ(unchecked->hops[0].peer_id, impostor_id);

  Generation g = client.Generate(impostor_id);
  ExpectReferencePrefix(g);
  for (const auto& hop : g.route) EXPECT_NE(hop.peer_id, impostor_id.ToHex()) << Describe(g.route);
  EXPECT_TRUE(g.impostor_banned);

  // `swarm status`, text and JSON.
  auto run_status = [&](std::vector<std::string> extra) {
    Subprocess::Options options;
    options.argv = {SWARM_BINARY,      "status",           "-m",         kModel,
                    "--initial-peers", Bootstrap(**whole), "--dht-bind", "127.0.0.1"};
    options.argv.insert(options.argv.end(), extra.begin(), extra.end());
    options.stderr_path = "/dev/null";
    auto process = Subprocess::Start(options);
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) return std::string();
    auto out = (*process)->ReadAll(std::chrono::seconds(60));
    auto code = (*process)->Wait(std::chrono::seconds(10));
    EXPECT_TRUE(code.ok() && *code == 0);
    return out.ok() ? *out : std::string();
  };
  const std::string text = run_status({});
  std::printf("%s", text.c_str());
  EXPECT_NE(text.find(absl::StrCat(impostor_id.ShortHex())), std::string::npos) << text;
  EXPECT_NE(text.find(absl::StrCat("answers as ", IdOf(**whole).ShortHex())), std::string::npos)
      << text;
  EXPECT_NE(text.find("blocks 0..1       2 peers: verifiable\n"), std::string::npos) << text;
  EXPECT_NE(text.find("blocks 2..4       1 peer: unverifiable\n"), std::string::npos) << text;
  EXPECT_NE(text.find(" MiB / "), std::string::npos) << text;  // free cache: bytes and positions

  const std::string json_text = run_status({"--json"});
  auto json = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(json.is_discarded()) << json_text;
  ASSERT_EQ(json["spans"].size(), 2u) << json_text;
  EXPECT_EQ(json["spans"][0]["last_block"], 2);
  EXPECT_EQ(json["spans"][0]["peers"], 2);
  EXPECT_EQ(json["spans"][0]["verifiable"], true);
  EXPECT_EQ(json["spans"][1]["peers"], 1);
  EXPECT_EQ(json["spans"][1]["verifiable"], false);
  bool impostor_flagged = false;
  for (const auto& p : json["peers"]) {
    if (p["peer_id"] == IdOf(**whole).ToHex()) {
      // The cache in bytes: the default f16 cache over 5 blocks of stories260K (32 key and 32
      // value dims) takes 640 bytes a position.
      EXPECT_GT(p["total_cache_bytes"].get<int64_t>(), 0) << p.dump();
      EXPECT_EQ(p["total_cache_bytes"].get<int64_t>(),
                p["total_cache_tokens"].get<int64_t>() * 640);
      EXPECT_EQ(p["free_cache_bytes"].get<int64_t>(), p["free_cache_tokens"].get<int64_t>() * 640);
    }
    if (p["peer_id"] == impostor_id.ToHex()) {
      impostor_flagged = p["identity"] == "mismatch" && p["answered_as"] == IdOf(**whole).ToHex();
    } else if (p["state"] == "online") {
      EXPECT_EQ(p["identity"], "ok") << p.dump();
    }
  }
  EXPECT_TRUE(impostor_flagged) << json_text;
  (void)impostor->Withdraw();
}

}  // namespace
}  // namespace swarm::swarm_test
