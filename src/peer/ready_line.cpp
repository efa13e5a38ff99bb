#include "peer/ready_line.h"

#include <set>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace swarm::peer {
namespace {

constexpr absl::string_view kPrefix = "listening on ";

absl::Status Malformed(absl::string_view line, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("not a ready line (", why, "): \"", line.substr(0, 300), "\""));
}

}  // namespace

std::string ReadyLine::Format() const {
  std::string line =
      absl::StrCat(kPrefix, address, " blocks ", Blocks(), " peer ", peer_id, " dht ", dht_port);
  if (!reach.empty()) absl::StrAppend(&line, " reach ", reach);
  if (!relay_service.empty()) absl::StrAppend(&line, " service ", relay_service);
  if (!via.empty()) absl::StrAppend(&line, " via ", via);
  return line;
}

std::string ReadyLine::Blocks() const { return absl::StrCat(first_block, ":", last_block); }

absl::StatusOr<ReadyLine> ReadyLine::Parse(absl::string_view line) {
  absl::string_view rest = line;
  absl::ConsumeSuffix(&rest, "\n");
  if (!absl::ConsumePrefix(&rest, kPrefix)) {
    return Malformed(line, absl::StrCat("it does not start with \"", kPrefix, "\""));
  }
  // A value may be empty (`serve --no-dht` without --peer-id prints "peer  dht 0"); an address or
  // a key may not.
  const std::vector<absl::string_view> words = absl::StrSplit(rest, ' ');
  if (words[0].empty()) return Malformed(line, "no address");
  if (words.size() % 2 != 1) return Malformed(line, "a key without a value");
  ReadyLine out;
  out.address = std::string(words[0]);
  std::set<absl::string_view> seen;
  for (size_t i = 1; i + 1 < words.size(); i += 2) {
    const absl::string_view key = words[i], value = words[i + 1];
    if (key.empty()) return Malformed(line, "an empty key");
    if (!seen.insert(key).second) return Malformed(line, absl::StrCat("\"", key, "\" twice"));
    if (key == "blocks") {
      const std::vector<absl::string_view> ab = absl::StrSplit(value, ':');
      if (ab.size() != 2 || !absl::SimpleAtoi(ab[0], &out.first_block) ||
          !absl::SimpleAtoi(ab[1], &out.last_block) || out.first_block >= out.last_block) {
        return Malformed(line, absl::StrCat("blocks \"", value, "\" is not A:B with A < B"));
      }
    } else if (key == "peer") {
      out.peer_id = std::string(value);
    } else if (key == "dht") {
      uint32_t port = 0;
      if (!absl::SimpleAtoi(value, &port) || port > 65535) {
        return Malformed(line, absl::StrCat("dht port \"", value, "\" is not in [0, 65535]"));
      }
      out.dht_port = static_cast<uint16_t>(port);
    } else if (key == "reach") {
      out.reach = std::string(value);
    } else if (key == "service") {
      out.relay_service = std::string(value);
    } else if (key == "via") {
      out.via = std::string(value);
    }
    // Other keys belong to later versions: skipped.
  }
  for (const char* key : {"blocks", "peer", "dht"}) {
    if (!seen.contains(key)) return Malformed(line, absl::StrCat("no \"", key, "\""));
  }
  return out;
}

}  // namespace swarm::peer
