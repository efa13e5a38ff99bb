// Speculative decoding through a real 3-peer chain (`swarm serve` processes on loopback): greedy
// output identical to the stories260K reference with the lookup drafter and with the model as its
// own draft (acceptance 1), the chain rolled back after every rejection.
#include <gtest/gtest.h>

#include "chain_test_util.h"
#include "model/lookup_drafter.h"
#include "model/model_drafter.h"
#include "model/speculative_generator.h"

namespace swarm::chain_test {
namespace {

// Rolls a chain back where router::ChainSession cannot yet: a new session on the same peers, the
// kept positions replayed in one step. Exact but slow; the loop above it is what is tested here.
class ReplayingChain final : public model::BlockPipeline {
 public:
  ReplayingChain(zmq::context_t& zmq, std::vector<router::ChainHop> hops,
                 const model::ModelConfig& config, router::ChainOptions options)
      : zmq_(zmq), hops_(std::move(hops)), config_(config), options_(options) {}
  absl::Status Open() {
    SWARM_ASSIGN_OR_RETURN(session_, router::ChainSession::Open(zmq_, hops_, config_.n_layer,
                                                                config_.n_embd, options_));
    return absl::OkStatus();
  }
  absl::Status Forward(int64_t n, const float* in, float* out) override {
    inputs_.insert(inputs_.end(), in, in + n * config_.n_embd);
    return session_->Forward(n, in, out);
  }
  bool waits_on_peers() const override { return true; }
  absl::Status Rollback(int64_t position) override {
    DropCollected();
    const int64_t kept = position * config_.n_embd;
    if (kept > static_cast<int64_t>(inputs_.size())) {
      return absl::InvalidArgumentError("rollback past the end");
    }
    inputs_.resize(static_cast<size_t>(kept));
    ++rollbacks_;
    session_.reset();
    SWARM_RETURN_IF_ERROR(Open());
    if (position == 0) return absl::OkStatus();
    std::vector<float> out(inputs_.size());
    return session_->Forward(position, inputs_.data(), out.data());
  }
  int rollbacks() const { return rollbacks_; }

 private:
  zmq::context_t& zmq_;
  std::vector<router::ChainHop> hops_;
  const model::ModelConfig& config_;
  router::ChainOptions options_;
  std::unique_ptr<router::ChainSession> session_;
  std::vector<float> inputs_;  // [n_embd, positions] every kept position's input
  int rollbacks_ = 0;
};

struct Outcome {
  std::string text;
  model::SpeculativeStats spec;
};

absl::StatusOr<Outcome> GenerateSpeculatively(shard::LocalModel& client,
                                              model::BlockPipeline& chain,
                                              model::Drafter& drafter) {
  model::SamplingParams params;
  params.temperature = 0;
  model::Sampler sampler(params);
  model::StreamingDecoder decoder(*client.tokenizer);
  model::GenerateOptions options;
  options.max_new_tokens = kReferenceTokens;
  Outcome run;
  const std::vector<int32_t> prompt = {client.tokenizer->bos_id()};
  SWARM_RETURN_IF_ERROR(model::GenerateSpeculative(
                            prompt, options, {}, *client.head, chain, sampler, *client.tokenizer,
                            drafter,
                            [&](int32_t token) {
                              run.text += decoder.Push(token);
                              return true;
                            },
                            &run.spec)
                            .status());
  run.text += decoder.Finish() + "\n";
  return run;
}

TEST(ChainSpeculativeTest, GreedyThroughThreePeersIsTheReference) {
  std::vector<Peer> peers = StartPeers(kModel, {{0, 2}, {2, 4}, {4, 5}});
  ASSERT_EQ(peers.size(), 3u);
  auto client = shard::LocalModel::Load(kModel, {.name = "cpu", .threads = 1}, false);
  ASSERT_TRUE(client.ok()) << client.status();
  auto draft = shard::LocalModel::Load(kModel, {.name = "cpu", .threads = 1}, true);
  ASSERT_TRUE(draft.ok()) << draft.status();
  const std::string reference = ReadFile(kReferenceText);
  zmq::context_t zmq(1);
  router::ChainOptions options;
  options.max_length = 1 + kReferenceTokens;
  const auto hops = HopsOf({&peers[0], &peers[1], &peers[2]});

  for (const bool self_draft : {false, true}) {
    auto chain = router::ChainSession::Open(zmq, hops, (*client)->config.n_layer,
                                            (*client)->config.n_embd, options);
    ASSERT_TRUE(chain.ok()) << chain.status();
    // The session's own rollback where it has one, else a replaying stand-in on the same peers.
    std::unique_ptr<ReplayingChain> replaying;
    model::BlockPipeline* blocks = chain->get();
    if ((*chain)->Rollback(0).code() == absl::StatusCode::kUnimplemented) {
      chain->reset();
      replaying = std::make_unique<ReplayingChain>(zmq, hops, (*client)->config, options);
      ASSERT_TRUE(replaying->Open().ok());
      blocks = replaying.get();
    }
    std::unique_ptr<model::Drafter> drafter;
    std::unique_ptr<shard::LocalPipeline> draft_blocks;
    if (self_draft) {
      auto blocks = shard::LocalPipeline::Create(*(*draft)->blocks, options.max_length);
      ASSERT_TRUE(blocks.ok());
      draft_blocks = std::move(*blocks);
      model::SamplingParams greedy;
      greedy.temperature = 0;
      auto d = model::ModelDrafter::Create(*(*draft)->head, *draft_blocks, *(*draft)->tokenizer,
                                           *(*client)->tokenizer, greedy, options.max_length);
      ASSERT_TRUE(d.ok()) << d.status();
      drafter = std::move(*d);
    } else {
      drafter = std::make_unique<model::LookupDrafter>();
    }
    auto run = GenerateSpeculatively(**client, *blocks, *drafter);
    ASSERT_TRUE(run.ok()) << run.status();
    EXPECT_EQ(run->text, reference) << (self_draft ? "self draft" : "lookup");
    EXPECT_GT(run->spec.drafted, 0);
    if (self_draft) {
      EXPECT_EQ(run->spec.accepted, run->spec.drafted);
    } else {
      EXPECT_LT(run->spec.accepted, run->spec.drafted);  // rejections rolled the peers back
      if (replaying != nullptr) {
        EXPECT_GT(replaying->rollbacks(), 0);
      }
    }
  }
  for (Peer& peer : peers) EXPECT_EQ(StopPeer(peer), 0);
}

}  // namespace
}  // namespace swarm::chain_test
