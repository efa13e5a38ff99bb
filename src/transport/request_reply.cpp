#include "transport/request_reply.h"

#include <algorithm>
#include <utility>
#include <variant>
#include <vector>

#include "base/status_macros.h"

namespace swarm::transport {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

absl::StatusOr<std::optional<DecodedMessage>> TakeReply(DealerClient& socket,
                                                        ReplyMatcher matches) {
  while (true) {
    auto message = socket.Receive(std::chrono::milliseconds(0));
    if (!message.ok()) {
      if (absl::IsDeadlineExceeded(message.status())) return std::nullopt;  // nothing queued
      return message.status();
    }
    auto decoded = DecodeMessage(*message);
    // Whatever the decoder objects to, it came from the peer: not the caller's bad input.
    if (!decoded.ok()) return absl::DataLossError(decoded.status().message());
    if (!matches(*decoded)) continue;
    if (auto* error = std::get_if<ErrorReply>(&decoded->body)) return error->ToStatus();
    return std::optional<DecodedMessage>(std::move(*decoded));
  }
}

absl::StatusOr<DecodedMessage> Call(DealerClient& socket, const WireMessage& request,
                                    uint64_t request_id, const CallOptions& options) {
  SWARM_RETURN_IF_ERROR(socket.Send(request));
  const bool resends = options.resend_interval.count() > 0;
  auto next_send = resends ? Clock::now() + options.resend_interval : Clock::time_point::max();
  std::vector<zmq::socket_ref> sockets = {socket.socket()};
  if (socket.connection_events()) sockets.push_back(socket.connection_events());
  auto ours = [request_id](const DecodedMessage& m) { return m.request_id == request_id; };
  while (true) {
    const auto now = Clock::now();
    if (now >= options.deadline) return absl::DeadlineExceededError("no reply in time");
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::min(options.deadline, next_send) - now);
    SWARM_ASSIGN_OR_RETURN(auto readable,
                           PollReadable(sockets, std::max(wait, std::chrono::milliseconds(1))));
    bool resend = Clock::now() >= next_send;
    for (size_t k : readable) {
      if (k == 1) {
        // A refused handshake is final: the request can never arrive.
        SWARM_RETURN_IF_ERROR(socket.HandshakeStatus());
        if (!socket.ConnectionDropped()) continue;
        if (!resends) return absl::UnavailableError("connection lost before the reply");
        resend = true;
        continue;
      }
      SWARM_ASSIGN_OR_RETURN(auto reply, TakeReply(socket, ours));
      if (reply.has_value()) return std::move(*reply);
    }
    if (resend) {
      SWARM_RETURN_IF_ERROR(socket.Send(request));
      next_send = Clock::now() + options.resend_interval;
    }
  }
}

}  // namespace swarm::transport
