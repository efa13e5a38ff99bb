// Every architecture through a chain of real peer processes: on small synthetic llama3 (rope_freqs
// factors and YaRN scaling) and qwen3 (q/k norms, head size != n_embd / n_head) models, greedy
// text generated in-process equals the text generated through two and three peers (f32 codec),
// byte for byte.
#include <cstdio>

#include "chain_test_util.h"
#include "model/synthetic_model.h"

namespace swarm::chain_test {
namespace {

constexpr int kTokens = 60;

model::SyntheticModelSpec Spec(const std::string& arch) {
  model::SyntheticModelSpec s;
  s.arch = arch;
  s.n_layer = 3;
  s.n_embd = 64;
  s.n_ff = 128;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.n_vocab = 400;
  s.n_ctx = 256;  // llama3's factors then slow the low frequencies down within kTokens
  s.type = kernels::GgmlType::kQ8_0;
  s.seed = 5;
  s.n_threads = 1;
  if (arch == "llama3") {
    s.rope_scaling = "yarn";
    s.rope_scaling_factor = 4.0f;
  }
  return s;
}

class ChainArchitecturesTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ChainArchitecturesTest, InProcessTextEqualsChainText) {
  test_support::ScratchDir dir;
  const std::string path = dir.File(GetParam() + ".gguf");
  auto summary = model::WriteSyntheticModel(Spec(GetParam()), path);
  ASSERT_TRUE(summary.ok()) << summary.status();

  auto local = shard::LocalModel::Load(path, kernels::BackendOptions{}, /*load_blocks=*/true);
  ASSERT_TRUE(local.ok()) << local.status();
  auto pipeline = shard::LocalPipeline::Create(*(*local)->blocks, 1 + kTokens);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  auto reference = GenerateGreedy(**local, **pipeline, kTokens);
  ASSERT_TRUE(reference.ok()) << reference.status();
  ASSERT_EQ(reference->tokens.size(), static_cast<size_t>(kTokens));

  std::vector<Peer> peers = StartPeers(path, {{0, 1}, {1, 3}, {1, 2}, {2, 3}});
  for (const Peer& peer : peers) ASSERT_FALSE(peer.ready.address.empty());
  zmq::context_t zmq(1);
  for (const std::vector<const Peer*>& chain :
       {std::vector<const Peer*>{&peers[0], &peers[1]},
        std::vector<const Peer*>{&peers[0], &peers[2], &peers[3]}}) {
    auto generation = GenerateThroughChain(zmq, **local, HopsOf(chain), kTokens);
    ASSERT_TRUE(generation.ok()) << generation.status();
    EXPECT_EQ(generation->text, reference->text) << GetParam() << ", " << chain.size() << " hops";
    EXPECT_EQ(generation->tokens, reference->tokens);
  }
  std::printf("%s: %d tokens equal in-process and through 2 and 3 peers\n", GetParam().c_str(),
              kTokens);
  for (Peer& peer : peers) EXPECT_EQ(StopPeer(peer), 0) << ReadFile(peer.log_path);
}

INSTANTIATE_TEST_SUITE_P(Architectures, ChainArchitecturesTest,
                         ::testing::Values("llama3", "qwen3"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace swarm::chain_test
