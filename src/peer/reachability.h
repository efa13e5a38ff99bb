// Whether others can reach this peer at the address it announces: it asks helpers (other peers'
// relay services, peer/relay_service.h) to dial that address back on a fresh connection; the
// answer there must carry a nonce only this peer knows (its PeerServer echoes it to a
// DialBackProbe). A blocking call for the node's announcer thread; any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <zmq.hpp>

#include "transport/zmq_socket.h"

namespace swarm::peer {

enum class Reachability {
  kUnknown,      // no helper answered (or none to ask)
  kReachable,    // a helper reached the address and got the nonce
  kUnreachable,  // helpers answered, none reached it
};
const char* ReachabilityName(Reachability reachability);

struct ReachabilityResult {
  Reachability verdict = Reachability::kUnknown;
  std::string detail;  // what the helpers said
  int asked = 0;
  int answered = 0;
};

// Asks every helper at once (at most `max_helpers` of them) and waits up to `timeout`.
ReachabilityResult CheckReachability(zmq::context_t& context, std::span<const std::string> helpers,
                                     const std::string& address, uint64_t nonce,
                                     const transport::ClientOptions& client,
                                     std::chrono::milliseconds timeout, size_t max_helpers = 3);

// A random nonce for dial-backs (never 0).
uint64_t RandomDialBackNonce();

}  // namespace swarm::peer
