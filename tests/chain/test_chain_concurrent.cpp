// 8 clients at once through one 2-peer chain of real processes: the peers batch their steps
// together, and every client still gets exactly the reference text.
#include <thread>

#include "base/status_macros.h"
#include "chain_test_util.h"

namespace swarm::chain_test {
namespace {

TEST(ChainConcurrentTest, EightClientsThroughTwoPeersAllGetTheReferenceText) {
  std::vector<Peer> peers = StartPeers(kModel, {{0, 3}, {3, 5}});
  for (const Peer& peer : peers) ASSERT_FALSE(peer.ready.address.empty());
  constexpr int kClients = 8;
  zmq::context_t context(1);  // thread safe; each client has its own sockets
  std::vector<absl::StatusOr<Generation>> results(kClients, absl::UnknownError("not run"));
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      results[i] = [&]() -> absl::StatusOr<Generation> {
        kernels::BackendOptions backend;
        backend.threads = 1;
        SWARM_ASSIGN_OR_RETURN(auto client,
                               shard::LocalModel::Load(kModel, backend, /*load_blocks=*/false));
        return GenerateThroughChain(context, *client, HopsOf({&peers[0], &peers[1]}),
                                    kReferenceTokens);
      }();
    });
  }
  for (std::thread& t : clients) t.join();
  const std::string reference = ReadFile(kReferenceText);
  for (int i = 0; i < kClients; ++i) {
    ASSERT_TRUE(results[i].ok()) << "client " << i << ": " << results[i].status();
    EXPECT_EQ(results[i]->text, reference) << "client " << i;
  }
  for (Peer& peer : peers) {
    const int code = StopPeer(peer);
    EXPECT_EQ(code, 0) << ReadFile(peer.log_path);
    // The peers did batch: fewer forward batches than steps.
    const std::string log = ReadFile(peer.log_path);
    long long steps = 0, tokens = 0, batches = 0;
    const size_t at = log.find("serve: stopped after");
    ASSERT_NE(at, std::string::npos) << log;
    ASSERT_EQ(std::sscanf(log.c_str() + at, "serve: stopped after %lld steps (%lld tokens) in %lld",
                          &steps, &tokens, &batches),
              3);
    EXPECT_EQ(steps, kClients * kReferenceTokens);
    std::printf("peer %u:%u: %lld steps in %lld batches (%.2f steps per batch)\n",
                peer.ready.first_block, peer.ready.last_block, steps, batches,
                batches ? double(steps) / batches : 0.0);
    EXPECT_LT(batches, steps) << "concurrent sessions' steps never ran as one batch";
  }
}

}  // namespace
}  // namespace swarm::chain_test
