#include "gateway/api_ready_line.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace swarm::gateway {
namespace {

constexpr absl::string_view kPrefix = "listening on http://";

absl::Status Malformed(absl::string_view line, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("not the gateway's ready line (", why, "): \"", line.substr(0, 300), "\""));
}

}  // namespace

std::string ApiReadyLine::Url() const { return absl::StrCat("http://", host, ":", port); }

std::string ApiReadyLine::Format() const {
  return absl::StrCat("listening on ", Url(), " (model ", model_id, ", chat template ",
                      chat_template, ")");
}

absl::StatusOr<ApiReadyLine> ApiReadyLine::Parse(absl::string_view line) {
  absl::string_view rest = line;
  absl::ConsumeSuffix(&rest, "\n");
  if (!absl::ConsumePrefix(&rest, kPrefix)) {
    return Malformed(line, absl::StrCat("it does not start with \"", kPrefix, "\""));
  }
  const size_t open = rest.find(" (");
  if (open == absl::string_view::npos || !absl::ConsumeSuffix(&rest, ")")) {
    return Malformed(line, "no \"(...)\" after the address");
  }
  const absl::string_view host_port = rest.substr(0, open);
  const absl::string_view entries = rest.substr(open + 2);
  ApiReadyLine out;
  const size_t colon = host_port.rfind(':');
  uint32_t port = 0;
  if (colon == absl::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(host_port.substr(colon + 1), &port) || port == 0 || port > 65535) {
    return Malformed(line, absl::StrCat("\"", host_port, "\" is not HOST:PORT"));
  }
  out.host = std::string(host_port.substr(0, colon));
  out.port = static_cast<uint16_t>(port);
  bool have_model = false, have_template = false;
  for (absl::string_view entry : absl::StrSplit(entries, ", ")) {
    if (absl::ConsumePrefix(&entry, "model ")) {
      out.model_id = std::string(entry);
      have_model = !entry.empty();
    } else if (absl::ConsumePrefix(&entry, "chat template ")) {
      out.chat_template = std::string(entry);
      have_template = !entry.empty();
    }
    // Other entries belong to later versions: skipped.
  }
  if (!have_model) return Malformed(line, "no model");
  if (!have_template) return Malformed(line, "no chat template");
  return out;
}

}  // namespace swarm::gateway
