// Log-probabilities in OpenAI's two response shapes: /v1/completions' legacy object
// ({tokens, token_logprobs, top_logprobs, text_offset}) and /v1/chat/completions' content list
// ({token, logprob, bytes, top_logprobs}). A LogprobCollector gathers the prompt's (echo) and the
// generated tokens' entries of one response and gives them whole or chunk by chunk (streaming).
// One per request, on the request's thread; borrows the tokenizer.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "model/scoring.h"
#include "model/tokenizer.h"
#include "nlohmann/json.hpp"

namespace swarm::gateway {

class LogprobCollector {
 public:
  // `text_offset`: where the first entry's text starts in the response's text (0 with echo; the
  // prompt's length without, as OpenAI counts it).
  LogprobCollector(const model::Tokenizer& tokenizer, bool chat, int64_t text_offset)
      : tokenizer_(tokenizer), chat_(chat), text_offset_(text_offset) {}

  // The prompt (echo): its first token has no log-probability; `scored` holds the rest's, in order.
  void AddPrompt(std::span<const int32_t> prompt, std::span<const model::TokenLogprob> scored);
  void Add(const model::TokenLogprob& scored);

  // Every entry so far: the value of a response's choices[].logprobs.
  nlohmann::json Json() const { return Build(0); }
  // The entries added since the last call: a stream chunk's choices[].logprobs.
  nlohmann::json TakeChunk();
  bool has_chunk() const { return chunk_from_ < entries_.size(); }

 private:
  struct Entry {
    int32_t token = -1;
    std::optional<model::TokenLogprob> scored;  // nullopt: the prompt's first token
    int64_t text_offset = 0;
  };
  void Push(int32_t token, std::optional<model::TokenLogprob> scored);
  nlohmann::json Build(size_t from) const;
  // The token as a string: its bytes, or its vocabulary text for control tokens (no bytes).
  std::string TokenString(int32_t token) const;

  const model::Tokenizer& tokenizer_;
  bool chat_;
  int64_t text_offset_;
  std::vector<Entry> entries_;
  size_t chunk_from_ = 0;
};

}  // namespace swarm::gateway
