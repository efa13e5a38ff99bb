// The vocabulary a tokenizer is built from: what GGUF's tokenizer.ggml.* keys hold, as plain data.
// ReadVocabulary copies it out of a GgufFile; MakeTokenizer validates it and builds the SPM or BPE
// tokenizer (tests build tiny vocabularies by hand). A value type; no threads involved.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/tokenizer.h"

namespace swarm::model {

class GgufFile;

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  kUndefined = 0,  // treated as normal
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

enum class VocabType {
  kSpm,  // tokenizer.ggml.model = "llama"
  kBpe,  // tokenizer.ggml.model = "gpt2"
};

struct Vocabulary {
  VocabType type = VocabType::kSpm;
  std::string pre;  // tokenizer.ggml.pre ("" when absent); chooses the BPE pre-tokenizer
  std::vector<std::string> tokens;
  std::vector<float> scores;           // empty, or one per token (SPM merge priority)
  std::vector<TokenType> token_types;  // empty (all normal), or one per token
  std::vector<std::string> merges;     // BPE: "left right", in rank order
  // Special ids, -1 for none.
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t eot_id = -1;
  int32_t eom_id = -1;
  int32_t unk_id = -1;
  int32_t pad_id = -1;
  int32_t sep_id = -1;
  bool add_bos = true;
  bool add_space_prefix = true;  // SPM only
};

// Reads tokenizer.ggml.*; fills defaults as llama.cpp does (SPM: bos 1, eos 2, unk 0, add_bos;
// BPE: no defaults, no add_bos). Type errors in the metadata are errors; consistency is checked by
// MakeTokenizer.
absl::StatusOr<Vocabulary> ReadVocabulary(const GgufFile& file);

// Validates `vocab` and builds its tokenizer. InvalidArgument naming the problem for a malformed
// vocabulary; Unimplemented for an unknown BPE pre-tokenizer.
absl::StatusOr<std::unique_ptr<Tokenizer>> MakeTokenizer(Vocabulary vocab);

}  // namespace swarm::model
