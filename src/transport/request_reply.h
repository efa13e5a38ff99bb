// The client side of the protocol's request/reply: send a request on a DealerClient and await the
// reply that matches it before a deadline, skipping what answers something else (late replies to
// earlier requests, outputs of stale steps), with every failure as a Status whose code says what
// the router does: UNAVAILABLE / DEADLINE_EXCEEDED reroute, RESOURCE_EXHAUSTED backs off,
// DATA_LOSS distrusts the peer, INVALID_ARGUMENT rejects the request. Functions on a socket run
// on the thread that owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "transport/protocol.h"
#include "transport/zmq_socket.h"

namespace swarm::transport {

// Whether a message from the peer is the awaited reply. An ErrorReply it accepts becomes the
// awaited call's status.
using ReplyMatcher = absl::FunctionRef<bool(const DecodedMessage&)>;

// Reads what `socket` has queued, without waiting, up to and including the first message that
// `matches` accepts; messages it does not accept are dropped. Returns that message, or nullopt
// once nothing is queued. Errors (each consumes the message it is about, so a further call goes
// on with the next one):
//  - an accepted ErrorReply: the peer's code and message (ErrorReply::ToStatus);
//  - DataLoss: a message that does not decode;
//  - a broken framing, as DealerClient::Receive reports it.
absl::StatusOr<std::optional<DecodedMessage>> TakeReply(DealerClient& socket, ReplyMatcher matches);

struct CallOptions {
  std::chrono::steady_clock::time_point deadline;
  // The request is sent again when unanswered for this long (0: never), and at once when the
  // connection drops if the socket watches disconnects: a reconnection loses what was queued on
  // the old connection. Only for requests the peer answers the same way when they come twice.
  std::chrono::milliseconds resend_interval{0};
};

// Sends `request` and waits for the reply to `request_id` (an ErrorReply with that id included).
// Besides TakeReply's errors: DeadlineExceeded ("no reply in time") at the deadline; Unavailable
// when the socket watches disconnects, the connection drops and the request is not resent;
// PermissionDenied as soon as the security handshake is refused (DealerClient::HandshakeStatus);
// a failed send as DealerClient::Send reports it.
absl::StatusOr<DecodedMessage> Call(DealerClient& socket, const WireMessage& request,
                                    uint64_t request_id, const CallOptions& options);

}  // namespace swarm::transport
