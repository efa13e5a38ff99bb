// Turns a stream of generated token ids into the text a client may see: whole UTF-8 characters only
// (model::StreamingDecoder holds back a character split over tokens), and stop sequences cut out
// even when they arrive split over several tokens (text that might be the start of a stop sequence
// is held back until it is known not to be). One per generation; not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/tokenizer.h"

namespace swarm::gateway {

class TextStream {
 public:
  // `stops`: stop sequences (empty ones are ignored). `at_start`: the prompt ended with a special
  // token (BOS), so an SPM leading space is dropped as Decode() would. `trim_leading_space`: drop
  // spaces before the first visible character (chat replies).
  TextStream(const model::Tokenizer& tokenizer, std::vector<std::string> stops, bool at_start,
             bool trim_leading_space);

  // Adds one token; returns the text that became safe to send (possibly empty). After a stop
  // sequence was found, stopped() is true and later tokens are ignored.
  std::string Push(int32_t token);
  // End of generation: everything still held back (a partial stop sequence is real text after all).
  std::string Finish();

  bool stopped() const { return stopped_; }

 private:
  std::string Release();

  model::StreamingDecoder decoder_;
  std::vector<std::string> stops_;
  bool trim_leading_space_;
  std::string text_;  // decoded text not yet sent
  bool stopped_ = false;
  bool seen_visible_ = false;
};

}  // namespace swarm::gateway
