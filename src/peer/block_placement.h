// Automatic block placement: which consecutive blocks a peer should serve, and when it should
// move. Pure functions of a registry snapshot; callable from any thread.
//
// The swarm's throughput at block i is the sum, over joining and online peers that serve i, of
// the tokens per second each can push through its whole span:
//   min(decode_tps_per_block / span, network_tps if measured).
// Blocks nobody serves have throughput 0.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "registry/peer_record.h"

namespace swarm::peer {

// Tokens/s a peer adds to each block of its span (the formula above).
double PeerBlockThroughput(const registry::PeerRecord& peer);
double PeerBlockThroughput(double tps_per_block, int64_t span, double network_tps = 0);

// Per-block swarm throughput, [n_blocks]. Offline peers and peers with an id in `exclude` are
// left out; ranges are clipped to the model.
std::vector<double> SwarmThroughput(const registry::RegistrySnapshot& snapshot, int64_t n_blocks,
                                    const registry::PeerId* exclude = nullptr);

// The window of `num_blocks_to_serve` consecutive blocks a new peer should take: the one that
// leaves the swarm's weakest block strongest once this peer (my_tps_per_block) joins it; among
// equals, the window whose throughputs, sorted ascending, are lexicographically smallest (the
// most uncovered blocks, then the weakest ones); then the lowest start. num_blocks_to_serve is
// capped at n_blocks.
absl::StatusOr<registry::BlockRange> ChooseBlocks(const registry::RegistrySnapshot& snapshot,
                                                  int64_t n_blocks, int64_t num_blocks_to_serve,
                                                  double my_tps_per_block);
// Same, from per-block throughputs already computed.
registry::BlockRange ChooseBlocksFromThroughput(const std::vector<double>& throughput,
                                                int64_t num_blocks_to_serve,
                                                double my_block_throughput);

struct MoveOptions {
  // Move when the swarm's weakest block would get this many times stronger (or when moving
  // covers blocks nobody serves).
  double min_improvement = 1.2;
};

// A new range for `me` (same size) when moving there covers blocks that nobody serves, or, with
// every block covered, raises the weakest block's throughput by more than min_improvement.
// Never returns a range that leaves uncovered a block that only `me` serves. Entries of
// `snapshot` with me's id are ignored (`me` is authoritative). nullopt: stay.
std::optional<registry::BlockRange> ShouldMove(const registry::RegistrySnapshot& snapshot,
                                               const registry::PeerRecord& me, int64_t n_blocks,
                                               const MoveOptions& options = {});

}  // namespace swarm::peer
