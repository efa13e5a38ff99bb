#include "peer/rtt_probe.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "transport/protocol.h"
#include "transport/request_reply.h"

namespace swarm::peer {

using namespace swarm::transport;  // the wire this file speaks
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

std::vector<registry::PeerRecord> NextPeers(const registry::RegistrySnapshot& snapshot,
                                            const registry::PeerRecord& self, size_t max) {
  max = std::min(max, registry::kMaxRttEntries);
  // Newest record per id first (a newer offline copy hides an older online one), then filtered.
  absl::btree_map<registry::PeerId, const registry::PeerRecord*> newest;
  for (const registry::PeerRecord& r : snapshot) {
    auto [it, inserted] = newest.try_emplace(r.peer_id, &r);
    if (!inserted && r.seq > it->second->seq) it->second = &r;
  }
  std::vector<registry::PeerRecord> out;
  for (const auto& [id, r] : newest) {
    if (out.size() >= max) break;
    if (id == self.peer_id || r->state != registry::PeerState::kOnline) continue;
    if (!r->blocks.Contains(self.blocks.last)) continue;
    out.push_back(*r);
  }
  return out;
}

RttProber::RttProber(zmq::context_t& context, RttProbeOptions options)
    : context_(context), options_(std::move(options)) {}

RttProber::~RttProber() = default;

absl::btree_map<registry::PeerId, double> RttProber::Measure(
    const std::vector<registry::PeerRecord>& peers) {
  absl::flat_hash_map<registry::PeerId, const registry::PeerRecord*> wanted;
  for (const registry::PeerRecord& p : peers) wanted[p.peer_id] = &p;
  absl::erase_if(links_, [&](const auto& entry) {
    auto it = wanted.find(entry.first);
    return it == wanted.end() || it->second->address != entry.second.address;
  });

  struct Probe {
    registry::PeerId id;
    transport::DealerClient* socket = nullptr;
    uint64_t nonce = 0;  // of the ping in flight
    Clock::time_point sent;
    int pings = 0;
    bool waiting = false;
    double best_ms = std::numeric_limits<double>::infinity();
  };
  std::vector<Probe> probes;
  for (const auto& [id, record] : wanted) {
    auto it = links_.find(id);
    if (it == links_.end()) {
      auto socket = transport::DealerClient::Connect(context_, record->address, options_.socket);
      if (!socket.ok()) continue;  // a malformed address: nothing to measure
      it = links_.emplace(id, Link{record->address, std::move(*socket)}).first;
    }
    Probe probe;
    probe.id = id;
    probe.socket = it->second.socket.get();
    probes.push_back(probe);
  }

  auto send = [&](Probe& probe) {
    probe.nonce = next_nonce_++;
    const auto now = Clock::now();
    const uint64_t now_ns = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count());
    auto wire = transport::EncodeMessage(probe.nonce, transport::Ping{probe.nonce, now_ns});
    if (!wire.ok() || !probe.socket->Send(*wire).ok()) return;
    probe.sent = now;
    probe.waiting = true;
    ++probe.pings;
  };
  for (Probe& probe : probes) send(probe);

  const auto deadline = Clock::now() + options_.timeout;
  std::vector<zmq::socket_ref> sockets;
  std::vector<size_t> index;
  while (true) {
    sockets.clear();
    index.clear();
    for (size_t i = 0; i < probes.size(); ++i) {
      if (!probes[i].waiting) continue;
      sockets.push_back(probes[i].socket->socket());
      index.push_back(i);
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (sockets.empty() || left.count() <= 0) break;
    auto readable = transport::PollReadable(sockets, left);
    if (!readable.ok() || readable->empty()) break;
    for (size_t j : *readable) {
      Probe& probe = probes[index[j]];
      auto pong_of_this_ping = [&probe](const transport::DecodedMessage& m) {
        auto* pong = std::get_if<transport::Pong>(&m.body);
        return pong != nullptr &&
               pong->nonce == probe.nonce;  // not a late one, from an earlier ping
      };
      while (probe.waiting) {
        auto reply = transport::TakeReply(*probe.socket, pong_of_this_ping);
        if (!reply.ok()) continue;  // a broken message was consumed: look at the next one
        if (!reply->has_value()) break;
        const double ms =
            std::chrono::duration<double, std::milli>(Clock::now() - probe.sent).count();
        probe.best_ms = std::min(probe.best_ms, ms);
        probe.waiting = false;
        if (probe.pings < options_.pings_per_peer) send(probe);
      }
    }
  }

  absl::btree_map<registry::PeerId, double> rtt_ms;
  for (const Probe& probe : probes) {
    if (std::isfinite(probe.best_ms))
      rtt_ms[probe.id] = std::min(probe.best_ms, registry::kMaxRttMs);
  }
  return rtt_ms;
}

}  // namespace swarm::peer
