// The tunnel between a relay and a peer it relays (peer/relay_service.h, peer/relay_tunnel.h):
// one ZeroMQ connection, opened by the relayed peer, that carries control messages (one frame: a
// protocol envelope, RelayRegister / RelayRegistered / Error) and forwarded messages
// [tag][header][optional tensor], the tag naming which connection at the relay's public endpoint
// the message comes from or goes to. Pure functions over raw frames, any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "transport/protocol.h"

namespace swarm::peer {

// 'T' and the connection's 64-bit number, little-endian.
inline constexpr size_t kTunnelTagBytes = 9;
// A forwarded message is a tag and 1 or 2 frames (the wire protocol's header and tensor); more
// frames than this, from anyone, is a framing error.
inline constexpr size_t kMaxTunnelFrames = 3;

zmq::message_t TunnelTag(uint64_t connection);
// The connection a frame names, or none when it is not a tag.
std::optional<uint64_t> ParseTunnelTag(const zmq::message_t& frame);

// One whole message from `socket` without waiting (it is complete once readable). Keeps at most
// `keep` frames; InvalidArgument when it had more (they are read and dropped), DeadlineExceeded
// when nothing was there.
absl::StatusOr<std::vector<zmq::message_t>> ReadFrames(zmq::socket_ref socket, size_t keep);
// Sends frames[first...] as one message, prefixed by `prefix` frames when given (a routing id,
// a tag), never waiting. NotFound: the routing id is gone (a ROUTER's peer disconnected);
// Unavailable: the queue is full.
absl::Status SendFrames(zmq::socket_ref socket, std::vector<zmq::message_t> prefix,
                        std::vector<zmq::message_t>& frames, size_t first);
// A protocol message as one frame (control messages carry no tensor).
absl::Status SendControl(zmq::socket_ref socket, std::optional<std::string> routing_id,
                         uint64_t request_id, transport::Message body);

}  // namespace swarm::peer
