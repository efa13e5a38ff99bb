// Helpers the fuzz targets share: a failed property aborts (libFuzzer then keeps the input), and
// a small real tokenizer for the targets that need one (byte fallback, so any text encodes, and
// the special tokens of every chat template). Header-only; each target is its own process.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "model/tokenizer.h"
#include "model/tokenizer_vocab.h"

namespace swarm::fuzz {

inline void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz property violated: %s\n", what);
    std::abort();
  }
}

// An SPM vocabulary: <unk> <s> </s>, the chat templates' markers as control tokens, the 256
// byte tokens and a few words. Built once per process.
inline const model::Tokenizer& ChatTokenizer() {
  static const model::Tokenizer* tokenizer = [] {
    model::Vocabulary v;
    v.type = model::VocabType::kSpm;
    auto add = [&v](std::string text, model::TokenType type, float score) {
      v.tokens.push_back(std::move(text));
      v.token_types.push_back(type);
      v.scores.push_back(score);
    };
    add("<unk>", model::TokenType::kUnknown, 0);
    add("<s>", model::TokenType::kControl, 0);
    add("</s>", model::TokenType::kControl, 0);
    for (const char* marker :
         {"<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>",
          "<|end_header_id|>", "<|eot_id|>", "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>",
          "<|system|>", "<|user|>", "<|assistant|>"}) {
      add(marker, model::TokenType::kControl, 0);
    }
    for (int b = 0; b < 256; ++b) add(absl::StrFormat("<0x%02X>", b), model::TokenType::kByte, 0);
    float score = -1;
    // U+2581 (SPM's space) and words after it.
    for (const char* word : {"\u2581", "\u2581the", "\u2581a", "e", "t", "th", "he", "\u2581user",
                             "\u2581assistant", ":", "\n"}) {
      add(word, model::TokenType::kNormal, score);
      score -= 1;
    }
    v.bos_id = 1;
    v.eos_id = 2;
    v.unk_id = 0;
    auto made = model::MakeTokenizer(std::move(v));
    Check(made.ok(), "the chat tokenizer does not build");
    return made->release();
  }();
  return *tokenizer;
}

}  // namespace swarm::fuzz
