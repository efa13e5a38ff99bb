// `swarm serve --device cpu,cpu`: a peer process spreads its blocks over several backends with
// MultiGpuStack, the path a peer with several GPUs takes (here CPU backends, whose activations
// meet in host memory, so it runs on any machine). Through such peers greedy 200 tokens equal the
// reference text and the final hidden states equal the in-process engine's bit for bit: the whole
// model on one peer, routes that use part of a peer's span (starting or ending inside a device's
// share), and concurrent clients whose steps the peer batches.
#include <cstdio>
#include <thread>

#include "base/status_macros.h"
#include "chain_test_util.h"

namespace swarm::chain_test {
namespace {

class ChainMultiDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The peers run on the CPU, so the reference does too (auto could pick a GPU).
    kernels::BackendOptions backend;
    backend.name = "cpu";
    auto local = shard::LocalModel::Load(kModel, backend, /*load_blocks=*/true);
    ASSERT_TRUE(local.ok()) << local.status();
    local_ = std::move(*local);
  }

  void TearDown() override {
    for (Peer& peer : peers_) {
      if (peer.process == nullptr) continue;  // stopped by the test
      EXPECT_EQ(StopPeer(peer), 0)
          << "blocks " << peer.ready.first_block << ":" << peer.ready.last_block << "\n"
          << ReadFile(peer.log_path);
    }
  }

  // One peer serving every block over `devices`.
  void StartWholeModelPeers(const std::vector<std::string>& devices) {
    for (const std::string& list : devices) {
      std::vector<Peer> started = StartPeers(kModel, {{0, 5}}, {"--no-dht", "--device", list});
      for (Peer& peer : started) {
        ASSERT_FALSE(peer.ready.address.empty()) << ReadFile(peer.log_path);
        peers_.push_back(std::move(peer));
      }
    }
  }

  // Greedy 200 tokens through `hops`, the in-process engine beside it on the same inputs.
  Generation Run(const std::vector<router::ChainHop>& hops) {
    router::ChainOptions options;
    options.max_length = 1 + kReferenceTokens;
    auto chain = router::ChainSession::Open(zmq_, hops, local_->config.n_layer,
                                            local_->config.n_embd, options);
    EXPECT_TRUE(chain.ok()) << chain.status();
    if (!chain.ok()) return {};
    auto reference = shard::LocalPipeline::Create(*local_->blocks, 1 + kReferenceTokens);
    EXPECT_TRUE(reference.ok()) << reference.status();
    if (!reference.ok()) return {};
    auto generation = GenerateGreedy(*local_, **chain, kReferenceTokens, reference->get());
    EXPECT_TRUE(generation.ok()) << generation.status();
    return generation.ok() ? *generation : Generation{};
  }

  void ExpectReference(const Generation& g) {
    EXPECT_EQ(g.text, ReadFile(kReferenceText));
    EXPECT_EQ(g.tokens.size(), static_cast<size_t>(kReferenceTokens));
    EXPECT_EQ(g.nmse, 0.0) << "spreading blocks over devices must not change a bit";
  }

  zmq::context_t zmq_{1};
  std::unique_ptr<shard::LocalModel> local_;
  std::vector<Peer> peers_;
};

TEST_F(ChainMultiDeviceTest, WholeModelOnTwoCpuDevicesEqualsTheReference) {
  StartWholeModelPeers({"cpu,cpu"});
  const Peer& peer = peers_[0];
  ExpectReference(Run({{peer.ready.address, 0, 5, ""}}));

  // The peer reports both devices, and logs which blocks each runs (5 blocks: 3 then 2).
  auto info = router::QueryInfo(zmq_, peer.ready.address, std::chrono::seconds(10));
  ASSERT_TRUE(info.ok()) << info.status();
  const std::string cpu = local_->backend->name();
  EXPECT_EQ(info->backend, cpu + "," + cpu);
  EXPECT_EQ(info->first_block, 0u);
  EXPECT_EQ(info->last_block, 5u);
  const std::string log = ReadFile(peer.log_path);
  EXPECT_NE(log.find("devices " + cpu + "," + cpu + " ([0, 3) on " + cpu + ", [3, 5) on " + cpu +
                     ", activations by host memory)"),
            std::string::npos)
      << log;
}

// Peer A: [0, 2) [2, 4) [4, 5) on three devices; peer B: [0, 3) [3, 5) on two. Each chain uses
// part of each peer's span, starting or ending inside a device's share.
TEST_F(ChainMultiDeviceTest, RoutesThroughPartOfASpreadPeerEqualTheReference) {
  StartWholeModelPeers({"cpu,cpu,cpu", "cpu,cpu"});
  const std::string a = peers_[0].ready.address, b = peers_[1].ready.address;
  const std::vector<std::vector<router::ChainHop>> chains = {
      {{a, 0, 3, ""}, {b, 3, 5, ""}},
      {{b, 0, 1, ""}, {a, 1, 5, ""}},
      {{a, 0, 1, ""}, {b, 1, 4, ""}, {a, 4, 5, ""}},
      {{b, 0, 2, ""}, {a, 2, 3, ""}, {b, 3, 5, ""}},
  };
  for (size_t i = 0; i < chains.size(); ++i) {
    SCOPED_TRACE("chain " + std::to_string(i));
    ExpectReference(Run(chains[i]));
  }
}

// Concurrent sessions on one spread peer run as shared batches, each with its own KV caches.
TEST_F(ChainMultiDeviceTest, ConcurrentClientsAreBatchedAndGetTheReference) {
  StartWholeModelPeers({"cpu,cpu"});
  const Peer& peer = peers_[0];
  constexpr int kClients = 4;
  std::vector<absl::StatusOr<Generation>> results(kClients, absl::UnknownError("not run"));
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      results[i] = [&]() -> absl::StatusOr<Generation> {
        kernels::BackendOptions backend;
        backend.name = "cpu";
        backend.threads = 1;
        SWARM_ASSIGN_OR_RETURN(auto client,
                               shard::LocalModel::Load(kModel, backend, /*load_blocks=*/false));
        return GenerateThroughChain(zmq_, *client, {{peer.ready.address, 0, 5, ""}},
                                    kReferenceTokens);
      }();
    });
  }
  for (std::thread& t : clients) t.join();
  for (int i = 0; i < kClients; ++i) {
    ASSERT_TRUE(results[i].ok()) << "client " << i << ": " << results[i].status();
    EXPECT_EQ(results[i]->text, ReadFile(kReferenceText)) << "client " << i;
  }

  Peer& stopped = peers_[0];
  ASSERT_EQ(StopPeer(stopped), 0) << ReadFile(stopped.log_path);
  const std::string log = ReadFile(stopped.log_path);
  stopped.process.reset();  // TearDown has nothing left to stop
  long long steps = 0, tokens = 0, batches = 0;
  const size_t at = log.find("serve: stopped after");
  ASSERT_NE(at, std::string::npos) << log;
  ASSERT_EQ(std::sscanf(log.c_str() + at, "serve: stopped after %lld steps (%lld tokens) in %lld",
                        &steps, &tokens, &batches),
            3);
  EXPECT_EQ(steps, kClients * kReferenceTokens);
  std::printf("%lld steps in %lld batches (%.2f steps per batch)\n", steps, batches,
              batches ? double(steps) / batches : 0.0);
  EXPECT_LT(batches, steps) << "concurrent sessions' steps never ran as one batch";
}

}  // namespace
}  // namespace swarm::chain_test
