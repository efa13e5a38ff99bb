// The relayed peer's end of a relay (peer/relay_service.h): an outgoing connection to the relay
// (which works from behind a NAT), registered for a public endpoint, and for each client the
// relay forwards from, a connection of its own to this peer's ROUTER, so the serving loop sees
// every relayed client as an ordinary connection (answers and pushes into this peer included).
// Re-registers every keepalive; failed() once the relay is gone (dropped connection, or silent).
// One thread (started by Open, joined by the destructor) owns the sockets; failed() and
// failure() may be read from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "transport/zmq_socket.h"

namespace swarm::peer {

struct RelayTunnelOptions {
  std::string relay_address;   // the relay's service, tcp://HOST:PORT
  std::string local_endpoint;  // this peer's ROUTER as this process connects to it
  // Both legs (CurveZMQ of a private swarm).
  transport::ClientOptions client;
  std::chrono::milliseconds register_timeout{2000};
  std::chrono::milliseconds keepalive{1000};
  // Unanswered keepalives for this long: the relay is taken for dead.
  std::chrono::milliseconds relay_silence{4000};
  std::chrono::milliseconds idle_connection{std::chrono::minutes(10)};
};

class RelayTunnel {
 public:
  // Registers (waiting up to register_timeout for the relay's answer) and starts forwarding.
  static absl::StatusOr<std::unique_ptr<RelayTunnel>> Open(zmq::context_t& context,
                                                           const RelayTunnelOptions& options);
  ~RelayTunnel();
  RelayTunnel(const RelayTunnel&) = delete;
  RelayTunnel& operator=(const RelayTunnel&) = delete;

  // The public endpoint the relay opened for this peer: the address to announce.
  const std::string& endpoint() const { return endpoint_; }
  bool failed() const { return failed_.load(); }
  std::string failure() const;

 private:
  class Loop;
  explicit RelayTunnel(std::string endpoint);
  void Fail(std::string why);

  const std::string endpoint_;
  std::atomic<bool> failed_{false};
  mutable absl::Mutex mu_;
  std::string failure_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Loop> loop_;
  std::jthread thread_;
};

}  // namespace swarm::peer
