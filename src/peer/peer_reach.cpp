#include "peer/peer_reach.h"

#include <algorithm>
#include <cstdio>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "peer/peer_node.h"
#include "peer/reachability.h"
#include "peer/relay_service.h"
#include "peer/relay_tunnel.h"

namespace swarm::peer {

using std::chrono_literals::operator""ms;

PeerReach::PeerReach(zmq::context_t& context, registry::DhtRegistry& registry,
                     const RelayService* service, PeerReachOptions options)
    : context_(context), registry_(registry), service_(service), options_(std::move(options)) {}

PeerReach::~PeerReach() = default;

std::string PeerReach::address() const { return tunnel_ ? tunnel_->endpoint() : options_.address; }

std::string PeerReach::relay_service_address() const {
  return service_ != nullptr && reachable_ ? service_->address() : "";
}

bool PeerReach::relay_failed() const { return tunnel_ != nullptr && tunnel_->failed(); }

void PeerReach::Fill(registry::PeerRecord& record) const {
  record.address = address();
  record.relay_address = relay_service_address();
  record.relay_mbit = record.relay_address.empty()
                          ? 0
                          : static_cast<int32_t>(std::clamp<double>(service_->relay_mbit(), 0,
                                                                    registry::kMaxRelayMbit));
  record.relayed_peers =
      record.relay_address.empty()
          ? 0
          : static_cast<int32_t>(std::min<int64_t>(service_->stats().relayed_peers.load(),
                                                   registry::kMaxRelayedPeers));
  record.relayed = tunnel_ != nullptr;
  record.relay_peer = tunnel_ ? relay_peer_ : registry::PeerId();
}

bool PeerReach::Establish(ReachabilityMode mode,
                          const std::function<bool(std::chrono::milliseconds)>& wait) {
  const registry::PeerId me = registry_.peer_id();
  if (mode == ReachabilityMode::kPublic) {
    reachable_ = true;
  } else if (mode == ReachabilityMode::kRelayed) {
    reachable_ = false;
  } else {
    // The peers to ask: every other peer's relay service (a second look if none is known yet:
    // the DHT may still be filling).
    std::vector<std::string> helpers;
    for (int attempt = 0; attempt < 2 && helpers.empty(); ++attempt) {
      if (attempt > 0 && !wait(std::chrono::milliseconds(500))) return false;
      auto snapshot = registry_.Snapshot(options_.model_id);
      if (!snapshot.ok()) continue;
      for (const registry::PeerRecord& r : *snapshot) {
        if (r.peer_id != me && r.state == registry::PeerState::kOnline &&
            !r.relay_address.empty()) {
          helpers.push_back(r.relay_address);
        }
      }
    }
    std::shuffle(helpers.begin(), helpers.end(), std::mt19937(std::random_device{}()));
    const ReachabilityResult result =
        CheckReachability(context_, helpers, options_.address, options_.dial_back_nonce,
                          options_.client, options_.dial_back_timeout);
    std::fprintf(stderr, "serve: reachability at %s: %s (%s; asked %d, %d answered)\n",
                 options_.address.c_str(), ReachabilityName(result.verdict), result.detail.c_str(),
                 result.asked, result.answered);
    // Nobody to ask or nobody answering: the first peers of a swarm are its public ones.
    reachable_ = result.verdict != Reachability::kUnreachable;
  }
  if (reachable_) return true;
  return FindRelay(wait);
}

bool PeerReach::Repair(const std::function<bool(std::chrono::milliseconds)>& wait) {
  std::fprintf(stderr, "serve: relay %s lost (%s); finding another\n",
               relay_peer_.ShortHex().c_str(), tunnel_->failure().c_str());
  failed_relays_.insert(relay_peer_);
  tunnel_.reset();
  lost_at_ = std::chrono::steady_clock::now();
  return FindRelay(wait);
}

bool PeerReach::FindRelay(const std::function<bool(std::chrono::milliseconds)>& wait) {
  const registry::PeerId me = registry_.peer_id();
  for (int pass = 0;; ++pass) {
    // The relays of this snapshot and of earlier ones: right after a relay dies, the DHT may
    // answer slowly or in part (a search waits out the dead node), and the others seen before are
    // the best bet. So a repair tries those first, before reading the DHT: the sooner a relay
    // takes over, the sooner the peer's new endpoint is announced and its clients come back.
    const bool known_first =
        pass == 0 && std::any_of(relays_seen_.begin(), relays_seen_.end(), [&](const auto& seen) {
          return !failed_relays_.contains(seen.first);
        });
    if (known_first) {
      // Read below, on the next pass, if none of them accepts.
    } else if (auto snapshot = registry_.Snapshot(options_.model_id); snapshot.ok()) {
      for (registry::PeerRecord& r : *snapshot) {
        if (r.peer_id != me && r.state == registry::PeerState::kOnline &&
            !r.relay_address.empty() && r.relay_mbit > 0 && !r.relayed) {
          relays_seen_.insert_or_assign(r.peer_id, std::move(r));
        }
      }
    }
    std::vector<registry::PeerRecord> candidates;
    for (const auto& [id, r] : relays_seen_) {
      if (!known_first || !failed_relays_.contains(id)) candidates.push_back(r);
    }
    // Relays that failed us are tried last: they may be back.
    std::shuffle(candidates.begin(), candidates.end(), std::mt19937(std::random_device{}()));
    std::stable_sort(candidates.begin(), candidates.end(),
                     [&](const registry::PeerRecord& a, const registry::PeerRecord& b) {
                       const bool fa = failed_relays_.contains(a.peer_id);
                       const bool fb = failed_relays_.contains(b.peer_id);
                       if (fa != fb) return fb;
                       return a.relayed_peers < b.relayed_peers;
                     });
    for (const registry::PeerRecord& relay : candidates) {
      RelayTunnelOptions tunnel;
      tunnel.relay_address = relay.relay_address;
      tunnel.local_endpoint = options_.local_endpoint;
      tunnel.client = options_.client;
      auto opened = RelayTunnel::Open(context_, tunnel);
      if (!opened.ok()) {
        std::fprintf(stderr, "serve: relay %s refused: %s\n", relay.peer_id.ShortHex().c_str(),
                     std::string(opened.status().message()).c_str());
        relays_seen_.erase(relay.peer_id);  // until a snapshot shows it again
        continue;
      }
      tunnel_ = std::move(*opened);
      relay_peer_ = relay.peer_id;
      failed_relays_.erase(relay.peer_id);
      std::string since;
      if (lost_at_) {
        since = absl::StrCat(" (", (std::chrono::steady_clock::now() - *lost_at_) / 1ms,
                             " ms after the loss)");
        lost_at_.reset();
      }
      std::fprintf(stderr, "serve: unreachable at %s; relayed by %s at %s%s\n",
                   options_.address.c_str(), relay.peer_id.ShortHex().c_str(),
                   tunnel_->endpoint().c_str(), since.c_str());
      return true;
    }
    if (known_first) continue;  // now with a snapshot, at once
    std::fprintf(stderr, "serve: unreachable and no relay accepts yet; retrying\n");
    if (!wait(std::chrono::milliseconds(1000))) return false;
  }
}

}  // namespace swarm::peer
