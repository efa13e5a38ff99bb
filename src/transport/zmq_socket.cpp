#include "transport/zmq_socket.h"

#include <zmq.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <climits>
#include <cstring>
#include <memory>
#include <new>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "base/status_macros.h"
#include "transport/zmq_curve.h"
#include "transport/zmq_status.h"

namespace swarm::transport {
namespace {

// Frames kept from one incoming message: [routing id] header [tensor]. More is a framing error.
constexpr size_t kMaxPayloadFrames = 2;
// libzmq's draft option: with it, a CURVE handshake fails when no ZAP handler answers, so a server
// that expects an allow-list never falls back to accepting everyone.
constexpr int kZapEnforceDomain = 93;
constexpr char kZapDomain[] = "swarm";

absl::Status Caught(const zmq::error_t& e, std::string_view what) {
  return ZmqErrorToStatus(e.num(), what);
}

int ClampMs(std::chrono::milliseconds ms) {
  return static_cast<int>(std::clamp<int64_t>(ms.count(), 0, INT32_MAX));
}

void ApplyCommon(zmq::socket_t& s, const SocketOptions& o) {
  s.set(zmq::sockopt::maxmsgsize, o.max_message_bytes);
  s.set(zmq::sockopt::sndhwm, o.send_hwm);
  s.set(zmq::sockopt::rcvhwm, o.recv_hwm);
  s.set(zmq::sockopt::linger, ClampMs(o.linger));
  if (o.heartbeat_interval.count() > 0) {
    s.set(zmq::sockopt::heartbeat_ivl, ClampMs(o.heartbeat_interval));
    s.set(zmq::sockopt::heartbeat_timeout, ClampMs(HeartbeatTimeout(o.heartbeat_interval)));
  }
}

// A zmq message that shares the payload's bytes instead of copying them; zmq's I/O thread drops
// the reference when it is done sending.
zmq::message_t ToZmq(const Payload& p) {
  if (p.size() < 256 || !p.owner()) return zmq::message_t(p.data(), p.size());
  auto keep = std::make_unique<std::shared_ptr<const void>>(p.owner());
  zmq::message_t msg(
      const_cast<uint8_t*>(p.data()), p.size(),
      [](void*, void* hint) { delete static_cast<std::shared_ptr<const void>*>(hint); },
      keep.get());
  keep.release();  // owned by the message now
  return msg;
}

Payload FromZmq(zmq::message_t&& msg) {
  auto owner = std::make_shared<zmq::message_t>(std::move(msg));
  std::span<const uint8_t> bytes(static_cast<const uint8_t*>(owner->data()), owner->size());
  return Payload::Adopt(std::move(owner), bytes);
}

absl::Status WaitReadable(zmq::socket_t& s, std::chrono::milliseconds timeout) {
  zmq_pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
  const int rc = zmq_poll(&item, 1, ClampMs(timeout));
  if (rc < 0) return ZmqErrorToStatus(zmq_errno(), "poll");
  if (rc == 0) return absl::DeadlineExceededError("no message before the deadline");
  return absl::OkStatus();
}

// Reads one whole multipart message (it is already complete once its first frame is readable).
// Keeps at most `keep` frames and discards the rest, so a hostile sender cannot make this side
// hold an unbounded list of frames; *total tells how many there were.
absl::StatusOr<std::vector<zmq::message_t>> ReadParts(zmq::socket_t& s, size_t keep,
                                                      size_t* total) {
  std::vector<zmq::message_t> parts;
  *total = 0;
  while (true) {
    zmq::message_t part;
    auto got = s.recv(part, zmq::recv_flags::dontwait);
    if (!got) {
      if (*total == 0) return absl::DeadlineExceededError("no message before the deadline");
      return absl::InternalError("multipart message ended early");
    }
    ++*total;
    const bool more = part.more();
    if (parts.size() < keep) parts.push_back(std::move(part));
    if (!more) return parts;
  }
}

absl::StatusOr<WireMessage> ToWireMessage(std::vector<zmq::message_t>& parts, size_t first,
                                          size_t total) {
  const size_t payload_frames = total - first;
  if (payload_frames == 0 || payload_frames > kMaxPayloadFrames) {
    return absl::InvalidArgumentError(absl::StrCat("message of ", payload_frames,
                                                   " frames; expected a header and at most one "
                                                   "tensor frame"));
  }
  WireMessage wire;
  wire.header = FromZmq(std::move(parts[first]));
  if (payload_frames == 2) wire.tensor = FromZmq(std::move(parts[first + 1]));
  return wire;
}

absl::Status SendPayloads(zmq::socket_t& s, const WireMessage& m, zmq::send_flags base,
                          std::string_view what, absl::StatusCode queue_full) {
  const bool has_tensor = m.tensor.has_value();
  auto header = ToZmq(m.header);
  auto sent = s.send(header, has_tensor ? base | zmq::send_flags::sndmore : base);
  if (!sent) {
    return absl::Status(queue_full, absl::StrCat(ToAbsl(what), ": outgoing queue is full"));
  }
  if (has_tensor) {
    auto tensor = ToZmq(*m.tensor);
    // Later frames of a started message are always accepted.
    if (!s.send(tensor, base))
      return absl::InternalError(absl::StrCat(ToAbsl(what), ": partial send"));
  }
  return absl::OkStatus();
}

std::string LastEndpoint(zmq::socket_t& s) { return s.get(zmq::sockopt::last_endpoint); }

// A PAIR socket that receives `s`'s `events`. Each monitor needs an inproc endpoint of its own;
// the counter makes the names unique within the process.
absl::StatusOr<zmq::socket_t> Monitor(zmq::context_t& context, zmq::socket_t& s, int events) {
  static std::atomic<uint64_t> monitors{0};
  const std::string endpoint = absl::StrCat("inproc://swarm-dealer-monitor-", ++monitors);
  if (zmq_socket_monitor(s.handle(), endpoint.c_str(), events) != 0) {
    return absl::InternalError(absl::StrCat("socket monitor: ", zmq_strerror(zmq_errno())));
  }
  try {
    zmq::socket_t monitor(context, zmq::socket_type::pair);
    monitor.set(zmq::sockopt::linger, 0);
    monitor.connect(endpoint);
    return monitor;
  } catch (const zmq::error_t& e) {
    (void)zmq_socket_monitor(s.handle(), nullptr, 0);
    return absl::InternalError(absl::StrCat("socket monitor: ", e.what()));
  }
}

constexpr int kHandshakeEvents =
    ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
    ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
// A CURVE client whose keys the server cannot use (another swarm's) is not told why: the server
// just closes the connection, and libzmq reconnects and tries again. Two such failures in a row,
// with no success between, are taken as a refusal (one could be a peer dying mid-handshake).
constexpr int kSilentRefusals = 2;
constexpr char kSecretHint[] = "check --swarm-secret: it must be the swarm's own secret";

// Why a handshake failed for good, from one monitor event (OK when the event says nothing final).
absl::Status HandshakeFailure(uint16_t event, uint32_t value, bool curve, int& silent_refusals) {
  switch (event) {
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
      silent_refusals = 0;
      return absl::OkStatus();
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
      if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
        return absl::PermissionDeniedError(
            curve ? "the handshake was refused: the peer does not encrypt (it is not in a private "
                    "swarm) and this client connects with a swarm secret; drop --swarm-secret or "
                    "check the address"
                  : "the handshake was refused: the peer requires CurveZMQ encryption (it belongs "
                    "to a private swarm); pass --swarm-secret FILE with that swarm's secret");
      }
      return absl::PermissionDeniedError(
          absl::StrCat("the handshake failed (ZMTP protocol error 0x", absl::Hex(value), ")",
                       curve ? absl::StrCat("; ", kSecretHint) : std::string()));
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
      return absl::PermissionDeniedError(
          absl::StrCat("the handshake was refused: the peer did not admit this client's key (ZAP "
                       "status ",
                       value, "); ", kSecretHint));
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
      if (!curve || ++silent_refusals < kSilentRefusals) return absl::OkStatus();
      return absl::PermissionDeniedError(absl::StrCat(
          "the handshake was refused: the peer closed the encrypted handshake ", silent_refusals,
          " times: it holds another swarm's secret, or it does not encrypt (a peer of an open "
          "swarm; "
          "which one depends on who closes first); ",
          kSecretHint));
    default:
      return absl::OkStatus();
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<RouterServer>> RouterServer::Bind(zmq::context_t& context,
                                                                 std::string_view endpoint,
                                                                 const ServerOptions& options) {
  const std::string ep(endpoint);
  try {
    zmq::socket_t s(context, zmq::socket_type::router);
    ApplyCommon(s, options);
    s.set(zmq::sockopt::router_mandatory, true);
    if (options.curve) {
      SWARM_RETURN_IF_ERROR(CheckCurveAvailable());
      SWARM_RETURN_IF_ERROR(ValidateCurveKey(options.curve->secret_key));
      s.set(zmq::sockopt::curve_server, true);
      s.set(zmq::sockopt::curve_secretkey, options.curve->secret_key);
      s.set(zmq::sockopt::zap_domain, kZapDomain);
      if (const ZapAuthenticator* auth = options.curve->authenticator) {
        if (auth->context() != &context) {
          return absl::InvalidArgumentError(
              "the ZAP authenticator runs on another ZeroMQ context than this server");
        }
        const int on = 1;
        // Best effort: only libzmq builds with draft options know it.
        (void)zmq_setsockopt(s.handle(), kZapEnforceDomain, &on, sizeof on);
      }
    }
    s.bind(ep);
    std::string bound = LastEndpoint(s);
    return std::unique_ptr<RouterServer>(new RouterServer(std::move(s), std::move(bound)));
  } catch (const zmq::error_t& e) {
    return Caught(e, absl::StrCat("bind ", ep));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory binding a socket");
  }
}

RouterServer::~RouterServer() = default;

absl::StatusOr<RoutedMessage> RouterServer::Receive(std::chrono::milliseconds timeout) {
  try {
    SWARM_RETURN_IF_ERROR(WaitReadable(socket_, timeout));
    size_t total = 0;
    SWARM_ASSIGN_OR_RETURN(auto parts, ReadParts(socket_, 1 + kMaxPayloadFrames, &total));
    RoutedMessage routed;
    routed.routing_id = parts[0].to_string();
    if (parts.size() > 1) {
      // Set by our ZAP handler for CURVE clients; absent otherwise.
      if (const char* user = zmq_msg_gets(parts[1].handle(), "User-Id")) routed.user_id = user;
      if (const char* address = zmq_msg_gets(parts[1].handle(), "Peer-Address")) {
        routed.peer_address = address;
      }
    }
    routed.message = ToWireMessage(parts, 1, total);
    return routed;
  } catch (const zmq::error_t& e) {
    return Caught(e, absl::StrCat("receive on ", endpoint_));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory receiving a message");
  }
}

absl::Status RouterServer::Send(std::string_view routing_id, const WireMessage& message) {
  try {
    zmq::message_t id(routing_id.data(), routing_id.size());
    // With ROUTER_MANDATORY an unknown id throws EHOSTUNREACH instead of dropping silently.
    if (!socket_.send(id, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
      return absl::ResourceExhaustedError("reply queue to this client is full");
    }
    return SendPayloads(socket_, message, zmq::send_flags::dontwait, "reply",
                        absl::StatusCode::kResourceExhausted);
  } catch (const zmq::error_t& e) {
    return Caught(e, "reply to client");
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory sending a message");
  }
}

absl::StatusOr<std::unique_ptr<DealerClient>> DealerClient::Connect(zmq::context_t& context,
                                                                    std::string_view endpoint,
                                                                    const ClientOptions& options) {
  const std::string ep(endpoint);
  try {
    zmq::socket_t s(context, zmq::socket_type::dealer);
    ApplyCommon(s, options);
    s.set(zmq::sockopt::sndtimeo, ClampMs(options.send_timeout));
    if (options.curve) {
      SWARM_RETURN_IF_ERROR(CheckCurveAvailable());
      SWARM_RETURN_IF_ERROR(ValidateCurveKey(options.curve->server_public_key));
      SWARM_RETURN_IF_ERROR(ValidateCurveKey(options.curve->public_key));
      SWARM_RETURN_IF_ERROR(ValidateCurveKey(options.curve->secret_key));
      s.set(zmq::sockopt::curve_serverkey, options.curve->server_public_key);
      s.set(zmq::sockopt::curve_publickey, options.curve->public_key);
      s.set(zmq::sockopt::curve_secretkey, options.curve->secret_key);
    }
    // Handshake failures are always watched: without that, a refused client would wait out its
    // deadline, as libzmq neither reports the refusal on the socket nor tries again.
    SWARM_ASSIGN_OR_RETURN(
        zmq::socket_t monitor,
        Monitor(context, s,
                kHandshakeEvents | (options.watch_disconnects ? ZMQ_EVENT_DISCONNECTED : 0)));
    s.connect(ep);
    return std::unique_ptr<DealerClient>(new DealerClient(std::move(s), std::move(monitor), ep,
                                                          options.curve.has_value(),
                                                          options.watch_disconnects));
  } catch (const zmq::error_t& e) {
    return Caught(e, absl::StrCat("connect ", ep));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory connecting a socket");
  }
}

DealerClient::~DealerClient() {
  if (monitor_) {
    (void)zmq_socket_monitor(socket_.handle(), nullptr, 0);
    monitor_.close();
  }
}

void DealerClient::ReadEvents() {
  if (!monitor_) return;
  try {
    while (true) {
      // An event is [16-bit id, 32-bit value][affected endpoint].
      zmq::message_t event;
      if (!monitor_.recv(event, zmq::recv_flags::dontwait)) break;
      uint16_t id = 0;
      uint32_t value = 0;
      if (event.size() >= sizeof(id) + sizeof(value)) {
        std::memcpy(&id, event.data(), sizeof(id));
        std::memcpy(&value, static_cast<const char*>(event.data()) + sizeof(id), sizeof(value));
      }
      if (id == ZMQ_EVENT_DISCONNECTED) dropped_ = true;
      if (handshake_.ok()) handshake_ = HandshakeFailure(id, value, curve_, silent_refusals_);
      while (monitor_.get(zmq::sockopt::rcvmore)) {
        zmq::message_t rest;
        if (!monitor_.recv(rest, zmq::recv_flags::dontwait)) break;
      }
    }
  } catch (const zmq::error_t&) {
    // A monitor that cannot be read says nothing; the caller's deadline still applies.
  }
}

bool DealerClient::ConnectionDropped() {
  ReadEvents();
  return watch_disconnects_ && std::exchange(dropped_, false);
}

absl::Status DealerClient::HandshakeStatus() {
  ReadEvents();
  return handshake_;
}

absl::Status DealerClient::Send(const WireMessage& message) {
  try {
    return SendPayloads(socket_, message, zmq::send_flags::none,
                        absl::StrCat("send to ", endpoint_), absl::StatusCode::kDeadlineExceeded);
  } catch (const zmq::error_t& e) {
    return Caught(e, absl::StrCat("send to ", endpoint_));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory sending a message");
  }
}

absl::StatusOr<WireMessage> DealerClient::Receive(std::chrono::milliseconds timeout) {
  try {
    SWARM_RETURN_IF_ERROR(WaitReadable(socket_, timeout));
    size_t total = 0;
    SWARM_ASSIGN_OR_RETURN(auto parts, ReadParts(socket_, kMaxPayloadFrames, &total));
    return ToWireMessage(parts, 0, total);
  } catch (const zmq::error_t& e) {
    return Caught(e, absl::StrCat("receive from ", endpoint_));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory receiving a message");
  }
}

absl::StatusOr<WireMessage> DealerClient::ReceiveUntil(
    std::chrono::steady_clock::time_point deadline) {
  const auto left =
      std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return Receive(std::max(left, std::chrono::milliseconds(0)));
}

absl::Status ValidatePushEndpoint(std::string_view endpoint) {
  constexpr std::string_view kTcp = "tcp://";
  auto refuse = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("hop address '", ToAbsl(endpoint), "' refused: ", ToAbsl(why)));
  };
  if (endpoint.substr(0, kTcp.size()) != kTcp) {
    return refuse("a peer pushes only to tcp://HOST:PORT");
  }
  const std::string_view rest = endpoint.substr(kTcp.size());
  if (rest.find(';') != std::string_view::npos) return refuse("no source address may be given");
  const size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return refuse("expected tcp://HOST:PORT");
  const std::string_view host = rest.substr(0, colon);
  const std::string_view port = rest.substr(colon + 1);
  if (host == "*" || host == "[*]") return refuse("no wildcard host");
  for (char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '%';
    if (!ok) return refuse("bad character in the host");
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 ||
      value > 65535) {
    return refuse("the port must be 1..65535");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<size_t>> PollReadable(std::span<const zmq::socket_ref> sockets,
                                                 std::chrono::milliseconds timeout) {
  std::vector<zmq_pollitem_t> items;
  items.reserve(sockets.size());
  for (zmq::socket_ref s : sockets) {
    zmq_pollitem_t item{};
    item.socket = s.handle();
    item.events = ZMQ_POLLIN;
    items.push_back(item);
  }
  const int rc = zmq_poll(items.data(), static_cast<int>(items.size()), ClampMs(timeout));
  if (rc < 0) return ZmqErrorToStatus(zmq_errno(), "poll");
  std::vector<size_t> ready;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].revents & ZMQ_POLLIN) ready.push_back(i);
  }
  return ready;
}

}  // namespace swarm::transport
