// A peer maps only the tensors of its blocks: its resident memory grows with its share of the
// model, not with the model. Three real peers of a synthetic model whose blocks dominate its size
// (8 blocks, n_embd 512, f16) serve blocks 0:1, 1:8 and 0:8; after each has run a few steps (so
// every weight it uses has been read), their VmRSS differ by about the bytes of the blocks they
// hold.
#include <unistd.h>

#include <filesystem>

#include "chain_test_util.h"

namespace swarm::chain_test {
namespace {

constexpr int64_t kLayers = 8, kEmbd = 512, kFf = 1376, kVocab = 4000;
// f16 matrices (q, k, v, o: [512, 512]; gate, up, down: 512 x 1376) plus two f32 norms.
constexpr double kBlockBytes = 2.0 * (4 * kEmbd * kEmbd + 3 * kEmbd * kFf) + 2 * 4 * kEmbd;

// VmRSS of a process in bytes (0 if unreadable).
double ResidentBytes(pid_t pid) {
  const std::string status = ReadFile(absl::StrCat("/proc/", pid, "/status"));
  const size_t at = status.find("VmRSS:");
  if (at == std::string::npos) return 0;
  return 1024.0 * std::strtod(status.c_str() + at + 6, nullptr);  // "VmRSS:   1234 kB"
}

TEST(ChainMemoryTest, ResidentMemoryGrowsWithThePeersShareOfTheModel) {
  const std::string model =
      absl::StrCat(::testing::TempDir(), "chain-memory-", ::getpid(), ".gguf");
  {
    Subprocess::Options options;
    options.argv = {SWARM_BINARY, "make-model",
                    "--n-layer",  std::to_string(kLayers),
                    "--n-embd",   std::to_string(kEmbd),
                    "--n-ff",     std::to_string(kFf),
                    "--n-head",   "8",
                    "--n-vocab",  std::to_string(kVocab),
                    "--type",     "f16",
                    "--seed",     "3",
                    "-o",         model};
    options.stderr_path = "/dev/null";
    auto make = Subprocess::Start(options);
    ASSERT_TRUE(make.ok()) << make.status();
    (void)(*make)->ReadAll(std::chrono::seconds(300));
    auto code = (*make)->Wait(std::chrono::seconds(60));
    ASSERT_TRUE(code.ok() && *code == 0) << "make-model failed";
  }
  struct Remove {
    std::string path;
    ~Remove() { std::filesystem::remove(path); }
  } remove{model};

  std::vector<Peer> peers = StartPeers(model, {{0, 1}, {1, 8}, {0, 8}}, {"--max-length", "64"});
  for (const Peer& peer : peers) ASSERT_FALSE(peer.ready.address.empty());
  kernels::BackendOptions backend;
  auto client = shard::LocalModel::Load(model, backend, /*load_blocks=*/false);
  ASSERT_TRUE(client.ok()) << client.status();
  zmq::context_t context(1);
  router::ChainOptions options;
  options.max_length = 16;
  for (std::vector<const Peer*> hops :
       {std::vector<const Peer*>{&peers[0], &peers[1]}, std::vector<const Peer*>{&peers[2]}}) {
    auto chain = router::ChainSession::Open(context, HopsOf(hops), kLayers, kEmbd, options);
    ASSERT_TRUE(chain.ok()) << chain.status();
    auto g = GenerateGreedy(**client, **chain, 4);
    ASSERT_TRUE(g.ok()) << g.status();
  }
  const double rss1 = ResidentBytes(peers[0].process->pid());
  const double rss7 = ResidentBytes(peers[1].process->pid());
  const double rss8 = ResidentBytes(peers[2].process->pid());
  std::printf(
      "VmRSS: 1 block %.1f MiB, 7 blocks %.1f MiB, 8 blocks %.1f MiB; one block is "
      "%.1f MiB, the model file %.1f MiB\n",
      rss1 / (1 << 20), rss7 / (1 << 20), rss8 / (1 << 20), kBlockBytes / (1 << 20),
      std::filesystem::file_size(model) / double(1 << 20));
  ASSERT_GT(rss1, 0);
  // What the extra blocks add is about their bytes (a copy per block would double it; mapping
  // the whole model in every peer would make it vanish).
  EXPECT_GT(rss8 - rss1, 0.7 * 7 * kBlockBytes);
  EXPECT_LT(rss8 - rss1, 1.5 * 7 * kBlockBytes);
  EXPECT_GT(rss7 - rss1, 0.7 * 6 * kBlockBytes);
  EXPECT_LT(rss7 - rss1, 1.5 * 6 * kBlockBytes);
  for (Peer& peer : peers) EXPECT_EQ(StopPeer(peer), 0) << ReadFile(peer.log_path);
}

}  // namespace
}  // namespace swarm::chain_test
