// Turns a stream of generated token ids into the text a client may see: whole UTF-8 characters only
// (a character split over tokens is held back until complete, invalid bytes become U+FFFD), and
// stop sequences cut out even when they arrive split over several tokens (text that might be the
// start of a stop sequence is held back until it is known not to be). One per generation; not
// thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/tokenizer.h"

namespace swarm::gateway {

// Moves the complete UTF-8 characters at the front of `bytes` to `out`, replacing invalid bytes
// with U+FFFD. An incomplete but so far valid character at the end stays in `bytes`, unless
// `final`.
void DrainUtf8(std::string& bytes, std::string& out, bool final);

class TextStream {
 public:
  // `stops`: stop sequences (empty ones are ignored). `trim_leading_space`: drop spaces before the
  // first visible character (chat replies, where SPM tokens carry a leading space).
  TextStream(const model::Tokenizer& tokenizer, std::vector<std::string> stops,
             bool trim_leading_space);

  // Adds one token; returns the text that became safe to send (possibly empty). After a stop
  // sequence was found, stopped() is true and later tokens are ignored.
  std::string Push(int32_t token);
  // Adds raw bytes as if a token had produced them.
  std::string PushBytes(std::string_view bytes);
  // End of generation: everything still held back (a partial stop sequence is real text after all).
  std::string Finish();

  bool stopped() const { return stopped_; }

 private:
  std::string Release();

  const model::Tokenizer& tokenizer_;
  std::vector<std::string> stops_;
  bool trim_leading_space_;
  std::string raw_;   // bytes of an incomplete UTF-8 character
  std::string text_;  // decoded text not yet sent
  bool stopped_ = false;
  bool seen_visible_ = false;
};

}  // namespace swarm::gateway
