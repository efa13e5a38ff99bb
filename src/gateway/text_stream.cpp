#include "gateway/text_stream.h"

#include <algorithm>

namespace swarm::gateway {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the character a lead byte starts, 0 when it cannot start one.
int SequenceLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// Whether `c` may follow `lead` at position `i` (1-based) of a sequence; rules out overlong forms,
// surrogates and code points above U+10FFFF (RFC 3629).
bool ValidContinuation(unsigned char lead, int i, unsigned char c) {
  if (i == 1) {
    if (lead == 0xE0) return c >= 0xA0 && c <= 0xBF;
    if (lead == 0xED) return c >= 0x80 && c <= 0x9F;
    if (lead == 0xF0) return c >= 0x90 && c <= 0xBF;
    if (lead == 0xF4) return c >= 0x80 && c <= 0x8F;
  }
  return c >= 0x80 && c <= 0xBF;
}

}  // namespace

void DrainUtf8(std::string& bytes, std::string& out, bool final) {
  size_t i = 0;
  const size_t n = bytes.size();
  while (i < n) {
    const auto lead = static_cast<unsigned char>(bytes[i]);
    const int len = SequenceLength(lead);
    if (len == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    int have = 1;
    while (have < len && i + have < n &&
           ValidContinuation(lead, have, static_cast<unsigned char>(bytes[i + have]))) {
      ++have;
    }
    if (have == len) {
      out.append(bytes, i, len);
      i += len;
    } else if (i + have == n && !final) {
      break;  // incomplete so far: wait for the next token's bytes
    } else {
      out += kReplacement;  // one replacement for the maximal invalid subpart
      i += have;
    }
  }
  bytes.erase(0, i);
}

TextStream::TextStream(const model::Tokenizer& tokenizer, std::vector<std::string> stops,
                       bool trim_leading_space)
    : tokenizer_(tokenizer), trim_leading_space_(trim_leading_space) {
  for (std::string& s : stops) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

std::string TextStream::Push(int32_t token) { return PushBytes(tokenizer_.TokenBytes(token)); }

std::string TextStream::PushBytes(std::string_view bytes) {
  if (stopped_) return {};
  raw_.append(bytes);
  DrainUtf8(raw_, text_, /*final=*/false);
  return Release();
}

std::string TextStream::Finish() {
  if (stopped_) return {};
  DrainUtf8(raw_, text_, /*final=*/true);
  std::string out = Release();
  out += text_;  // a partial stop sequence that never completed is ordinary text
  text_.clear();
  return out;
}

std::string TextStream::Release() {
  if (trim_leading_space_ && !seen_visible_) {
    size_t first = text_.find_first_not_of(' ');
    text_.erase(0, first == std::string::npos ? text_.size() : first);
    if (!text_.empty()) seen_visible_ = true;
  }
  // Every stop sequence starts inside text_: earlier text was released only once no suffix of it
  // could begin one.
  size_t stop_at = std::string::npos;
  for (const std::string& s : stops_) stop_at = std::min(stop_at, text_.find(s));
  if (stop_at != std::string::npos) {
    std::string out = text_.substr(0, stop_at);
    text_.clear();
    raw_.clear();
    stopped_ = true;
    return out;
  }
  // Hold back the longest suffix that is a proper prefix of some stop sequence.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    for (size_t k = std::min(text_.size(), s.size() - 1); k > hold; --k) {
      if (std::string_view(text_).substr(text_.size() - k) == std::string_view(s).substr(0, k)) {
        hold = k;
        break;
      }
    }
  }
  std::string out = text_.substr(0, text_.size() - hold);
  text_.erase(0, text_.size() - hold);
  return out;
}

}  // namespace swarm::gateway
