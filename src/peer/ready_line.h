// The ready line: the first line `swarm serve` prints on stdout once it serves, and the one place
// that writes and reads it (the demo, the launcher of local swarms, tests, benchmarks):
//   listening on ADDRESS blocks A:B peer ID dht PORT [reach public|relayed] [service ADDRESS]
//   [via ID]
// After "listening on ADDRESS" the words come in key/value pairs; Parse reads the keys it knows
// wherever they stand and skips the others, so a field added later breaks no reader. A value type.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace swarm::peer {

struct ReadyLine {
  std::string address;  // where the peer's ROUTER socket listens, e.g. tcp://127.0.0.1:PORT
  uint32_t first_block = 0;
  uint32_t last_block = 0;  // served blocks are [first_block, last_block)
  std::string peer_id;      // 40 hex digits (the key's id), or the --peer-id name with --no-dht
  uint16_t dht_port = 0;    // UDP port of the peer's DHT node; 0: none (--no-dht)
  // With a DHT node: "public", or "relayed" when `address` is the endpoint a relay opened for
  // the peer (peer/relay_tunnel.h). Empty without one.
  // (Default member initializers: designated initializers may leave them out.)
  std::string reach = {};
  std::string relay_service = {};  // the peer's relay service (dial-backs, relaying), if any
  std::string via = {};            // relayed: the relay's peer id

  // The line without its '\n'.
  std::string Format() const;
  // Reads a line as Format writes it (a trailing '\n' is allowed). InvalidArgument, quoting the
  // line, when it is not a ready line or a field is missing, repeated or malformed.
  static absl::StatusOr<ReadyLine> Parse(absl::string_view line);

  // "A:B", as --blocks takes it.
  std::string Blocks() const;

  bool operator==(const ReadyLine&) const = default;
};

}  // namespace swarm::peer
