// How a serving peer is reached, for its announcer: it decides (once serving, so that its socket
// answers dial-back probes) whether others reach it at its own address, and if not keeps a relay
// (peer/relay_tunnel.h) whose endpoint it announces instead, picking another when that relay
// dies. Owned and used by the node's announcer thread alone.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <zmq.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "registry/dht_registry.h"
#include "registry/peer_record.h"
#include "transport/zmq_socket.h"

namespace swarm::peer {

class RelayService;
class RelayTunnel;
enum class ReachabilityMode;

struct PeerReachOptions {
  std::string model_id;
  std::string address;         // where this peer listens, as announced when reachable
  std::string local_endpoint;  // its ROUTER as this process connects to it
  uint64_t dial_back_nonce = 0;
  transport::ClientOptions client;  // dial-back requests and the relay tunnel
  std::chrono::milliseconds dial_back_timeout{6000};
};

class PeerReach {
 public:
  // `service`: this peer's relay service, or null when it runs none.
  PeerReach(zmq::context_t& context, registry::DhtRegistry& registry, const RelayService* service,
            PeerReachOptions options);
  ~PeerReach();

  // Decides, and when unreachable finds a relay, retrying until one accepts. `wait` sleeps for
  // the given time and says whether to give up (the peer is stopping): false then.
  bool Establish(ReachabilityMode mode, const std::function<bool(std::chrono::milliseconds)>& wait);
  // When the relay died: logs it and finds another (as Establish). False when giving up.
  bool Repair(const std::function<bool(std::chrono::milliseconds)>& wait);
  bool relay_failed() const;

  bool relayed() const { return tunnel_ != nullptr; }
  // The address to announce: the peer's own, or the relay's endpoint for it.
  std::string address() const;
  // Sets the record's address and relay fields.
  void Fill(registry::PeerRecord& record) const;
  std::string relay_service_address() const;
  const registry::PeerId& relay_peer() const { return relay_peer_; }

 private:
  bool FindRelay(const std::function<bool(std::chrono::milliseconds)>& wait);

  zmq::context_t& context_;
  registry::DhtRegistry& registry_;
  const RelayService* service_;
  PeerReachOptions options_;
  bool reachable_ = true;
  std::unique_ptr<RelayTunnel> tunnel_;
  registry::PeerId relay_peer_;
  absl::flat_hash_set<registry::PeerId> failed_relays_;
  absl::flat_hash_map<registry::PeerId, registry::PeerRecord> relays_seen_;
  // When the last relay was lost, until another one took over (for the log).
  std::optional<std::chrono::steady_clock::time_point> lost_at_;
};

}  // namespace swarm::peer
