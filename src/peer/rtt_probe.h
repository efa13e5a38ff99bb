// Round-trip times from a peer to the peers a chain would push to after it (those serving the
// block right after its own last one), measured with the protocol's Ping and announced in the
// peer's record (registry::PeerRecord::rtt_ms) so the route builder can cost peer-to-peer links.
// An RttProber owns its DEALER sockets (kept open between rounds, so only the first round pays
// for connecting): one thread at a time. NextPeers() is a pure function.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "registry/peer_record.h"
#include "transport/zmq_socket.h"

namespace swarm::peer {

// Online peers of `snapshot` (other than `self`, by id) that serve block self.blocks.last, i.e.
// that a route could enter right after `self`; the newest record per id, at most `max` of them
// (registry::kMaxRttEntries at most), lowest ids first. Empty when `self` ends at the model's last
// block.
std::vector<registry::PeerRecord> NextPeers(const registry::RegistrySnapshot& snapshot,
                                            const registry::PeerRecord& self,
                                            size_t max = registry::kMaxRttEntries);

struct RttProbeOptions {
  // Bound on one Measure() call, every peer and every ping included.
  std::chrono::milliseconds timeout{1000};
  // Pings per peer in one call, sent one after the other; the fastest counts (the first of a new
  // connection also pays for its handshake).
  int pings_per_peer = 3;
  transport::ClientOptions socket;
};

class RttProber {
 public:
  RttProber(zmq::context_t& context, RttProbeOptions options);
  ~RttProber();
  RttProber(const RttProber&) = delete;
  RttProber& operator=(const RttProber&) = delete;

  // Pings every peer (all at once) and returns the round-trip times, in milliseconds, of those
  // that answered within the timeout. Connections to peers not in `peers` are closed.
  absl::btree_map<registry::PeerId, double> Measure(const std::vector<registry::PeerRecord>& peers);

 private:
  zmq::context_t& context_;
  RttProbeOptions options_;
  // Per peer id: the address it was connected at and the socket.
  struct Link {
    std::string address;
    std::unique_ptr<transport::DealerClient> socket;
  };
  absl::flat_hash_map<registry::PeerId, Link> links_;
  uint64_t next_nonce_ = 1;
};

}  // namespace swarm::peer
