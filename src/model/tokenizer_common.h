// What the SPM and BPE tokenizers share: the validated vocabulary, text->id lookup, the
// special-token pass of the encoder (llama.cpp's tokenizer_st_partition), per-token decoded bytes,
// Decode and end-of-generation ids. Internal to the model module; immutable once built.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/tokenizer.h"
#include "model/tokenizer_vocab.h"

namespace swarm::model {

class VocabTokenizer : public Tokenizer {
 public:
  std::vector<int32_t> Encode(std::string_view text, bool add_bos,
                              bool parse_special) const override;
  std::string TokenBytes(int32_t id) const override;
  std::string Decode(const std::vector<int32_t>& ids) const override;
  int32_t n_vocab() const override { return static_cast<int32_t>(vocab_.tokens.size()); }
  int32_t bos_id() const override { return vocab_.bos_id; }
  int32_t eos_id() const override { return vocab_.eos_id; }
  bool add_bos() const override { return vocab_.add_bos; }
  bool IsEndOfGeneration(int32_t id) const override;
  std::string_view TokenText(int32_t id) const override;
  bool IsSpecial(int32_t id) const override;

  const Vocabulary& vocab() const { return vocab_; }
  TokenType type(int32_t id) const { return vocab_.token_types[id]; }
  // Id of the token whose text is exactly `text`, or -1. With duplicate texts the last id wins,
  // as in llama.cpp.
  int32_t Lookup(std::string_view text) const;

 protected:
  // `vocab` must have passed ValidateVocabulary (scores and token_types filled in).
  explicit VocabTokenizer(Vocabulary vocab);

  // Encodes a stretch of text that holds no special token. after_special: it starts the input or
  // follows a special token.
  virtual void EncodeText(std::string_view text, bool after_special,
                          std::vector<int32_t>& out) const = 0;

  // Decoded bytes of every token; the subclass fills them in at construction.
  std::vector<std::string> pieces_;

 private:
  Vocabulary vocab_;
  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  std::vector<int32_t> special_ids_;  // control/unknown/user-defined, longest text first
  std::vector<bool> end_of_generation_;
};

// Checks everything both kinds need (lengths, types, special ids, vocabulary size) and fills in
// default scores and token types.
absl::Status ValidateVocabulary(Vocabulary& vocab);

// Appends the decoded piece of `id` to `out`, applying the SPM rule that drops the leading space
// of a piece at the start or right after a special token. `at_start` carries that state.
void AppendDecodedPiece(const Tokenizer& tokenizer, int32_t id, bool& at_start, std::string& out);

absl::StatusOr<std::unique_ptr<Tokenizer>> MakeSpmTokenizer(Vocabulary vocab);
absl::StatusOr<std::unique_ptr<Tokenizer>> MakeBpeTokenizer(Vocabulary vocab);

}  // namespace swarm::model
