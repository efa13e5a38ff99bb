// Pipelined steps and rollback through chains of real peer processes (`swarm serve`): several steps
// in flight give the outputs that the same steps run one by one give, bit for bit, and those of the
// in-process engine; a rollback followed by new steps equals a session that never saw the dropped
// positions; a peer killed or frozen while steps are in flight is replaced and every step's
// outputs are still right.
#include <signal.h>

#include <map>

#include "chain_test_util.h"

namespace swarm::chain_test {
namespace {

// Offers spare peers by block range, each once.
class SpareProvider : public router::HopProvider {
 public:
  explicit SpareProvider(std::vector<router::ChainHop> spares) : spares_(std::move(spares)) {}
  void ReportFailure(const router::ChainHop&) override {}
  void ReportSuccess(const router::ChainHop&) override {}
  absl::StatusOr<std::vector<router::ChainHop>> Replace(uint32_t first, uint32_t last) override {
    for (auto it = spares_.begin(); it != spares_.end(); ++it) {
      if (it->first_block == first && it->last_block == last) {
        std::vector<router::ChainHop> hops = {*it};
        spares_.erase(it);
        return hops;
      }
    }
    return absl::UnavailableError(absl::StrCat("no spare for blocks ", first, "..", last));
  }

 private:
  std::vector<router::ChainHop> spares_;
};

// A step: its length and input ([n_embd, n]).
struct StepInput {
  int64_t n = 0;
  std::vector<float> hidden;
};

class ChainPipelineTest : public ::testing::Test {
 protected:
  static constexpr int64_t kMaxLength = 256;

  void SetUp() override {
    // Two chains' worth of peers: [0,2) [2,4) [4,5), and spares for the last two ranges.
    peers_ = StartPeers(kModel, {{0, 2}, {2, 4}, {4, 5}, {2, 4}, {4, 5}});
    ASSERT_EQ(peers_.size(), 5u);
    for (const Peer& peer : peers_) ASSERT_FALSE(peer.ready.address.empty());
    kernels::BackendOptions backend;
    auto local = shard::LocalModel::Load(kModel, backend, /*load_blocks=*/true);
    ASSERT_TRUE(local.ok()) << local.status();
    local_ = std::move(*local);
  }

  void TearDown() override {
    for (Peer& peer : peers_) {
      if (peer.process == nullptr || !peer.alive()) continue;
      (void)peer.process->Signal(SIGCONT);
      EXPECT_EQ(StopPeer(peer), 0) << ReadFile(peer.log_path);
    }
  }

  int64_t n_embd() const { return local_->config.n_embd; }

  // Embeddings of arbitrary tokens, `n` positions.
  StepInput Input(int64_t n, int seed) {
    std::vector<int32_t> tokens;
    for (int64_t i = 0; i < n; ++i) {
      tokens.push_back(static_cast<int32_t>((seed * 131 + i * 37 + 11) % local_->config.n_vocab));
    }
    StepInput step{n, std::vector<float>(static_cast<size_t>(n * n_embd()))};
    EXPECT_TRUE(local_->head->Embed(tokens, step.hidden.data()).ok());
    return step;
  }

  std::unique_ptr<router::ChainSession> Open(const std::vector<size_t>& chain,
                                             router::HopProvider* provider = nullptr) {
    std::vector<const Peer*> hops;
    for (size_t i : chain) hops.push_back(&peers_[i]);
    router::ChainOptions options;
    options.max_length = kMaxLength;
    auto session = router::ChainSession::Open(zmq_, HopsOf(hops), local_->config.n_layer, n_embd(),
                                              options, provider);
    EXPECT_TRUE(session.ok()) << session.status();
    return session.ok() ? std::move(*session) : nullptr;
  }

  std::unique_ptr<shard::LocalPipeline> Local() {
    auto pipeline = shard::LocalPipeline::Create(*local_->blocks, kMaxLength);
    EXPECT_TRUE(pipeline.ok()) << pipeline.status();
    return pipeline.ok() ? std::move(*pipeline) : nullptr;
  }

  // Forward one step at a time.
  std::vector<std::vector<float>> RunEach(model::BlockPipeline& pipeline,
                                          const std::vector<StepInput>& steps) {
    std::vector<std::vector<float>> out;
    for (const StepInput& step : steps) {
      out.emplace_back(step.hidden.size());
      absl::Status status = pipeline.Forward(step.n, step.hidden.data(), out.back().data());
      EXPECT_TRUE(status.ok()) << status;
    }
    return out;
  }

  // Submits every step, then collects them all.
  std::vector<std::vector<float>> SubmitAll(model::BlockPipeline& pipeline,
                                            const std::vector<StepInput>& steps) {
    for (const StepInput& step : steps) {
      absl::Status status = pipeline.Submit(step.n, step.hidden);
      EXPECT_TRUE(status.ok()) << status;
    }
    EXPECT_EQ(pipeline.in_flight(), static_cast<int64_t>(steps.size()));
    return CollectAll(pipeline, steps);
  }

  std::vector<std::vector<float>> CollectAll(model::BlockPipeline& pipeline,
                                             const std::vector<StepInput>& steps) {
    std::vector<std::vector<float>> out;
    for (const StepInput& step : steps) {
      out.emplace_back(step.hidden.size());
      absl::Status status = pipeline.Collect(out.back().data());
      EXPECT_TRUE(status.ok()) << status;
    }
    EXPECT_EQ(pipeline.in_flight(), 0);
    return out;
  }

  zmq::context_t zmq_{1};
  std::vector<Peer> peers_;
  std::unique_ptr<shard::LocalModel> local_;
};

TEST_F(ChainPipelineTest, StepsInFlightEqualStepsOneByOneAndTheInProcessEngine) {
  const std::vector<StepInput> steps = {Input(5, 1), Input(1, 2), Input(3, 3), Input(2, 4)};
  auto each = Open({0, 1, 2});
  ASSERT_NE(each, nullptr);
  const auto expected = RunEach(*each, steps);
  each.reset();

  auto pipelined = Open({0, 1, 2});
  ASSERT_NE(pipelined, nullptr);
  const auto got = SubmitAll(*pipelined, steps);
  EXPECT_EQ(got, expected);
  EXPECT_EQ(pipelined->position(), 11);
  EXPECT_EQ(pipelined->max_in_flight(), 4);
  EXPECT_EQ(pipelined->history(2).size(), static_cast<size_t>(11 * n_embd()));

  auto local = Local();
  ASSERT_NE(local, nullptr);
  EXPECT_EQ(SubmitAll(*local, steps), expected);

  // Collecting with nothing in flight, and Forward with steps in flight, are refused.
  std::vector<float> out(static_cast<size_t>(n_embd()));
  EXPECT_TRUE(absl::IsFailedPrecondition(pipelined->Collect(out.data())));
  ASSERT_TRUE(pipelined->Submit(1, Input(1, 5).hidden).ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(pipelined->Forward(1, out.data(), out.data())));
  EXPECT_TRUE(pipelined->Collect(out.data()).ok());
}

TEST_F(ChainPipelineTest, RollbackThenNewStepsEqualASessionThatNeverSawTheDroppedPositions) {
  const std::vector<StepInput> first = {Input(5, 1), Input(3, 2), Input(2, 3)};
  const std::vector<StepInput> later = {Input(2, 6), Input(1, 7), Input(4, 8)};
  auto chain = Open({0, 1, 2});
  ASSERT_NE(chain, nullptr);
  (void)SubmitAll(*chain, first);
  // Mid-step: keeps the first 5 positions and one of the second step's 3; a step in flight is
  // dropped with the rest.
  ASSERT_TRUE(chain->Submit(3, Input(3, 9).hidden).ok());
  ASSERT_TRUE(chain->Rollback(6).ok());
  EXPECT_EQ(chain->in_flight(), 0);
  EXPECT_EQ(chain->position(), 6);
  EXPECT_EQ(chain->rollbacks(), 1);
  EXPECT_EQ(chain->rolled_back_positions(), 4 + 3);
  for (size_t hop = 0; hop < 3; ++hop) {
    EXPECT_EQ(chain->history(hop).size(), static_cast<size_t>(6 * n_embd()));
  }
  EXPECT_TRUE(absl::IsOutOfRange(chain->Rollback(7)));
  const auto got = SubmitAll(*chain, later);
  EXPECT_EQ(chain->position(), 6 + 7);

  // The kept prefix as it was computed (5, then the second step's first position), then the new
  // steps, in a fresh session.
  StepInput kept{1,
                 std::vector<float>(first[1].hidden.begin(), first[1].hidden.begin() + n_embd())};
  std::vector<StepInput> fresh_steps = {first[0], kept};
  fresh_steps.insert(fresh_steps.end(), later.begin(), later.end());
  auto fresh = Open({0, 1, 2});
  ASSERT_NE(fresh, nullptr);
  auto fresh_out = RunEach(*fresh, fresh_steps);
  fresh_out.erase(fresh_out.begin(), fresh_out.begin() + 2);
  EXPECT_EQ(got, fresh_out);

  // The in-process engine through the same submits and rollback.
  auto local = Local();
  ASSERT_NE(local, nullptr);
  (void)SubmitAll(*local, first);
  ASSERT_TRUE(local->Submit(3, Input(3, 9).hidden).ok());
  ASSERT_TRUE(local->Rollback(6).ok());
  EXPECT_EQ(SubmitAll(*local, later), got);
}

// Each token's step goes with two junk "draft" steps behind it, pipelined; the junk is rolled back
// once collected. Greedy text must be the reference, bit for bit with the in-process engine.
class JunkDraftPipeline : public model::BlockPipeline {
 public:
  JunkDraftPipeline(router::ChainSession& chain, int64_t n_embd) : chain_(chain), n_embd_(n_embd) {}
  absl::Status Forward(int64_t n_tokens, const float* hidden_in, float* hidden_out) override {
    const size_t n = static_cast<size_t>(n_embd_ * n_tokens);
    std::vector<float> input(hidden_in, hidden_in + n);
    const int64_t keep = chain_.position() + n_tokens;
    std::vector<float> junk(static_cast<size_t>(3 * n_embd_));
    for (size_t i = 0; i < junk.size(); ++i) junk[i] = 0.01f * static_cast<float>(i % 97);
    ++forwards_;
    SWARM_RETURN_IF_ERROR(chain_.Submit(n_tokens, input));
    SWARM_RETURN_IF_ERROR(chain_.Submit(2, std::span<const float>(junk).first(2 * n_embd_)));
    SWARM_RETURN_IF_ERROR(chain_.Submit(1, std::span<const float>(junk).first(n_embd_)));
    SWARM_RETURN_IF_ERROR(chain_.Collect(hidden_out));
    SWARM_RETURN_IF_ERROR(chain_.Collect(junk.data()));  // one collected, one still in flight
    return chain_.Rollback(keep);
  }
  bool waits_on_peers() const override { return true; }
  int64_t forwards() const { return forwards_; }

 private:
  int64_t forwards_ = 0;
  router::ChainSession& chain_;
  int64_t n_embd_;
};

TEST_F(ChainPipelineTest, GreedyWithRolledBackDraftsEqualsTheInProcessEngine) {
  auto chain = Open({0, 1, 2});
  ASSERT_NE(chain, nullptr);
  auto reference = Local();
  ASSERT_NE(reference, nullptr);
  JunkDraftPipeline drafts(*chain, n_embd());
  auto generation = GenerateGreedy(*local_, drafts, 100, reference.get());
  ASSERT_TRUE(generation.ok()) << generation.status();
  EXPECT_EQ(generation->nmse, 0.0);
  ASSERT_FALSE(generation->text.empty());
  EXPECT_TRUE(absl::StartsWith(ReadFile(kReferenceText),
                               generation->text.substr(0, generation->text.size() - 1)));
  EXPECT_GT(drafts.forwards(), 50);
  EXPECT_EQ(chain->rollbacks(), drafts.forwards());
  EXPECT_EQ(chain->rolled_back_positions(), 3 * drafts.forwards());
  EXPECT_EQ(chain->max_in_flight(), 3);
}

// A hop stops while three steps are in flight (they queue at the frozen peer first, so that they
// are surely in flight): it is replaced, its history replayed, the steps sent again.
class ChainPipelineFailoverTest : public ChainPipelineTest {
 protected:
  void Run(int signal) {
    const std::vector<StepInput> before = {Input(4, 1), Input(1, 2)};
    const std::vector<StepInput> steps = {Input(2, 3), Input(1, 4), Input(3, 5)};
    SpareProvider spares(HopsOf({&peers_[3], &peers_[4]}));
    auto chain = Open({0, 1, 2}, &spares);
    ASSERT_NE(chain, nullptr);
    (void)SubmitAll(*chain, before);
    ASSERT_TRUE(peers_[1].process->Signal(SIGSTOP).ok());
    for (const StepInput& step : steps) {
      ASSERT_TRUE(chain->Submit(step.n, step.hidden).ok());
    }
    if (signal == SIGKILL) {
      ASSERT_TRUE(peers_[1].process->Signal(SIGKILL).ok());
    }
    const auto got = CollectAll(*chain, steps);
    ASSERT_EQ(chain->failovers(), 1);
    EXPECT_EQ(chain->failover_events()[0].hop, 1);
    EXPECT_EQ(chain->failover_events()[0].replayed_positions, 5);
    EXPECT_EQ(chain->hops()[1].address, peers_[3].ready.address);
    EXPECT_EQ(chain->position(), 11);

    auto local = Local();
    ASSERT_NE(local, nullptr);
    (void)RunEach(*local, before);
    EXPECT_EQ(RunEach(*local, steps), got);
    chain.reset();
    if (signal == SIGKILL) (void)peers_[1].process->Wait(std::chrono::seconds(10));
    if (signal == SIGSTOP) (void)peers_[1].process->Signal(SIGCONT);
  }
};

TEST_F(ChainPipelineFailoverTest, KilledHopWithThreeStepsInFlight) { Run(SIGKILL); }

TEST_F(ChainPipelineFailoverTest, FrozenHopWithThreeStepsInFlight) { Run(SIGSTOP); }

}  // namespace
}  // namespace swarm::chain_test
