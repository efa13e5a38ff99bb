// A volunteer behind a home router, in network namespaces (support/net_namespaces.h): public
// peers and the DHT bootstrap on a public network, a "home" peer behind a masquerading router
// that accepts no inbound connections, a client on the public network. Real `swarm serve` and
// `swarm generate` processes (SWARM_BINARY) inside the namespaces.
//  - Without a relay the home peer is unreachable: the same fixed chain through it generates the
//    in-process text from inside the home network and fails from the client's.
//  - With relays (`swarm serve` needs no flag): the home peer finds out that nobody can dial it,
//    serves through a public peer's relay, and a routed generation through it equals the
//    in-process text; killing the relay mid-generation fails over like any other hop.
// Skipped, saying why, where namespaces or nftables are not permitted.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/subprocess.h"
#include "nlohmann/json.hpp"
#include "peer/local_swarm.h"
#include "support/files.h"
#include "support/net_namespaces.h"
#include "support/shared_model.h"
#include "support/streamed_process.h"

namespace swarm::nat_test {
namespace {

using test_support::NatNetwork;
using test_support::NetHost;
using test_support::ReadFile;
using Clock = std::chrono::steady_clock;

const std::string& kModel = test_support::kSharedModel;

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// What `swarm generate` printed and how it ended.
struct Generated {
  int code = -1;
  std::string text;
  std::string err;
};

std::vector<std::string> GenerateArgs(int tokens) {
  return {SWARM_BINARY, "generate",           "-m",     kModel, "-p",        "",
          "-n",         absl::StrCat(tokens), "--temp", "0",    "--backend", "reference"};
}

// Runs `argv` to its end (stdout and exit code, stderr from a file).
Generated RunToEnd(const std::vector<std::string>& argv, const std::string& err_path) {
  Generated out;
  auto process = test_support::StreamedProcess::Start(argv, err_path);
  if (!process.ok()) {
    out.err = std::string(process.status().message());
    return out;
  }
  auto code = (*process)->Finish(std::chrono::seconds(120));
  out.code = code.ok() ? *code : -1;
  out.text = (*process)->output();
  out.err = ReadFile(err_path);
  if (!code.ok()) out.err += absl::StrCat("\n(test: ", code.status().message(), ")");
  return out;
}

// The in-process greedy text: every block in this process, no network.
std::string InProcessText(int tokens, const std::string& scratch) {
  Generated g = RunToEnd(GenerateArgs(tokens), scratch + "/in-process.err");
  EXPECT_EQ(g.code, 0) << g.err;
  EXPECT_FALSE(g.text.empty());
  return g.text;
}

// One host's peers: a LocalSwarm whose `swarm serve` processes run in the host's namespace,
// listening and running their DHT node at its address.
class Site {
 public:
  Site(NatNetwork& net, const NetHost& host, const std::string& log_dir)
      : host_(host),
        swarm_(net.SwarmIn(
            host, {.binary = SWARM_BINARY,
                   .serve_args = {"-m", kModel, "--backend", "reference", "--listen",
                                  absl::StrCat("tcp://", host.address, ":0"), "--dht-bind",
                                  host.address, "--announce-interval", "0.2", "--record-ttl", "3"},
                   .log_dir = log_dir,
                   .log_name = "nat-peer"})) {}

  peer::LocalSwarm& swarm() { return swarm_; }
  const NetHost& host() const { return host_; }
  peer::LocalPeer& peer() { return swarm_.peer(0); }

 private:
  NetHost host_;
  peer::LocalSwarm swarm_;
};

std::string Describe(peer::LocalSwarm& swarm) {
  std::string out;
  for (const peer::LocalPeer& p : swarm.peers()) {
    absl::StrAppend(&out, "--- swarm serve ", absl::StrJoin(p.args, " "),
                    " (ready: ", p.ready.Format(), ")\n", peer::LocalSwarm::LogTail(p, 3000), "\n");
  }
  return out;
}

// The host part of "tcp://HOST:PORT".
std::string HostOf(const std::string& endpoint) {
  std::string rest = endpoint;
  if (absl::StartsWith(rest, "tcp://")) rest = rest.substr(6);
  return rest.substr(0, rest.rfind(':'));
}

// Without any relay: a fixed chain home (blocks 0:2) -> public (2:4) -> public (4:5), static peers
// (--no-dht, so no peer can offer a relay). A client inside the home network gets the in-process
// text through it (home pushes out to the public peers, the replies come back on home's own
// connections); the same command from the client's namespace cannot open the home hop.
TEST(NatNetwork, HomePeerIsUnreachableWithoutARelay) {
  NAT_NETWORK_OR_SKIP(net, test_support::NatNetworkOptions{.public_hosts = 2});
  const auto t0 = Clock::now();
  ASSERT_TRUE(net->Verify().ok()) << net->Verify();
  std::printf("%.2f s: network up and verified\n", Since(t0));
  test_support::ScratchDir scratch;
  constexpr int kTokens = 24;
  const std::string expected = InProcessText(kTokens, scratch.path());

  Site home(*net, net->home(), scratch.path());
  Site pub0(*net, net->public_host(0), scratch.path());
  Site pub1(*net, net->public_host(1), scratch.path());
  const std::vector<std::pair<Site*, std::string>> layout = {
      {&home, "0:2"}, {&pub0, "2:4"}, {&pub1, "4:5"}};
  for (const auto& [site, blocks] : layout) {
    ASSERT_TRUE(site->swarm().Launch({"--blocks", blocks, "--no-dht"}).ok());
  }
  for (Site* site : {&home, &pub0, &pub1}) {
    ASSERT_TRUE(site->swarm().WaitReady(site->peer()).ok()) << Describe(site->swarm());
  }
  std::printf("%.2f s: three static peers listening\n", Since(t0));
  const std::string chain = absl::StrJoin(
      {home.peer().ready.address, pub0.peer().ready.address, pub1.peer().ready.address}, ",");
  ASSERT_EQ(HostOf(home.peer().ready.address), net->home().address);

  std::vector<std::string> argv = GenerateArgs(kTokens);
  argv.insert(argv.end(), {"--peers", chain, "--max-step-timeout-ms", "3000"});
  Generated inside = RunToEnd(net->Command(net->home(), argv), scratch.File("inside.err"));
  EXPECT_EQ(inside.code, 0) << inside.err;
  EXPECT_EQ(inside.text, expected) << inside.err;
  std::printf("%.2f s: generated from inside the home network\n", Since(t0));

  Generated outside = RunToEnd(net->Command(net->client(), argv), scratch.File("outside.err"));
  std::printf("%.2f s: generation from the client's network ended (exit %d)\n", Since(t0),
              outside.code);
  EXPECT_NE(outside.code, 0) << outside.text << "\n" << outside.err;
  EXPECT_NE(outside.text, expected) << outside.err;
  EXPECT_TRUE(absl::StrContains(outside.err, "error")) << outside.err;
}

// The swarm of the relay tests: four public peers (blocks 0:2 and 4:5, twice each, so that any
// one of them can go), the first one the DHT bootstrap; the home peer alone serves 2:4, so every
// chain goes through it. `swarm serve` gets no flag for relaying.
class RelayTest : public ::testing::Test {
 protected:
  void StartSwarm() {
    ASSERT_TRUE(net_->Verify().ok()) << net_->Verify();
    for (size_t i = 0; i < 4; ++i) {
      pubs_.push_back(std::make_unique<Site>(*net_, net_->public_host(i), scratch_.path()));
    }
    home_ = std::make_unique<Site>(*net_, net_->home(), scratch_.path());
    auto first = pubs_[0]->swarm().Start({"--blocks", "0:2"});
    ASSERT_TRUE(first.ok()) << first.status();
    bootstrap_ = pubs_[0]->swarm().DhtNode(**first);
    const char* blocks[] = {"0:2", "4:5", "0:2", "4:5"};
    for (size_t i = 1; i < pubs_.size(); ++i) {
      ASSERT_TRUE(
          pubs_[i]->swarm().Launch({"--blocks", blocks[i], "--initial-peers", bootstrap_}).ok());
    }
    ASSERT_TRUE(home_->swarm().Launch({"--blocks", "2:4", "--initial-peers", bootstrap_}).ok());
    for (size_t i = 1; i < pubs_.size(); ++i) {
      ASSERT_TRUE(pubs_[i]->swarm().WaitReady(pubs_[i]->peer()).ok())
          << Describe(pubs_[i]->swarm());
    }
    ASSERT_TRUE(home_->swarm().WaitReady(home_->peer()).ok()) << Describe(home_->swarm());
  }

  // The DHT nodes of the public peers still running (the bootstrap may be the relay killed).
  std::string LiveDhtNodes() {
    std::vector<std::string> nodes;
    for (auto& p : pubs_) {
      if (std::string n = p->swarm().DhtNodes(); !n.empty()) nodes.push_back(n);
    }
    return absl::StrJoin(nodes, ",");
  }

  // `swarm status --json` from the client's namespace; null when it failed.
  nlohmann::json Status() {
    Generated g =
        RunToEnd(net_->Command(net_->client(), {SWARM_BINARY, "status", "--json", "--no-probe",
                                                "-m", kModel, "--initial-peers", LiveDhtNodes(),
                                                "--dht-bind", net_->client().address}),
                 scratch_.File("status.err"));
    if (g.code != 0) return nullptr;
    return nlohmann::json::parse(g.text, nullptr, /*allow_exceptions=*/false);
  }

  // Waits (30 s at most) until the home peer's record is online at an address on the public
  // network, a relay's endpoint, at another host than `not_this`. Which public host relays it;
  // nullopt (and a failure) if none.
  std::optional<size_t> WaitForRelay(const std::string& home_id,
                                     std::optional<size_t> not_this = std::nullopt) {
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    nlohmann::json last;
    while (Clock::now() < deadline) {
      last = Status();
      if (last.is_object() && last.contains("peers")) {
        for (const nlohmann::json& p : last["peers"]) {
          if (p.value("peer_id", "") != home_id || p.value("state", "") != "online") continue;
          const std::string host = HostOf(p.value("address", ""));
          for (size_t i = 0; i < pubs_.size(); ++i) {
            if (pubs_[i]->host().address == host && not_this != i) return i;
          }
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    ADD_FAILURE() << "the home peer never announced a relayed address; last status:\n"
                  << last.dump(2) << "\n"
                  << Describe(home_->swarm());
    return std::nullopt;
  }

  // The public host whose peer relays the peer of this ready line: "reach relayed", "via" the
  // relay's id, and the address an endpoint on the relay's host. nullopt otherwise.
  std::optional<size_t> RelayOf(const peer::ReadyLine& ready) {
    if (ready.reach != "relayed") return std::nullopt;
    for (size_t i = 0; i < pubs_.size(); ++i) {
      if (pubs_[i]->peer().ready.peer_id == ready.via &&
          HostOf(ready.address) == pubs_[i]->host().address) {
        return i;
      }
    }
    return std::nullopt;
  }

  std::vector<std::string> ClientGenerate(int tokens) {
    std::vector<std::string> argv = GenerateArgs(tokens);
    argv.insert(argv.end(), {"--initial-peers", bootstrap_, "--dht-bind", net_->client().address,
                             "--route-wait", "30"});
    return net_->Command(net_->client(), argv);
  }

  std::string Logs() {
    std::string out = Describe(home_->swarm());
    for (auto& p : pubs_) out += Describe(p->swarm());
    return out;
  }

  void SetUp() override {
    auto net = NatNetwork::Create({.public_hosts = 4});
    if (absl::IsFailedPrecondition(net.status())) {
      GTEST_SKIP() << "network namespaces: " << net.status().message();
    }
    ASSERT_TRUE(net.ok()) << net.status();
    net_ = std::move(*net);
  }
  void TearDown() override {
    // The peers go before their namespaces.
    home_.reset();
    pubs_.clear();
    net_.reset();
  }

  test_support::ScratchDir scratch_;
  std::unique_ptr<NatNetwork> net_;
  std::vector<std::unique_ptr<Site>> pubs_;
  std::unique_ptr<Site> home_;
  std::string bootstrap_;
};

TEST_F(RelayTest, HomePeerServesThroughARelay) {
  const auto t0 = Clock::now();
  constexpr int kTokens = 32;
  const std::string expected = InProcessText(kTokens, scratch_.path());
  ASSERT_NO_FATAL_FAILURE(StartSwarm());
  std::printf("%.2f s: five peers listening\n", Since(t0));
  // The home peer found out that nobody can dial it: its ready line says it is relayed, by one of
  // the public peers, at an endpoint on that peer's host.
  std::optional<size_t> relay = RelayOf(home_->peer().ready);
  ASSERT_TRUE(relay.has_value()) << home_->peer().ready.Format() << "\n" << Logs();
  std::printf("%.2f s: home peer relayed by public host %zu\n", Since(t0), *relay);

  Generated g = RunToEnd(ClientGenerate(kTokens), scratch_.File("client.err"));
  std::printf("%.2f s: generated through the relay\n", Since(t0));
  EXPECT_EQ(g.code, 0) << g.err << "\n" << Logs();
  EXPECT_EQ(g.text, expected) << g.err;
  // The chain's report names the hop of blocks 2..4 at the relay's endpoint.
  EXPECT_TRUE(absl::StrContains(g.err, absl::StrCat("tcp://", pubs_[*relay]->host().address, ":")))
      << g.err;
  EXPECT_TRUE(absl::StrContains(g.err, "blocks 2..4")) << g.err;
}

TEST_F(RelayTest, KillingTheRelayFailsOver) {
  const auto t0 = Clock::now();
  constexpr int kTokens = 200;
  const std::string expected = InProcessText(kTokens, scratch_.path());
  ASSERT_NO_FATAL_FAILURE(StartSwarm());
  std::optional<size_t> relay = RelayOf(home_->peer().ready);
  ASSERT_TRUE(relay.has_value()) << home_->peer().ready.Format() << "\n" << Logs();
  std::printf("%.2f s: home peer relayed by public host %zu\n", Since(t0), *relay);

  auto client =
      test_support::StreamedProcess::Start(ClientGenerate(kTokens), scratch_.File("client.err"));
  ASSERT_TRUE(client.ok()) << client.status();
  // The first words are out: the chain through the relay runs. Then the relay goes.
  absl::Status started = (*client)->WaitForOutput(16, std::chrono::seconds(60));
  ASSERT_TRUE(started.ok()) << started << "\n" << ReadFile(scratch_.File("client.err"));
  ASSERT_TRUE(pubs_[*relay]->peer().process->Signal(SIGKILL).ok());
  std::printf("%.2f s: killed the relay after %zu bytes of text\n", Since(t0),
              (*client)->output().size());
  auto code = (*client)->Finish(std::chrono::seconds(120));
  std::printf("%.2f s: generation ended\n", Since(t0));
  const std::string err = ReadFile(scratch_.File("client.err"));
  if (size_t at = err.find("failovers: "); at != std::string::npos) {
    std::printf("client: %s\n", err.substr(at, err.find('\n', at) - at).c_str());
  }
  // And where each failover's time went.
  for (absl::string_view line : absl::StrSplit(err, '\n')) {
    if (absl::StartsWith(line, "  hop ")) std::printf("client:%s\n", std::string(line).c_str());
  }
  ASSERT_TRUE(code.ok()) << code.status() << "\n" << err;
  EXPECT_EQ(*code, 0) << err << "\n" << Logs();
  EXPECT_EQ((*client)->output(), expected) << err;
  // The chain lost a hop (the relayed home peer, and the relay's own when it was on the route)
  // and replaced it.
  EXPECT_TRUE(absl::StrContains(err, "failovers: ")) << err;
  // The home peer is relayed again, by another public host.
  EXPECT_TRUE(WaitForRelay(home_->peer().ready.peer_id, *relay).has_value());
}

}  // namespace
}  // namespace swarm::nat_test
