// libFuzzer target: /v1/completions and /v1/chat/completions request bodies
// (gateway/openai_protocol.h) as any HTTP client may send them, then what the gateway does with an
// accepted one: render the chat messages with the model's template and tokenize them, and build
// the response and error bodies. Byte 0 picks the endpoint and the chat template; the rest is
// the body. Accepted parameters must be valid for the sampler; every body must be valid JSON.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_support.h"
#include "gateway/chat_template.h"
#include "gateway/openai_protocol.h"
#include "nlohmann/json.hpp"

namespace {

namespace g = swarm::gateway;
using swarm::fuzz::Check;

constexpr g::ChatTemplateKind kKinds[] = {
    g::ChatTemplateKind::kPlain,  g::ChatTemplateKind::kLlama2,  g::ChatTemplateKind::kLlama3,
    g::ChatTemplateKind::kChatMl, g::ChatTemplateKind::kMistral, g::ChatTemplateKind::kZephyr};

bool ValidJson(const std::string& text) { return nlohmann::json::accept(text); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool chat = (data[0] & 1) != 0;
  const g::ChatTemplateKind kind = kKinds[(data[0] >> 1) % std::size(kKinds)];
  std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);

  const swarm::model::Tokenizer& tok = swarm::fuzz::ChatTokenizer();
  g::RequestLimits limits;
  limits.n_vocab = tok.n_vocab();
  limits.max_tokens_limit = 4096;
  g::CompletionParams params;
  if (auto error = g::ParseCompletionRequest(body, chat, limits, &params)) {
    Check(error->status >= 400 && error->status < 600, "an error without an error status");
    Check(ValidJson(g::ErrorBody(*error)), "an error body is not valid JSON");
    return 0;
  }

  Check(params.chat == chat, "the parsed request is for the other endpoint");
  Check(params.sampling.Validate().ok(), "accepted sampling parameters the sampler refuses");
  Check(!params.max_tokens || (*params.max_tokens >= 0 && *params.max_tokens <= 4096),
        "accepted max_tokens beyond the limit");
  Check(params.stop.size() <= limits.max_stop_sequences, "accepted too many stop sequences");
  for (int32_t id : params.prompt_tokens) {
    Check(id >= 0 && id < tok.n_vocab(), "accepted a prompt token outside the vocabulary");
  }

  std::string text;
  if (chat) {
    g::ChatFormatter formatter(kind, tok);
    auto ids = formatter.Tokenize(params.messages);
    if (ids.ok()) {
      for (int32_t id : *ids) Check(id >= 0 && id < tok.n_vocab(), "a chat token out of range");
    }
    if (!params.messages.empty()) text = params.messages.back().content;
  } else if (params.prompt_text) {
    const auto ids = tok.Encode(*params.prompt_text, true, false);
    text = tok.Decode(ids);
  }

  // The client's own text comes back in responses (echo, or a model repeating it): any bytes
  // must still make valid JSON and server-sent events.
  const g::ResponseMeta meta{"cmpl-fuzz", 0, params.model};
  const g::Usage usage{static_cast<int64_t>(text.size()), 1};
  Check(ValidJson(g::Dump(chat ? g::ChatCompletionJson(meta, text, "stop", usage)
                               : g::CompletionJson(meta, text, "length", usage))),
        "a response body is not valid JSON");
  const std::string event = g::SseEvent(chat ? g::ChatChunkJson(meta, true, text, "")
                                             : g::CompletionChunkJson(meta, text, ""));
  Check(event.rfind("data: ", 0) == 0 && event.size() >= 8 &&
            event.compare(event.size() - 2, 2, "\n\n") == 0 &&
            event.find("\n\n") == event.size() - 2,
        "a stream chunk is not one server-sent event");
  return 0;
}
