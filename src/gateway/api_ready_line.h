// The gateway's ready line: the first line `swarm api` prints on stdout once it serves, and the one
// place that writes and reads it:
//   listening on http://HOST:PORT (model ID, chat template NAME)
// Inside the parentheses, comma-separated entries each start with their key; Parse reads the
// keys it knows and skips the others, so an entry added later breaks no reader. A value type.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace swarm::gateway {

struct ApiReadyLine {
  std::string host;  // as given to --listen (an IPv6 address without brackets)
  uint16_t port = 0;
  std::string model_id;       // the id /v1/models lists (no ", " in it)
  std::string chat_template;  // the chat template's name

  // The line without its '\n'.
  std::string Format() const;
  // Reads a line as Format writes it (a trailing '\n' is allowed). InvalidArgument, quoting the
  // line, when it is not the gateway's ready line or a field is missing or malformed.
  static absl::StatusOr<ApiReadyLine> Parse(absl::string_view line);

  // http://HOST:PORT
  std::string Url() const;

  bool operator==(const ApiReadyLine&) const = default;
};

}  // namespace swarm::gateway
