// The OpenAI wire format, without any I/O: parsing and validating /v1/completions and
// /v1/chat/completions request bodies (untrusted JSON: every field type- and range-checked, unknown
// top-level fields ignored as OpenAI does), and building response bodies, stream chunks and error
// bodies in exactly the shapes the official clients parse. Pure functions: any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/chat_template.h"
#include "gateway/json_constraint.h"
#include "model/sampler.h"
#include "nlohmann/json.hpp"

namespace swarm::gateway {

// An error as OpenAI reports it: {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // "" -> null
  std::string code;   // "" -> null
};

std::string ErrorBody(const ApiError& error);
nlohmann::json ErrorJson(const ApiError& error);

struct RequestLimits {
  int32_t n_vocab = 0;           // token ids in a prompt array must be below this
  int32_t max_tokens_limit = 0;  // the largest max_tokens accepted
  size_t max_stop_sequences = 4;
  int32_t max_n = 8;  // the most choices one request may ask for
};

struct CompletionParams {
  bool chat = false;
  std::string model;  // as the client sent it ("" when absent)
  // /v1/completions: exactly one of prompt_text / prompt_tokens.
  std::optional<std::string> prompt_text;
  std::vector<int32_t> prompt_tokens;
  bool echo = false;
  // Log-probabilities: -1 none; k >= 0: each token's and its k most likely alternatives
  // (completions: `logprobs` 0..5; chat: `logprobs: true` with `top_logprobs` 0..20).
  int32_t logprobs = -1;
  // /v1/chat/completions
  std::vector<ChatMessage> messages;

  std::optional<int32_t> max_tokens;  // nullopt: the endpoint's default
  model::SamplingParams sampling;
  bool seed_given = false;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  int32_t n = 1;               // choices, generated together
  // response_format json_object / json_schema: the grammar every choice must follow; null: text.
  std::shared_ptr<const JsonGrammar> json_grammar;
};

// Parses a request body; `chat` selects the endpoint's schema. nullopt on success with *out filled.
std::optional<ApiError> ParseCompletionRequest(std::string_view body, bool chat,
                                               const RequestLimits& limits, CompletionParams* out);

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// Fields every response object of one request shares.
struct ResponseMeta {
  std::string id;       // "cmpl-..." / "chatcmpl-..."
  int64_t created = 0;  // unix seconds
  std::string model;
};

nlohmann::json UsageJson(const Usage& usage);
// Non-streamed responses.
nlohmann::json CompletionJson(const ResponseMeta& meta, const std::string& text,
                              const std::string& finish_reason, const Usage& usage);
nlohmann::json ChatCompletionJson(const ResponseMeta& meta, const std::string& content,
                                  const std::string& finish_reason, const Usage& usage);
// Stream chunks. finish_reason "" -> null. Chat: `role` only in the first chunk, `content` omitted
// when nullopt (the final chunk's delta is {}).
nlohmann::json CompletionChunkJson(const ResponseMeta& meta, const std::string& text,
                                   const std::string& finish_reason);
nlohmann::json ChatChunkJson(const ResponseMeta& meta, bool with_role,
                             const std::optional<std::string>& content,
                             const std::string& finish_reason);
// The usage-only chunk sent last when stream_options.include_usage (choices is empty).
nlohmann::json UsageChunkJson(const ResponseMeta& meta, bool chat, const Usage& usage);

// `data: <json>\n\n`, and the terminating `data: [DONE]\n\n`.
std::string SseEvent(const nlohmann::json& data);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// JSON serialisation that never throws: invalid UTF-8 is replaced.
std::string Dump(const nlohmann::json& j);

}  // namespace swarm::gateway
