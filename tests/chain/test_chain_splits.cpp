// Every way of splitting stories260K's 5 blocks over 2, 3 and 5 real peer processes on loopback
// (4 + 6 + 1 = 11 chains): with the f32 codec, greedy 200 tokens equal the reference text byte
// for byte and the final hidden states equal the in-process engine's bit for bit; with f16, bf16
// and int8 the agreement with the reference tokens and the error of the final hidden states are
// measured, printed and held to bounds. One peer per block range (14 processes) serves every
// chain, started once per test.
#include <cstdio>
#include <map>

#include "chain_test_util.h"
#include "transport/codec.h"

namespace swarm::chain_test {
namespace {

// The block boundaries of every composition of 5 blocks into `parts` non-empty parts.
std::vector<std::vector<uint32_t>> Splits(uint32_t n_blocks, uint32_t parts) {
  std::vector<std::vector<uint32_t>> out;
  std::vector<uint32_t> cuts = {0};
  auto recurse = [&](auto& self, uint32_t from, uint32_t left) -> void {
    if (left == 1) {
      cuts.push_back(n_blocks);
      out.push_back(cuts);
      cuts.pop_back();
      return;
    }
    for (uint32_t next = from + 1; next + (left - 1) <= n_blocks; ++next) {
      cuts.push_back(next);
      self(self, next, left - 1);
      cuts.pop_back();
    }
  };
  recurse(recurse, 0, parts);
  return out;
}

std::string Describe(const std::vector<uint32_t>& cuts) {
  std::string s;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    absl::StrAppend(&s, i ? " " : "", cuts[i], ":", cuts[i + 1]);
  }
  return s;
}

class ChainSplitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (uint32_t parts : {2u, 3u, 5u}) {
      for (auto& cuts : Splits(5, parts)) chains_.push_back(cuts);
    }
    ASSERT_EQ(chains_.size(), 11u);
    std::vector<std::pair<uint32_t, uint32_t>> ranges;
    for (const auto& cuts : chains_) {
      for (size_t i = 0; i + 1 < cuts.size(); ++i) {
        if (!peer_of_.contains({cuts[i], cuts[i + 1]})) {
          peer_of_[{cuts[i], cuts[i + 1]}] = ranges.size();
          ranges.push_back({cuts[i], cuts[i + 1]});
        }
      }
    }
    ASSERT_EQ(ranges.size(), 14u);  // every contiguous range but the whole model
    peers_ = StartPeers(kModel, ranges);
    for (const Peer& peer : peers_) ASSERT_FALSE(peer.ready.address.empty());

    kernels::BackendOptions backend;
    auto local = shard::LocalModel::Load(kModel, backend, /*load_blocks=*/true);
    ASSERT_TRUE(local.ok()) << local.status();
    local_ = std::move(*local);
    auto pipeline = shard::LocalPipeline::Create(*local_->blocks, 1 + kReferenceTokens);
    ASSERT_TRUE(pipeline.ok()) << pipeline.status();
    auto reference = GenerateGreedy(*local_, **pipeline, kReferenceTokens);
    ASSERT_TRUE(reference.ok()) << reference.status();
    ASSERT_EQ(reference->text, ReadFile(kReferenceText)) << "the in-process engine is wrong";
    reference_ = *reference;
  }

  void TearDown() override {
    for (Peer& peer : peers_) {
      EXPECT_EQ(StopPeer(peer), 0)
          << "blocks " << peer.ready.first_block << ":" << peer.ready.last_block << "\n"
          << ReadFile(peer.log_path);
    }
  }

  std::vector<const Peer*> ChainOf(const std::vector<uint32_t>& cuts) const {
    std::vector<const Peer*> chain;
    for (size_t i = 0; i + 1 < cuts.size(); ++i) {
      chain.push_back(&peers_[peer_of_.at({cuts[i], cuts[i + 1]})]);
    }
    return chain;
  }

  // Greedy 200 tokens through the chain, the in-process engine running beside it on the same
  // inputs.
  Generation Run(const std::vector<uint32_t>& cuts, const std::string& codec) {
    router::ChainOptions options;
    options.codec = transport::ParseCodec(codec).value();
    options.max_length = 1 + kReferenceTokens;
    auto chain = router::ChainSession::Open(zmq_, HopsOf(ChainOf(cuts)), local_->config.n_layer,
                                            local_->config.n_embd, options);
    EXPECT_TRUE(chain.ok()) << chain.status();
    if (!chain.ok()) return {};
    auto reference = shard::LocalPipeline::Create(*local_->blocks, 1 + kReferenceTokens);
    EXPECT_TRUE(reference.ok()) << reference.status();
    if (!reference.ok()) return {};
    auto generation = GenerateGreedy(*local_, **chain, kReferenceTokens, reference->get());
    EXPECT_TRUE(generation.ok()) << generation.status();
    // Every hop's share of the steps' time is a duration (a hop whose output arrives before the
    // previous hop's copy added nothing, not a negative time).
    for (const router::HopTiming& t : (*chain)->timings()) {
      EXPECT_GT(t.steps, 0);
      EXPECT_GE(t.seconds, 0.0);
    }
    return generation.ok() ? *generation : Generation{};
  }

  zmq::context_t zmq_{1};
  std::vector<std::vector<uint32_t>> chains_;
  std::map<std::pair<uint32_t, uint32_t>, size_t> peer_of_;
  std::vector<Peer> peers_;
  std::unique_ptr<shard::LocalModel> local_;
  Generation reference_;
};

TEST_F(ChainSplitsTest, F32EqualsTheReferenceOverEverySplit) {
  for (const auto& cuts : chains_) {
    SCOPED_TRACE("chain " + Describe(cuts));
    Generation g = Run(cuts, "f32");
    EXPECT_EQ(g.text, ReadFile(kReferenceText));
    EXPECT_EQ(g.tokens, reference_.tokens);
    EXPECT_EQ(g.nmse, 0.0) << "f32 activations must pass through the chain unchanged";
  }
}

TEST_F(ChainSplitsTest, LossyCodecsAgreementAndErrorOverEverySplit) {
  // Bounds well above what stories260K shows (see the printed table), far below what a broken
  // codec or a mixed-up hop would give (NMSE of order 1, agreement near 0).
  struct Bound {
    const char* codec;
    double max_nmse;
    int min_agreement;
  };
  const Bound bounds[] = {{"f16", 2e-6, 50}, {"bf16", 1e-4, 20}, {"int8", 1e-3, 20}};
  std::printf("%-6s %-20s %10s %12s\n", "codec", "chain", "agreement", "nmse");
  for (const Bound& bound : bounds) {
    int min_agreement = kReferenceTokens;
    double max_nmse = 0;
    for (const auto& cuts : chains_) {
      SCOPED_TRACE(absl::StrCat(bound.codec, " chain ", Describe(cuts)));
      Generation g = Run(cuts, bound.codec);
      ASSERT_EQ(g.tokens.size(), static_cast<size_t>(kReferenceTokens));
      const int agreement = Agreement(g.tokens, reference_.tokens);
      std::printf("%-6s %-20s %6d/%d %12.3e\n", bound.codec, Describe(cuts).c_str(), agreement,
                  kReferenceTokens, g.nmse);
      EXPECT_GT(g.nmse, 0.0) << "a lossy codec that changes nothing is not running";
      EXPECT_LE(g.nmse, bound.max_nmse);
      EXPECT_GE(agreement, bound.min_agreement);
      min_agreement = std::min(min_agreement, agreement);
      max_nmse = std::max(max_nmse, g.nmse);
    }
    std::printf("%-6s %-20s %6d/%d %12.3e  (worst over the 11 chains)\n", bound.codec, "all",
                min_agreement, kReferenceTokens, max_nmse);
  }
  std::fflush(stdout);
}

}  // namespace
}  // namespace swarm::chain_test
