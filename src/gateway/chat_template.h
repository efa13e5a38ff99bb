// Chat templates without a Jinja engine: the common formats (Llama 2, Llama 3, ChatML, Mistral,
// Zephyr, and a plain fallback) written out in code, recognised from the GGUF's
// tokenizer.chat_template by characteristic substrings. Template markers become special tokens only
// where the vocabulary has them; message content is tokenized with special-token parsing off, so a
// user cannot inject control tokens. A ChatFormatter is immutable after construction: any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/tokenizer.h"

namespace swarm::gateway {

enum class ChatTemplateKind { kPlain, kLlama2, kLlama3, kChatMl, kMistral, kZephyr };

std::string_view ChatTemplateName(ChatTemplateKind kind);
// Accepts the names ChatTemplateName gives ("llama2", "llama3", "chatml", "mistral", "zephyr",
// "plain"); InvalidArgument listing them otherwise.
absl::StatusOr<ChatTemplateKind> ParseChatTemplateName(std::string_view name);
// The format a Jinja chat template implements, by its characteristic markers; nullopt when none is
// recognised (including an empty template).
std::optional<ChatTemplateKind> DetectChatTemplate(std::string_view jinja);
// `override_name` (a --chat-template flag) wins when not empty; then detection; then plain.
absl::StatusOr<ChatTemplateKind> ResolveChatTemplate(std::string_view override_name,
                                                     std::string_view jinja);

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// A rendered prompt piece: either template markup that may name a special token, or text.
struct ChatPiece {
  enum class Kind { kBos, kMarker, kText } kind = Kind::kText;
  std::string text;  // kMarker: e.g. "<|im_start|>"; kText: literal text (markup and content)
};

class ChatFormatter {
 public:
  ChatFormatter(ChatTemplateKind kind, const model::Tokenizer& tokenizer);

  ChatTemplateKind kind() const { return kind_; }

  // The prompt for `messages` followed by the start of the assistant's reply. When the last message
  // is the assistant's, the reply continues it. InvalidArgument for an unknown role or no messages.
  absl::StatusOr<std::vector<ChatPiece>> Render(const std::vector<ChatMessage>& messages) const;
  // Render() as token ids: markers that are special tokens in this vocabulary become those tokens;
  // everything else is tokenized as text with special-token parsing off.
  absl::StatusOr<std::vector<int32_t>> Tokenize(const std::vector<ChatMessage>& messages) const;
  // Render() as one string (for logs and tests); BOS shown as the tokenizer's BOS text.
  absl::StatusOr<std::string> RenderText(const std::vector<ChatMessage>& messages) const;

  // Text that ends the assistant's turn when the model writes it as text rather than as a special
  // token (e.g. "<|im_end|>" in a vocabulary without it, "\nUser:" for the plain format).
  const std::vector<std::string>& stop_strings() const { return stop_strings_; }

 private:
  // The token of a marker if the vocabulary has it as one special token.
  std::optional<int32_t> MarkerToken(std::string_view marker) const;

  ChatTemplateKind kind_;
  const model::Tokenizer& tokenizer_;
  std::vector<std::string> stop_strings_;
};

}  // namespace swarm::gateway
