#include "peer/relay_frames.h"

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace swarm::peer {

zmq::message_t TunnelTag(uint64_t connection) {
  zmq::message_t tag(kTunnelTagBytes);
  auto* bytes = static_cast<uint8_t*>(tag.data());
  bytes[0] = 'T';
  for (int i = 0; i < 8; ++i) bytes[1 + i] = static_cast<uint8_t>(connection >> (8 * i));
  return tag;
}

std::optional<uint64_t> ParseTunnelTag(const zmq::message_t& frame) {
  if (frame.size() != kTunnelTagBytes) return std::nullopt;
  const auto* bytes = static_cast<const uint8_t*>(frame.data());
  if (bytes[0] != 'T') return std::nullopt;
  uint64_t connection = 0;
  for (int i = 0; i < 8; ++i) connection |= uint64_t{bytes[1 + i]} << (8 * i);
  return connection;
}

absl::StatusOr<std::vector<zmq::message_t>> ReadFrames(zmq::socket_ref socket, size_t keep) {
  std::vector<zmq::message_t> frames;
  size_t total = 0;
  try {
    while (true) {
      zmq::message_t frame;
      if (!socket.recv(frame, zmq::recv_flags::dontwait)) {
        if (total == 0) return absl::DeadlineExceededError("no message");
        return absl::InternalError("multipart message ended early");
      }
      ++total;
      const bool more = frame.more();
      if (frames.size() < keep) frames.push_back(std::move(frame));
      if (!more) break;
    }
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(absl::StrCat("receive: ", e.what()));
  }
  if (total > keep) {
    return absl::InvalidArgumentError(
        absl::StrCat("message of ", total, " frames, at most ", keep, " expected"));
  }
  return frames;
}

absl::Status SendFrames(zmq::socket_ref socket, std::vector<zmq::message_t> prefix,
                        std::vector<zmq::message_t>& frames, size_t first) {
  try {
    const size_t n = prefix.size() + frames.size() - first;
    size_t sent = 0;
    auto send = [&](zmq::message_t& frame) -> bool {
      ++sent;
      const auto flags = sent < n ? zmq::send_flags::dontwait | zmq::send_flags::sndmore
                                  : zmq::send_flags::dontwait;
      return socket.send(frame, flags).has_value();
    };
    for (zmq::message_t& frame : prefix) {
      if (!send(frame)) return absl::UnavailableError("outgoing queue is full");
    }
    for (size_t i = first; i < frames.size(); ++i) {
      if (!send(frames[i])) return absl::UnavailableError("outgoing queue is full");
    }
  } catch (const zmq::error_t& e) {
    // EHOSTUNREACH: the routing id is gone (the ROUTERs are mandatory).
    if (e.num() == EHOSTUNREACH) return absl::NotFoundError("the connection is gone");
    return absl::UnavailableError(absl::StrCat("send: ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status SendControl(zmq::socket_ref socket, std::optional<std::string> routing_id,
                         uint64_t request_id, transport::Message body) {
  auto wire = transport::EncodeMessage(request_id, std::move(body));
  if (!wire.ok()) return wire.status();
  std::vector<zmq::message_t> prefix;
  if (routing_id) prefix.emplace_back(routing_id->data(), routing_id->size());
  std::vector<zmq::message_t> frames;
  frames.emplace_back(wire->header.data(), wire->header.size());
  return SendFrames(socket, std::move(prefix), frames, 0);
}

}  // namespace swarm::peer
