#include "gateway/chat_template.h"

#include "absl/strings/str_cat.h"

namespace swarm::gateway {
namespace {

bool Contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

std::string Trim(std::string_view s) {
  const char* ws = " \t\r\n";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(ws);
  return std::string(s.substr(b, e - b + 1));
}

// A user message and the assistant's reply to it; `has_assistant` distinguishes an empty reply from
// none.
struct Turn {
  std::string user;
  std::string assistant;
  bool has_assistant = false;
};

struct Conversation {
  std::string system;                 // every system message, joined
  std::vector<ChatMessage> messages;  // user and assistant only, in order
  std::vector<Turn> turns;
};

absl::StatusOr<Conversation> Normalize(const std::vector<ChatMessage>& messages) {
  if (messages.empty()) return absl::InvalidArgumentError("messages must not be empty");
  Conversation c;
  for (const ChatMessage& m : messages) {
    if (m.role == "system" || m.role == "developer") {
      if (!c.system.empty()) c.system += "\n\n";
      c.system += m.content;
    } else if (m.role == "user" || m.role == "assistant") {
      c.messages.push_back({m.role, m.content});
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported message role '", m.role,
                       "' (supported: system, developer, user, assistant)"));
    }
  }
  // Formats that alternate [INST] blocks need turns: consecutive messages of one role are merged.
  for (const ChatMessage& m : c.messages) {
    if (m.role == "user") {
      if (c.turns.empty() || c.turns.back().has_assistant) {
        c.turns.push_back({m.content, "", false});
      } else {
        c.turns.back().user += (c.turns.back().user.empty() ? "" : "\n\n") + m.content;
      }
    } else {
      if (c.turns.empty()) c.turns.push_back({"", "", false});
      Turn& t = c.turns.back();
      if (t.has_assistant) t.assistant += "\n\n";
      t.assistant += m.content;
      t.has_assistant = true;
    }
  }
  return c;
}

bool EndsWithAssistant(const Conversation& c) {
  return !c.messages.empty() && c.messages.back().role == "assistant";
}

using Pieces = std::vector<ChatPiece>;

void Bos(Pieces& p) { p.push_back({ChatPiece::Kind::kBos, ""}); }
void Marker(Pieces& p, std::string_view m) {
  p.push_back({ChatPiece::Kind::kMarker, std::string(m)});
}
void Text(Pieces& p, std::string_view t) {
  if (!t.empty()) p.push_back({ChatPiece::Kind::kText, std::string(t)});
}

// <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] {user} [/INST]
// Mistral: <s>[INST] {system}\n\n{user} [/INST]{assistant}</s>[INST] {user} [/INST]
Pieces RenderInst(const Conversation& c, bool llama2) {
  Pieces p;
  Bos(p);
  const bool continues = EndsWithAssistant(c);
  // Only system messages: one [INST] block still carries the system prompt.
  const std::vector<Turn> only_system = {Turn{}};
  const std::vector<Turn>& turns = c.turns.empty() ? only_system : c.turns;
  for (size_t i = 0; i < turns.size(); ++i) {
    const Turn& t = turns[i];
    if (i > 0 && llama2) Bos(p);
    std::string user = t.user;
    if (i == 0 && !c.system.empty()) {
      user = llama2 ? absl::StrCat("<<SYS>>\n", c.system, "\n<</SYS>>\n\n", user)
                    : absl::StrCat(c.system, "\n\n", user);
    }
    Marker(p, "[INST]");
    Text(p, " " + user + " ");
    Marker(p, "[/INST]");
    if (!t.has_assistant) continue;
    const bool last = i + 1 == turns.size();
    if (last && continues) {
      Text(p, llama2 ? " " + t.assistant : t.assistant);
    } else {
      Text(p, llama2 ? " " + t.assistant + " " : t.assistant);
      Marker(p, "</s>");
    }
  }
  return p;
}

// <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>...
Pieces RenderLlama3(const Conversation& c) {
  Pieces p;
  Bos(p);
  auto header = [&p](std::string_view role) {
    Marker(p, "<|start_header_id|>");
    Text(p, role);
    Marker(p, "<|end_header_id|>");
  };
  if (!c.system.empty()) {
    header("system");
    Text(p, "\n\n" + Trim(c.system));
    Marker(p, "<|eot_id|>");
  }
  const bool continues = EndsWithAssistant(c);
  for (size_t i = 0; i < c.messages.size(); ++i) {
    header(c.messages[i].role);
    Text(p, "\n\n" + Trim(c.messages[i].content));
    if (continues && i + 1 == c.messages.size()) return p;
    Marker(p, "<|eot_id|>");
  }
  header("assistant");
  Text(p, "\n\n");
  return p;
}

// <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n
Pieces RenderChatMl(const Conversation& c) {
  Pieces p;
  Bos(p);
  if (!c.system.empty()) {
    Marker(p, "<|im_start|>");
    Text(p, "system\n" + c.system);
    Marker(p, "<|im_end|>");
    Text(p, "\n");
  }
  const bool continues = EndsWithAssistant(c);
  for (size_t i = 0; i < c.messages.size(); ++i) {
    Marker(p, "<|im_start|>");
    Text(p, c.messages[i].role + "\n" + c.messages[i].content);
    if (continues && i + 1 == c.messages.size()) return p;
    Marker(p, "<|im_end|>");
    Text(p, "\n");
  }
  Marker(p, "<|im_start|>");
  Text(p, "assistant\n");
  return p;
}

// <|system|>\n{content}</s>\n<|user|>\n{content}</s>\n<|assistant|>\n
Pieces RenderZephyr(const Conversation& c) {
  Pieces p;
  Bos(p);
  if (!c.system.empty()) {
    Marker(p, "<|system|>");
    Text(p, "\n" + c.system);
    Marker(p, "</s>");
    Text(p, "\n");
  }
  const bool continues = EndsWithAssistant(c);
  for (size_t i = 0; i < c.messages.size(); ++i) {
    Marker(p, "<|" + c.messages[i].role + "|>");
    Text(p, "\n" + c.messages[i].content);
    if (continues && i + 1 == c.messages.size()) return p;
    Marker(p, "</s>");
    Text(p, "\n");
  }
  Marker(p, "<|assistant|>");
  Text(p, "\n");
  return p;
}

// {system}\n\nUser: {content}\nAssistant: {content}\n...Assistant:
Pieces RenderPlain(const Conversation& c) {
  Pieces p;
  Bos(p);
  std::string text;
  if (!c.system.empty()) text += c.system + "\n\n";
  const bool continues = EndsWithAssistant(c);
  for (size_t i = 0; i < c.messages.size(); ++i) {
    const bool user = c.messages[i].role == "user";
    text += (user ? "User: " : "Assistant: ") + c.messages[i].content;
    if (continues && i + 1 == c.messages.size()) {
      Text(p, text);
      return p;
    }
    text += "\n";
  }
  text += "Assistant:";
  Text(p, text);
  return p;
}

}  // namespace

std::string_view ChatTemplateName(ChatTemplateKind kind) {
  switch (kind) {
    case ChatTemplateKind::kPlain:
      return "plain";
    case ChatTemplateKind::kLlama2:
      return "llama2";
    case ChatTemplateKind::kLlama3:
      return "llama3";
    case ChatTemplateKind::kChatMl:
      return "chatml";
    case ChatTemplateKind::kMistral:
      return "mistral";
    case ChatTemplateKind::kZephyr:
      return "zephyr";
  }
  return "plain";
}

absl::StatusOr<ChatTemplateKind> ParseChatTemplateName(std::string_view name) {
  for (ChatTemplateKind k :
       {ChatTemplateKind::kPlain, ChatTemplateKind::kLlama2, ChatTemplateKind::kLlama3,
        ChatTemplateKind::kChatMl, ChatTemplateKind::kMistral, ChatTemplateKind::kZephyr}) {
    if (name == ChatTemplateName(k)) return k;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown chat template '", std::string(name),
                   "' (known: llama2, llama3, chatml, mistral, zephyr, plain)"));
}

std::optional<ChatTemplateKind> DetectChatTemplate(std::string_view jinja) {
  if (Contains(jinja, "<|im_start|>")) return ChatTemplateKind::kChatMl;
  if (Contains(jinja, "<|start_header_id|>") && Contains(jinja, "<|end_header_id|>")) {
    return ChatTemplateKind::kLlama3;
  }
  if (Contains(jinja, "[INST]")) {
    return Contains(jinja, "<<SYS>>") ? ChatTemplateKind::kLlama2 : ChatTemplateKind::kMistral;
  }
  // Phi-3 also uses <|user|> but ends turns with <|end|>: a different format.
  if (Contains(jinja, "<|user|>") && Contains(jinja, "<|assistant|>") &&
      !Contains(jinja, "<|end|>")) {
    return ChatTemplateKind::kZephyr;
  }
  return std::nullopt;
}

absl::StatusOr<ChatTemplateKind> ResolveChatTemplate(std::string_view override_name,
                                                     std::string_view jinja) {
  if (!override_name.empty()) return ParseChatTemplateName(override_name);
  return DetectChatTemplate(jinja).value_or(ChatTemplateKind::kPlain);
}

ChatFormatter::ChatFormatter(ChatTemplateKind kind, const model::Tokenizer& tokenizer)
    : kind_(kind), tokenizer_(tokenizer) {
  switch (kind) {
    case ChatTemplateKind::kChatMl:
      stop_strings_ = {"<|im_end|>", "<|im_start|>"};
      break;
    case ChatTemplateKind::kLlama3:
      stop_strings_ = {"<|eot_id|>", "<|start_header_id|>"};
      break;
    case ChatTemplateKind::kZephyr:
      stop_strings_ = {"</s>", "<|user|>"};
      break;
    case ChatTemplateKind::kLlama2:
    case ChatTemplateKind::kMistral:
      stop_strings_ = {"</s>", "[INST]"};
      break;
    case ChatTemplateKind::kPlain:
      stop_strings_ = {"\nUser:"};
      break;
  }
}

absl::StatusOr<std::vector<ChatPiece>> ChatFormatter::Render(
    const std::vector<ChatMessage>& messages) const {
  absl::StatusOr<Conversation> c = Normalize(messages);
  if (!c.ok()) return c.status();
  switch (kind_) {
    case ChatTemplateKind::kLlama2:
      return RenderInst(*c, /*llama2=*/true);
    case ChatTemplateKind::kMistral:
      return RenderInst(*c, /*llama2=*/false);
    case ChatTemplateKind::kLlama3:
      return RenderLlama3(*c);
    case ChatTemplateKind::kChatMl:
      return RenderChatMl(*c);
    case ChatTemplateKind::kZephyr:
      return RenderZephyr(*c);
    case ChatTemplateKind::kPlain:
      break;
  }
  return RenderPlain(*c);
}

std::optional<int32_t> ChatFormatter::MarkerToken(std::string_view marker) const {
  std::vector<int32_t> ids = tokenizer_.Encode(marker, /*add_bos=*/false, /*parse_special=*/true);
  if (ids.size() == 1 && tokenizer_.IsSpecial(ids[0]) && tokenizer_.TokenText(ids[0]) == marker) {
    return ids[0];
  }
  return std::nullopt;
}

absl::StatusOr<std::vector<int32_t>> ChatFormatter::Tokenize(
    const std::vector<ChatMessage>& messages) const {
  absl::StatusOr<std::vector<ChatPiece>> pieces = Render(messages);
  if (!pieces.ok()) return pieces.status();
  std::vector<int32_t> ids;
  std::string text;  // pending text: markup without a special token of its own, and content
  auto flush = [&] {
    if (text.empty()) return;
    std::vector<int32_t> t = tokenizer_.Encode(text, /*add_bos=*/false, /*parse_special=*/false);
    ids.insert(ids.end(), t.begin(), t.end());
    text.clear();
  };
  bool first = true;
  for (const ChatPiece& piece : *pieces) {
    switch (piece.kind) {
      case ChatPiece::Kind::kBos:
        // The leading BOS follows the vocabulary's add_bos flag; BOS inside the history (Llama 2)
        // is part of the format.
        if (tokenizer_.bos_id() >= 0 && (!first || tokenizer_.add_bos())) {
          flush();
          ids.push_back(tokenizer_.bos_id());
        }
        break;
      case ChatPiece::Kind::kMarker:
        if (std::optional<int32_t> id = MarkerToken(piece.text)) {
          flush();
          ids.push_back(*id);
        } else {
          text += piece.text;
        }
        break;
      case ChatPiece::Kind::kText:
        text += piece.text;
        break;
    }
    first = false;
  }
  flush();
  return ids;
}

absl::StatusOr<std::string> ChatFormatter::RenderText(
    const std::vector<ChatMessage>& messages) const {
  absl::StatusOr<std::vector<ChatPiece>> pieces = Render(messages);
  if (!pieces.ok()) return pieces.status();
  std::string out;
  bool first = true;
  for (const ChatPiece& piece : *pieces) {
    if (piece.kind == ChatPiece::Kind::kBos) {
      if (tokenizer_.bos_id() >= 0 && (!first || tokenizer_.add_bos())) {
        out += tokenizer_.TokenText(tokenizer_.bos_id());
      }
    } else {
      out += piece.text;
    }
    first = false;
  }
  return out;
}

}  // namespace swarm::gateway
