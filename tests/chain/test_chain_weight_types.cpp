// Models whose matrices are Q4_1, Q5_0, Q5_1, Q5_K or IQ4_NL (synthetic, written by `swarm
// make-model
// --type`) load and generate, and greedy text in-process equals the text through a chain of two
// real peers (blocks 0:1 and 1:2), which run the same kernels on the same inputs.
#include <unistd.h>

#include <filesystem>

#include "absl/strings/ascii.h"
#include "chain_test_util.h"

namespace swarm::chain_test {
namespace {

constexpr int kLayers = 2, kTokens = 12;

class ChainWeightTypesTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ChainWeightTypesTest, InProcessEqualsTwoPeerChain) {
  const std::string type = GetParam();
  const std::string model =
      absl::StrCat(::testing::TempDir(), "chain-type-", type, "-", ::getpid(), ".gguf");
  {
    Subprocess::Options options;
    // n_embd and n_ff multiples of 256, so every matrix takes the type (none falls back).
    options.argv = {SWARM_BINARY, "make-model", "--n-layer", std::to_string(kLayers),
                    "--n-embd",   "256",        "--n-ff",    "512",
                    "--n-head",   "4",          "--n-vocab", "512",
                    "--type",     type,         "--seed",    "5",
                    "-o",         model};
    options.stderr_path = "/dev/null";
    auto make = Subprocess::Start(options);
    ASSERT_TRUE(make.ok()) << make.status();
    auto read = (*make)->ReadAll(std::chrono::seconds(120));
    const std::string out = read.ok() ? *read : read.status().ToString();
    auto code = (*make)->Wait(std::chrono::seconds(60));
    ASSERT_TRUE(code.ok() && *code == 0) << "make-model failed: " << out;
    // make-model names the matrix type it wrote, and no matrix fell back to another type.
    EXPECT_NE(absl::AsciiStrToLower(out).find(type), std::string::npos) << out;
    EXPECT_EQ(out.find("another type"), std::string::npos) << out;
  }
  struct Remove {
    std::string path;
    ~Remove() { std::filesystem::remove(path); }
  } remove{model};

  kernels::BackendOptions backend;
  auto local = shard::LocalModel::Load(model, backend, /*load_blocks=*/true);
  ASSERT_TRUE(local.ok()) << local.status();
  auto pipeline = shard::LocalPipeline::Create(*(*local)->blocks, 1 + kTokens);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  auto in_process = GenerateGreedy(**local, **pipeline, kTokens);
  ASSERT_TRUE(in_process.ok()) << in_process.status();
  ASSERT_EQ(in_process->tokens.size(), static_cast<size_t>(kTokens));

  std::vector<Peer> peers = StartPeers(model, {{0, 1}, {1, kLayers}});
  for (const Peer& peer : peers) ASSERT_FALSE(peer.ready.address.empty());
  zmq::context_t context(1);
  auto chained = GenerateThroughChain(context, **local, HopsOf({&peers[0], &peers[1]}), kTokens);
  ASSERT_TRUE(chained.ok()) << chained.status();
  EXPECT_EQ(chained->tokens, in_process->tokens);
  EXPECT_EQ(chained->text, in_process->text);
  for (Peer& peer : peers) EXPECT_EQ(StopPeer(peer), 0);
}

INSTANTIATE_TEST_SUITE_P(Types, ChainWeightTypesTest,
                         ::testing::Values("q4_1", "q5_0", "q5_1", "q5_k", "iq4_nl"));

}  // namespace
}  // namespace swarm::chain_test
