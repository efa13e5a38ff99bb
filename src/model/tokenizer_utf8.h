// UTF-8 helpers for the tokenizers: classifying byte sequences (valid, invalid, cut short) by the
// Unicode standard's well-formedness table, and encoding code points. Pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace swarm::model {

struct Utf8Scan {
  enum Kind {
    kValid,      // `length` bytes form one well-formed character
    kTruncated,  // the `length` bytes up to the end are a valid start of a longer character
    kInvalid,    // `length` bytes (the maximal ill-formed subpart) stand for one U+FFFD
  };
  Kind kind = kInvalid;
  size_t length = 1;
};

// Classifies the sequence at s[pos] (pos < s.size()).
Utf8Scan ScanUtf8(std::string_view s, size_t pos);

void AppendUtf8(uint32_t code_point, std::string& out);

// Appends the well-formed prefix of `in` to `out`, invalid subparts replaced by U+FFFD. When
// !final, a truncated character at the very end is left out; returns how many bytes of `in` were
// consumed.
size_t AppendSanitizedUtf8(std::string_view in, bool final, std::string& out);

}  // namespace swarm::model
