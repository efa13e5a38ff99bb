// Tokenizers built from GGUF metadata (tokenizer.ggml.*): SentencePiece-style (`llama`) and
// byte-level BPE (`gpt2`, with the GPT-2, Llama-3 and Qwen2 pre-tokenizers). Immutable after
// construction: Encode/Decode may be called from any thread. A StreamingDecoder belongs to one
// thread and must not outlive its Tokenizer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace swarm::model {

class GgufFile;

class Tokenizer {
 public:
  // Validates the vocabulary (array lengths, special ids, merges...): a bad one is an error.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromGguf(const GgufFile& file);
  virtual ~Tokenizer() = default;

  // Token ids for `text`. No BOS unless add_bos; special-token text (e.g. "<|im_start|>") is
  // recognised only when parse_special (user-defined tokens are always matched whole, as in
  // llama.cpp and Hugging Face tokenizers).
  virtual std::vector<int32_t> Encode(std::string_view text, bool add_bos,
                                      bool parse_special) const = 0;
  // The bytes a token stands for (byte-fallback tokens give one raw byte; SPM's U+2581 becomes a
  // space). Control tokens (BOS/EOS...) give "". Out-of-range ids give "".
  virtual std::string TokenBytes(int32_t id) const = 0;
  // Concatenated bytes of `ids`; SPM drops the leading space the encoder added after BOS.
  virtual std::string Decode(const std::vector<int32_t>& ids) const = 0;

  virtual int32_t n_vocab() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 when the vocabulary has none
  virtual int32_t eos_id() const = 0;
  virtual bool add_bos() const = 0;  // tokenizer.ggml.add_bos_token (default per type)
  // True for end-of-generation tokens (EOS, EOT, <|im_end|>, ...).
  virtual bool IsEndOfGeneration(int32_t id) const = 0;
  // Text of a token as stored in the vocabulary (for inspection and templates).
  virtual std::string_view TokenText(int32_t id) const = 0;

  // Control, unknown and user-defined tokens: the ones the encoder matches whole, and after which
  // an SPM encoder starts a new word with a space prefix.
  virtual bool IsSpecial(int32_t /*id*/) const { return false; }
  // SPM with add_space_prefix: the encoder puts a space before the text at the start and after
  // each special token, so decoding drops the leading space of the piece that follows them.
  virtual bool strips_prefix_space() const { return false; }
};

// Turns a stream of token ids into valid UTF-8 text: bytes of an incomplete multi-byte sequence are
// held back until completed; invalid bytes become U+FFFD (one per maximal invalid subpart, as the
// Unicode standard recommends). Handles SPM's leading-space rule: at the start of the stream (or
// right after a special token such as BOS) a leading space is dropped, as Decode() does.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  // at_start = false when the stream continues text whose tokens were not pushed here (e.g. the
  // generated continuation of a prompt): its first piece keeps its leading space.
  StreamingDecoder(const Tokenizer& tokenizer, bool at_start)
      : tokenizer_(tokenizer), first_(at_start) {}
  // Text that became complete with this token (possibly empty).
  std::string Push(int32_t id);
  // Whatever is still held back, with invalid tails replaced.
  std::string Finish();

 private:
  const Tokenizer& tokenizer_;
  std::string pending_;
  bool first_ = true;  // at the start of the text or right after a special token
};

}  // namespace swarm::model
