// libFuzzer target: chat templates (gateway/chat_template.h): template detection from a GGUF's
// tokenizer.chat_template (anyone's model file), template names (a flag), and rendering and
// tokenizing a client's messages in every format. Message content must never become a special
// token: only the template's own markers may.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "gateway/chat_template.h"

namespace {

namespace g = swarm::gateway;
using swarm::fuzz::Check;

constexpr g::ChatTemplateKind kKinds[] = {
    g::ChatTemplateKind::kPlain,  g::ChatTemplateKind::kLlama2,  g::ChatTemplateKind::kLlama3,
    g::ChatTemplateKind::kChatMl, g::ChatTemplateKind::kMistral, g::ChatTemplateKind::kZephyr};
constexpr const char* kRoles[] = {"system", "user", "assistant"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const std::string jinja = in.ConsumeRandomLengthString(512);
  const std::string name = in.ConsumeRandomLengthString(16);
  (void)g::DetectChatTemplate(jinja);
  (void)g::ParseChatTemplateName(name);
  auto resolved = g::ResolveChatTemplate(name, jinja);
  if (resolved.ok()) {
    auto back = g::ParseChatTemplateName(g::ChatTemplateName(*resolved));
    Check(back.ok() && *back == *resolved, "a template's name does not parse back to it");
  }

  std::vector<g::ChatMessage> messages(in.ConsumeIntegralInRange<size_t>(0, 6));
  for (g::ChatMessage& m : messages) {
    const uint8_t role = in.ConsumeIntegral<uint8_t>();
    m.role = role < 250 ? kRoles[role % 3] : in.ConsumeRandomLengthString(12);
    m.content = in.ConsumeRandomLengthString(256);
  }

  const swarm::model::Tokenizer& tok = swarm::fuzz::ChatTokenizer();
  for (g::ChatTemplateKind kind : kKinds) {
    g::ChatFormatter formatter(kind, tok);
    auto pieces = formatter.Render(messages);
    (void)formatter.RenderText(messages);
    auto ids = formatter.Tokenize(messages);
    Check(pieces.ok() == ids.ok(), "Render and Tokenize disagree on whether messages are valid");
    if (!ids.ok()) continue;
    size_t markers = 0;
    for (const g::ChatPiece& p : *pieces) markers += p.kind != g::ChatPiece::Kind::kText;
    size_t specials = 0;
    for (int32_t id : *ids) {
      Check(id >= 0 && id < tok.n_vocab(), "Tokenize produced an id outside the vocabulary");
      specials += tok.IsSpecial(id);
    }
    // Content is tokenized with special-token parsing off: "<|im_end|>" typed by a user stays
    // text, so special tokens come only from the template's markers and BOS.
    Check(specials <= markers, "message content became a special token");
  }
  return 0;
}
