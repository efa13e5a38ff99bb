// Speculative decoding through a real 3-peer chain (`swarm serve` processes on loopback): greedy
// output identical to the stories260K reference with the lookup drafter and with the model as its
// own draft (acceptance 1), several chunks in flight through router::ChainSession's Submit/Collect
// and the session rolled back on every hop after each rejection.
#include <gtest/gtest.h>

#include "chain_test_util.h"
#include "model/lookup_drafter.h"
#include "model/model_drafter.h"
#include "model/speculative_generator.h"

namespace swarm::chain_test {
namespace {

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
    router::ChainSession& session = **chain;
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
    auto run = GenerateSpeculatively(**client, session, *drafter);
    ASSERT_TRUE(run.ok()) << run.status();
    EXPECT_EQ(run->text, reference) << (self_draft ? "self draft" : "lookup");
    EXPECT_GT(run->spec.drafted, 0);
    if (self_draft) {
      EXPECT_EQ(run->spec.accepted, run->spec.drafted);
      EXPECT_EQ(session.rollbacks(), 0);
      // Acceptance 1 over a round trip through processes: the loop keeps chunks in flight.
      EXPECT_GT(session.max_in_flight(), 1);
    } else {
      EXPECT_LT(run->spec.accepted, run->spec.drafted);
      EXPECT_GT(session.rollbacks(), 0);  // rejections rolled the peers back
    }
    EXPECT_EQ(session.max_in_flight(), run->spec.max_in_flight);
  }
  for (Peer& peer : peers) EXPECT_EQ(StopPeer(peer), 0);
}

}  // namespace
}  // namespace swarm::chain_test
