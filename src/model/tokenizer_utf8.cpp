#include "model/tokenizer_utf8.h"

namespace swarm::model {

Utf8Scan ScanUtf8(std::string_view s, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t b0 = byte(pos);
  if (b0 < 0x80) return {Utf8Scan::kValid, 1};
  // Continuation count and the allowed range of the second byte (Unicode Table 3-7), which rules
  // out overlong forms, surrogates and code points above U+10FFFF.
  size_t need = 0;
  uint8_t lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 == 0xE0) {
    need = 2, lo = 0xA0;
  } else if (b0 == 0xED) {
    need = 2, hi = 0x9F;
  } else if (b0 >= 0xE1 && b0 <= 0xEF) {
    need = 2;
  } else if (b0 == 0xF0) {
    need = 3, lo = 0x90;
  } else if (b0 >= 0xF1 && b0 <= 0xF3) {
    need = 3;
  } else if (b0 == 0xF4) {
    need = 3, hi = 0x8F;
  } else {
    return {Utf8Scan::kInvalid, 1};
  }
  for (size_t i = 1; i <= need; ++i) {
    if (pos + i >= s.size()) return {Utf8Scan::kTruncated, i};
    const uint8_t b = byte(pos + i);
    if (b < lo || b > hi) return {Utf8Scan::kInvalid, i};
    lo = 0x80, hi = 0xBF;
  }
  return {Utf8Scan::kValid, need + 1};
}

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

size_t AppendSanitizedUtf8(std::string_view in, bool final, std::string& out) {
  size_t pos = 0;
  while (pos < in.size()) {
    const Utf8Scan scan = ScanUtf8(in, pos);
    if (scan.kind == Utf8Scan::kValid) {
      out.append(in.substr(pos, scan.length));
    } else if (scan.kind == Utf8Scan::kTruncated && !final) {
      return pos;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD
    }
    pos += scan.length;
  }
  return pos;
}

}  // namespace swarm::model
