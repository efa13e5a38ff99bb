#include <gtest/gtest.h>

#include <random>

#include "peer/block_placement.h"

namespace swarm::peer {
namespace {

registry::PeerRecord Peer(const std::string& name, int first, int last, double tps = 1000,
                          registry::PeerState state = registry::PeerState::kOnline) {
  registry::PeerRecord r;
  r.peer_id = registry::PeerId::FromName(name);
  r.address = "tcp://127.0.0.1:7000";
  r.model_id = "m";
  r.blocks = {first, last};
  r.state = state;
  r.decode_tps_per_block = tps;
  return r;
}

bool AllCovered(const registry::RegistrySnapshot& peers, int n_blocks) {
  for (double t : SwarmThroughput(peers, n_blocks)) {
    if (t <= 0) return false;
  }
  return true;
}

TEST(BlockPlacementTest, ThroughputPerBlock) {
  registry::RegistrySnapshot peers = {Peer("a", 0, 4, 1000), Peer("b", 2, 6, 800),
                                      Peer("off", 0, 6, 1e6, registry::PeerState::kOffline),
                                      Peer("join", 5, 6, 100, registry::PeerState::kJoining)};
  peers[1].network_tps = 150;  // its link, not its compute, limits it
  const std::vector<double> t = SwarmThroughput(peers, 6);
  ASSERT_EQ(t.size(), 6u);
  EXPECT_DOUBLE_EQ(t[0], 250);        // 1000 / 4 blocks
  EXPECT_DOUBLE_EQ(t[2], 250 + 150);  // min(800 / 4, 150)
  EXPECT_DOUBLE_EQ(t[4], 150);
  EXPECT_DOUBLE_EQ(t[5], 150 + 100);  // joining peers count: they are about to serve
}

TEST(BlockPlacementTest, ChoosesWeakestWindowLowestStartOnTies) {
  // Empty swarm: the first window.
  auto r = ChooseBlocks({}, 10, 4, 1000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (registry::BlockRange{0, 4}));
  // Uncovered blocks 4..9: the lowest-starting window inside them.
  r = ChooseBlocks({Peer("a", 0, 4)}, 10, 4, 1000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (registry::BlockRange{4, 8}));
  // Only 8..9 uncovered: a window that covers both, even though it overlaps a's range.
  r = ChooseBlocks({Peer("a", 0, 4), Peer("b", 4, 8)}, 10, 4, 1000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (registry::BlockRange{6, 10}));
  // Fully covered: the slowest stretch.
  r = ChooseBlocks({Peer("a", 0, 5, 5000), Peer("b", 5, 10, 500)}, 10, 3, 1000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (registry::BlockRange{5, 8}));
  // More blocks than the model: all of it.
  r = ChooseBlocks({}, 3, 8, 1000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (registry::BlockRange{0, 3}));
  EXPECT_FALSE(ChooseBlocks({}, 0, 1, 1).ok());
  EXPECT_FALSE(ChooseBlocks({}, 4, 0, 1).ok());
  EXPECT_FALSE(ChooseBlocks({}, 4, 2, -1).ok());
}

TEST(BlockPlacementTest, PrefersCoveringHolesOverSummedThroughput) {
  // Summed over a window, [2, 4) has less throughput than [0, 2), yet block 0 is uncovered.
  registry::RegistrySnapshot peers = {Peer("a", 1, 2, 100)};
  auto r = ChooseBlocks(peers, 4, 2, 1000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (registry::BlockRange{2, 4}));  // two holes beat one hole
  peers.push_back(Peer("b", 2, 4, 1000));
  r = ChooseBlocks(peers, 4, 2, 1000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (registry::BlockRange{0, 2}));
}

TEST(BlockPlacementTest, PeersJoiningOneAtATimeCoverEveryBlock) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 50; ++trial) {
    const int n_blocks = 5 + static_cast<int>(rng() % 60);
    registry::RegistrySnapshot swarm;
    int joined = 0, min_span = n_blocks;
    while (!AllCovered(swarm, n_blocks)) {
      const int span = 1 + static_cast<int>(rng() % 12);
      min_span = std::min(min_span, span);
      const double tps = 100 + rng() % 5000;
      auto r = ChooseBlocks(swarm, n_blocks, span, tps);
      ASSERT_TRUE(r.ok());
      ASSERT_GE(r->first, 0);
      ASSERT_LE(r->last, n_blocks);
      registry::PeerRecord p =
          Peer("t" + std::to_string(trial) + "p" + std::to_string(joined), r->first, r->last, tps,
               joined % 2 ? registry::PeerState::kJoining : registry::PeerState::kOnline);
      swarm.push_back(p);
      ++joined;
      // Each newcomer covers at least one new block while any is uncovered, so this ends.
      ASSERT_LE(joined, n_blocks) << "trial " << trial;
    }
    // Tiles without gaps: never more peers than blocks / the smallest span, rounded up, + 1.
    EXPECT_LE(joined, (n_blocks + min_span - 1) / min_span + 1) << "trial " << trial;
  }
}

TEST(BlockPlacementTest, EqualSpansTileExactly) {
  registry::RegistrySnapshot swarm;
  for (int k = 0; k < 5; ++k) {
    auto r = ChooseBlocks(swarm, 24, 5, 1000);
    ASSERT_TRUE(r.ok());
    swarm.push_back(Peer("p" + std::to_string(k), r->first, r->last));
  }
  EXPECT_EQ(swarm[0].blocks, (registry::BlockRange{0, 5}));
  EXPECT_EQ(swarm[3].blocks, (registry::BlockRange{15, 20}));
  EXPECT_EQ(swarm[4].blocks, (registry::BlockRange{19, 24}));
  EXPECT_TRUE(AllCovered(swarm, 24));
  // The sixth doubles the weakest stretch.
  auto r = ChooseBlocks(swarm, 24, 5, 1000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (registry::BlockRange{0, 5}));
}

TEST(BlockPlacementTest, AnotherPeerMovesToCoverABlockWhoseServerLeft) {
  registry::RegistrySnapshot swarm = {Peer("a", 0, 4), Peer("b", 0, 4), Peer("c", 4, 8)};
  EXPECT_FALSE(ShouldMove(swarm, swarm[0], 8).has_value()) << "balanced swarm moved";
  swarm.pop_back();  // c, the only server of 4..7, leaves
  auto move = ShouldMove(swarm, swarm[0], 8);
  ASSERT_TRUE(move.has_value());
  EXPECT_EQ(*move, (registry::BlockRange{4, 8}));
  swarm[0].blocks = *move;
  EXPECT_TRUE(AllCovered(swarm, 8));
  // Now b is the only server of 0..3: it must stay.
  EXPECT_FALSE(ShouldMove(swarm, swarm[1], 8).has_value());
  EXPECT_FALSE(ShouldMove(swarm, swarm[0], 8).has_value());
}

TEST(BlockPlacementTest, NeverUncoversABlockOnlyItServes) {
  // a alone serves block 4 (b: 0..3, c: 5..7); blocks 0..3 are weak, but a's moves must keep 4.
  registry::RegistrySnapshot swarm = {Peer("a", 2, 6, 4000), Peer("b", 0, 4, 100),
                                      Peer("c", 5, 8, 100)};
  auto move = ShouldMove(swarm, swarm[0], 8);
  if (move) {
    EXPECT_TRUE(move->Contains(4)) << move->first << ".." << move->last;
  }
  // A sole server of its whole range never moves, however weak the rest of the swarm is.
  registry::RegistrySnapshot lonely = {Peer("a", 0, 4, 100), Peer("b", 4, 8, 10000),
                                       Peer("c", 4, 8, 10000)};
  EXPECT_FALSE(ShouldMove(lonely, lonely[0], 8).has_value());
  // Randomised: whatever ShouldMove returns keeps every covered block covered.
  std::mt19937 rng(11);
  int moves = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const int n = 4 + static_cast<int>(rng() % 20);
    registry::RegistrySnapshot s;
    const int peers = 1 + static_cast<int>(rng() % 6);
    for (int k = 0; k < peers; ++k) {
      const int a = static_cast<int>(rng() % n);
      const int b = a + 1 + static_cast<int>(rng() % (n - a));
      s.push_back(
          Peer("r" + std::to_string(trial) + "_" + std::to_string(k), a, b, 50 + rng() % 3000));
    }
    const registry::PeerRecord me = s[rng() % s.size()];
    const std::vector<double> before = SwarmThroughput(s, n);
    auto m = ShouldMove(s, me, n);
    if (!m) continue;
    ++moves;
    EXPECT_EQ(m->size(), me.blocks.size());
    registry::RegistrySnapshot after = s;
    for (registry::PeerRecord& p : after) {
      if (p.peer_id == me.peer_id) p.blocks = *m;
    }
    const std::vector<double> t = SwarmThroughput(after, n);
    for (int i = 0; i < n; ++i) {
      if (before[i] > 0) {
        EXPECT_GT(t[i], 0) << "trial " << trial << " uncovered block " << i;
      }
    }
  }
  EXPECT_GT(moves, 30) << "the randomised check hardly exercised moves";
}

TEST(BlockPlacementTest, MovesOnlyForAClearImprovement) {
  // 0..3 served three times, 4..7 once by a slow peer: a fast peer from the crowded half moves.
  registry::RegistrySnapshot swarm = {Peer("a", 0, 4, 4000), Peer("b", 0, 4, 4000),
                                      Peer("c", 0, 4, 4000), Peer("d", 4, 8, 400)};
  auto move = ShouldMove(swarm, swarm[0], 8);
  ASSERT_TRUE(move.has_value());
  EXPECT_EQ(*move, (registry::BlockRange{4, 8}));
  // Nearly balanced: the weakest block has 1000 tokens/s and a slow peer cannot raise that by
  // 20% anywhere: stay.
  registry::RegistrySnapshot balanced = {Peer("a", 0, 4, 400), Peer("b", 0, 4, 4000),
                                         Peer("c", 4, 8, 4000)};
  EXPECT_FALSE(ShouldMove(balanced, balanced[0], 8).has_value());
  // The snapshot's (stale) record of `me` is ignored: counted, its claimed blocks 4..7 at a huge
  // throughput would make staying look right.
  registry::RegistrySnapshot stale = swarm;
  stale[0].blocks = {4, 8};
  stale[0].decode_tps_per_block = 1e6;
  EXPECT_EQ(ShouldMove(stale, swarm[0], 8),
            std::optional<registry::BlockRange>(registry::BlockRange{4, 8}));
}

}  // namespace
}  // namespace swarm::peer
