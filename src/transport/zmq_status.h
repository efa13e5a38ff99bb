// The one adapter between ZeroMQ's errors (errno values, zmq::error_t) and absl::Status, so the
// canonical code tells the router what to do: UNAVAILABLE (host unreachable, context terminated)
// -> reroute; DEADLINE_EXCEEDED (EAGAIN after a timeout) -> reroute; RESOURCE_EXHAUSTED (a full
// queue, an oversized message) -> back off. Pure functions, any thread.
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace swarm::transport {

// `what` names the operation, e.g. "send to tcp://10.0.0.5:31337".
absl::Status ZmqErrorToStatus(int zmq_errno, std::string_view what);

}  // namespace swarm::transport
