// RAII ZeroMQ sockets for the wire protocol: RouterServer (a peer's ROUTER, bound) and
// DealerClient (a client's or upstream peer's DEALER, connected). A message on the wire is
// [header frame][optional tensor frame]; the ROUTER also sees the sender's routing id first.
// The zmq::context_t is created in main() and passed in; it must outlive every socket.
// Threading: each socket object belongs to one thread at a time (ZeroMQ sockets are not thread
// safe); hand one to another thread only through a synchronizing operation, never share it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "transport/protocol.h"

namespace swarm::transport {

class ZapAuthenticator;

// How long a connection may stay silent before it is dropped, given the heartbeat interval:
// 3 intervals, but never under 2 s, so that a peer whose process is starved of CPU for a moment
// (a loaded machine, a sanitizer build) or a link with a long round trip is not taken for dead.
inline std::chrono::milliseconds HeartbeatTimeout(std::chrono::milliseconds interval) {
  return std::max(3 * interval, std::chrono::milliseconds(2000));
}

struct SocketOptions {
  // ZMQ_MAXMSGSIZE: a peer that sends a larger frame is disconnected before the frame is
  // buffered; the socket keeps serving everyone else.
  int64_t max_message_bytes = int64_t{256} << 20;
  int send_hwm = 1000;  // messages queued per connection before sends fail or wait
  int recv_hwm = 1000;
  std::chrono::milliseconds linger{0};  // pending messages are dropped when the socket closes
  // ZMTP heartbeats (0 = off): a silent connection is dropped after HeartbeatTimeout().
  std::chrono::milliseconds heartbeat_interval{0};
};

struct CurveServerOptions {
  std::string secret_key;  // Z85
  // When set, only clients whose public key it allows get through (it must run on the same
  // context). When null, any client that knows the server's public key may connect: the link
  // is encrypted but not access-controlled.
  const ZapAuthenticator* authenticator = nullptr;
};

struct CurveClientOptions {
  std::string server_public_key;  // Z85
  std::string public_key;         // Z85, this client's
  std::string secret_key;         // Z85, this client's
};

struct ServerOptions : SocketOptions {
  std::optional<CurveServerOptions> curve;
};

struct ClientOptions : SocketOptions {
  std::optional<CurveClientOptions> curve;
  // How long Send waits while the outgoing queue is full (ZMQ_SNDTIMEO).
  std::chrono::milliseconds send_timeout{1000};
  // Reports dropped connections (DealerClient::ConnectionDropped): a peer killed (its TCP close)
  // or frozen (heartbeats unanswered, with heartbeat_interval set) is known at once, not only
  // when a reply fails to come.
  bool watch_disconnects = false;
};

// A message the ROUTER received, tagged with its sender.
struct RoutedMessage {
  std::string routing_id;    // opaque ZeroMQ routing id of the sender's connection
  std::string user_id;       // the sender's Z85 public key when CURVE + ZAP authenticated it
  std::string peer_address;  // the sender's IP address (TCP; empty for other transports)
  // InvalidArgument when the sender broke the framing (no header, more than two frames); reply
  // with an error to routing_id and keep serving.
  absl::StatusOr<WireMessage> message;
};

class RouterServer {
 public:
  // endpoint: e.g. "tcp://127.0.0.1:0" (port 0: the OS picks one; see endpoint()).
  static absl::StatusOr<std::unique_ptr<RouterServer>> Bind(zmq::context_t& context,
                                                            std::string_view endpoint,
                                                            const ServerOptions& options = {});
  ~RouterServer();
  RouterServer(const RouterServer&) = delete;
  RouterServer& operator=(const RouterServer&) = delete;

  // The endpoint actually bound (ZMQ_LAST_ENDPOINT), e.g. "tcp://127.0.0.1:41237".
  const std::string& endpoint() const { return endpoint_; }

  // DeadlineExceeded when nothing arrives within `timeout` (0: do not wait).
  absl::StatusOr<RoutedMessage> Receive(std::chrono::milliseconds timeout);
  // Never blocks. Unavailable: no such routing id (gone or never connected);
  // ResourceExhausted: that connection's queue is full.
  absl::Status Send(std::string_view routing_id, const WireMessage& message);

  zmq::socket_ref socket() { return socket_; }

 private:
  RouterServer(zmq::socket_t socket, std::string endpoint)
      : socket_(std::move(socket)), endpoint_(std::move(endpoint)) {}
  zmq::socket_t socket_;
  std::string endpoint_;
};

class DealerClient {
 public:
  // Connects asynchronously: messages queue until the connection is up.
  static absl::StatusOr<std::unique_ptr<DealerClient>> Connect(zmq::context_t& context,
                                                               std::string_view endpoint,
                                                               const ClientOptions& options = {});
  ~DealerClient();
  DealerClient(const DealerClient&) = delete;
  DealerClient& operator=(const DealerClient&) = delete;

  const std::string& endpoint() const { return endpoint_; }

  // DeadlineExceeded when the queue stays full for send_timeout.
  absl::Status Send(const WireMessage& message);
  // DeadlineExceeded when nothing arrives in time; DataLoss / InvalidArgument when the peer
  // broke the framing (the message is consumed).
  absl::StatusOr<WireMessage> Receive(std::chrono::milliseconds timeout);
  absl::StatusOr<WireMessage> ReceiveUntil(std::chrono::steady_clock::time_point deadline);

  zmq::socket_ref socket() { return socket_; }

  // With ClientOptions::watch_disconnects: whether the connection dropped since the last call
  // (ZeroMQ reconnects by itself, but what was queued on the old connection is lost, and a peer's
  // sessions die with its process). Never blocks; always false without the option.
  bool ConnectionDropped();
  // PermissionDenied once the security handshake with the peer has failed for good, saying why
  // (a plain client and a CurveZMQ peer, or the reverse; CURVE keys the peer refuses, e.g. of
  // another swarm's secret): nothing sent on this socket will ever arrive. OK otherwise. Sticky;
  // never blocks.
  absl::Status HandshakeStatus();
  // Readable when ConnectionDropped() or HandshakeStatus() may have something new to report, for
  // PollReadable next to socket().
  zmq::socket_ref connection_events() { return monitor_; }
  // connection_events() with watch_disconnects; a null reference without.
  zmq::socket_ref disconnect_events() {
    return watch_disconnects_ ? zmq::socket_ref(monitor_) : zmq::socket_ref();
  }
  bool watches_disconnects() const { return watch_disconnects_; }

 private:
  DealerClient(zmq::socket_t socket, zmq::socket_t monitor, std::string endpoint, bool curve,
               bool watch_disconnects)
      : socket_(std::move(socket)),
        monitor_(std::move(monitor)),
        endpoint_(std::move(endpoint)),
        curve_(curve),
        watch_disconnects_(watch_disconnects) {}
  // Reads the monitor's queued events into dropped_ and handshake_.
  void ReadEvents();

  zmq::socket_t socket_;
  zmq::socket_t monitor_;  // PAIR receiving socket_'s handshake (and disconnect) events
  std::string endpoint_;
  const bool curve_;
  const bool watch_disconnects_;
  bool dropped_ = false;     // a disconnect not reported yet
  int silent_refusals_ = 0;  // handshakes failed in a row without a reason
  absl::Status handshake_;   // set once the handshake has failed for good
};

// Whether a peer may push to `endpoint`, an address a client's route names: only
// tcp://HOST:PORT (never ipc://, inproc:// or another transport that would reach into the peer's
// own machine or process, nor libzmq's "source;destination" form that binds a local address).
// InvalidArgument saying why not.
absl::Status ValidatePushEndpoint(std::string_view endpoint);

// Waits until at least one of `sockets` is readable; returns the readable ones' indices (empty
// on timeout). For loops that serve a RouterServer and several DealerClients in one thread.
absl::StatusOr<std::vector<size_t>> PollReadable(std::span<const zmq::socket_ref> sockets,
                                                 std::chrono::milliseconds timeout);

}  // namespace swarm::transport
