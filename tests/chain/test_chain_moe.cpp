// Mixture-of-experts models through a chain of real peer processes: synthetic Mixtral and
// Qwen3-MoE models (4 blocks, every one a MoE block), each split over peers in two ways, with the
// cut inside the expert blocks. A prompt of several tokens (grouped by expert on each peer) and
// greedy decoding (only the chosen experts read) give the same tokens and text as the in-process
// engine, and with the f32 codec the same final hidden states bit for bit.
#include <set>

#include "chain_test_util.h"
#include "model/synthetic_model.h"
#include "transport/codec.h"

namespace swarm::chain_test {
namespace {

constexpr int kTokens = 24;

class ChainMoeTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    model::SyntheticModelSpec spec;
    spec.arch = GetParam();  // mixtral, or qwen3moe with experts narrower than n_ff
    if (spec.arch == "qwen3moe") spec.n_ff_exp = 64;
    spec.n_layer = 4, spec.n_embd = 64, spec.n_ff = 128, spec.n_head = 4, spec.n_head_kv = 2;
    spec.n_vocab = 320, spec.n_expert = 4, spec.n_expert_used = 2;
    spec.type = kernels::GgmlType::kQ8_0;
    spec.seed = 5;
    spec.n_threads = 1;
    model_ = dir_.File("mixtral.gguf");
    ASSERT_TRUE(model::WriteSyntheticModel(spec, model_).ok());
    peers_ = StartPeers(model_, {{0, 1}, {1, 3}, {3, 4}, {0, 2}, {2, 4}});
    for (const Peer& peer : peers_) ASSERT_FALSE(peer.ready.address.empty());
    kernels::BackendOptions backend;
    auto local = shard::LocalModel::Load(model_, backend, /*load_blocks=*/true);
    ASSERT_TRUE(local.ok()) << local.status();
    local_ = std::move(*local);
  }

  void TearDown() override {
    for (Peer& peer : peers_) EXPECT_EQ(StopPeer(peer), 0) << ReadFile(peer.log_path);
  }

  // Greedy generation after a prompt of several tokens; the in-process engine runs beside the
  // chain on the same inputs when `reference` is set.
  Generation Generate(model::BlockPipeline& blocks, model::BlockPipeline* reference) {
    ComparingPipeline pipeline(blocks, reference, local_->config.n_embd);
    model::SamplingParams params;
    params.temperature = 0;
    model::Sampler sampler(params);
    model::StreamingDecoder decoder(*local_->tokenizer);
    model::GenerateOptions options;
    options.max_new_tokens = kTokens;
    options.stop_at_end_of_generation = false;
    Generation out;
    auto stats = model::Generate(kPrompt, options, *local_->head, pipeline, sampler,
                                 *local_->tokenizer, [&](int32_t token) {
                                   out.tokens.push_back(token);
                                   out.text += decoder.Push(token);
                                   return true;
                                 });
    EXPECT_TRUE(stats.ok()) << stats.status();
    out.text += decoder.Finish();
    out.nmse = pipeline.nmse();
    return out;
  }

  const std::vector<int32_t> kPrompt = {1, 300, 17, 260, 42, 99, 7, 150, 3, 271};
  test_support::ScratchDir dir_;
  std::string model_;
  zmq::context_t zmq_{1};
  std::vector<Peer> peers_;
  std::unique_ptr<shard::LocalModel> local_;
};

TEST_P(ChainMoeTest, SplitsInsideTheExpertBlocksEqualTheInProcessEngine) {
  const int64_t length = static_cast<int64_t>(kPrompt.size()) + kTokens;
  auto in_process = shard::LocalPipeline::Create(*local_->blocks, length);
  ASSERT_TRUE(in_process.ok()) << in_process.status();
  const Generation expected = Generate(**in_process, nullptr);
  ASSERT_EQ(expected.tokens.size(), static_cast<size_t>(kTokens));
  // A model that always says the same token would hide a broken router.
  std::set<int32_t> distinct(expected.tokens.begin(), expected.tokens.end());
  EXPECT_GT(distinct.size(), 3u);

  for (const std::vector<size_t>& chain : {std::vector<size_t>{0, 1, 2}, {3, 4}}) {
    std::vector<const Peer*> hops;
    for (size_t i : chain) hops.push_back(&peers_[i]);
    router::ChainOptions options;
    options.codec = transport::ParseCodec("f32").value();
    options.max_length = length;
    auto session = router::ChainSession::Open(zmq_, HopsOf(hops), local_->config.n_layer,
                                              local_->config.n_embd, options);
    ASSERT_TRUE(session.ok()) << session.status();
    auto reference = shard::LocalPipeline::Create(*local_->blocks, length);
    ASSERT_TRUE(reference.ok()) << reference.status();
    const Generation got = Generate(**session, reference->get());
    EXPECT_EQ(got.tokens, expected.tokens) << "chain of " << chain.size() << " peers";
    EXPECT_EQ(got.text, expected.text);
    EXPECT_EQ(got.nmse, 0.0) << "f32 activations must pass through the chain unchanged";
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, ChainMoeTest, ::testing::Values("mixtral", "qwen3moe"));

}  // namespace
}  // namespace swarm::chain_test
