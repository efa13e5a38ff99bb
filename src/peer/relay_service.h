// A reachable peer's relay service: its own ROUTER socket where other peers (1) ask it to dial
// them back (reachability, peer/reachability.h) and (2) register to be relayed. For each relayed
// peer it binds a public endpoint and forwards every message both ways between whoever connects
// there and the relayed peer's outgoing tunnel connection (peer/relay_frames.h), within a total
// bandwidth cap. Dial-backs are rate-limited and go only to tcp://HOST:PORT.
// One thread (started by Start, joined by the destructor) owns every socket; the accessors are
// atomics, readable from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "absl/status/statusor.h"
#include "transport/zmq_socket.h"

namespace swarm::peer {

struct RelayServiceOptions {
  // The service socket and every public endpoint bind tcp://listen_host:0.
  std::string listen_host = "127.0.0.1";
  // The host others reach them at (default: listen_host; 0.0.0.0 becomes 127.0.0.1).
  std::string public_host;
  // Total bandwidth relayed, both directions, Mbit/s. 0: relays nobody (still answers
  // dial-backs).
  double relay_mbit = 100;
  int max_relayed_peers = 16;
  int max_connections_per_peer = 4096;  // clients at one public endpoint
  // Dial-backs: a token bucket (answers per second, burst), at most max_dials at once.
  double dial_backs_per_second = 4;
  double dial_back_burst = 16;
  int max_dials = 4;
  std::chrono::milliseconds dial_timeout{3000};
  // A relayed peer that has not re-registered for this long is dropped with its endpoint.
  std::chrono::milliseconds relayed_silence{8000};
  // The service socket and the public endpoints (CurveZMQ of a private swarm, size limits).
  transport::ServerOptions server;
  // The dial-back connections.
  transport::ClientOptions client;
};

struct RelayServiceStats {
  std::atomic<int64_t> relayed_peers{0};
  std::atomic<int64_t> bytes_relayed{0};
  std::atomic<int64_t> messages_relayed{0};
  std::atomic<int64_t> messages_dropped{0};  // malformed, unknown connection, queue full
  std::atomic<int64_t> dial_backs{0};
  std::atomic<int64_t> dial_backs_refused{0};  // rate limit, bad address
};

class RelayService {
 public:
  static absl::StatusOr<std::unique_ptr<RelayService>> Start(zmq::context_t& context,
                                                             const RelayServiceOptions& options);
  ~RelayService();  // stops the thread; every public endpoint closes
  RelayService(const RelayService&) = delete;
  RelayService& operator=(const RelayService&) = delete;

  // The service socket as others reach it, tcp://public_host:PORT.
  const std::string& address() const { return address_; }
  double relay_mbit() const { return options_.relay_mbit; }
  const RelayServiceStats& stats() const { return stats_; }

 private:
  class Loop;
  RelayService(RelayServiceOptions options, std::string address);

  const RelayServiceOptions options_;
  const std::string address_;
  RelayServiceStats stats_;
  std::unique_ptr<Loop> loop_;
  std::jthread thread_;
};

// tcp://HOST:PORT of a bound endpoint with HOST replaced by public_host (or, when empty, 0.0.0.0
// and * by 127.0.0.1).
std::string AnnouncedEndpoint(const std::string& bound, const std::string& public_host);

}  // namespace swarm::peer
