#include "gateway/openai_logprobs.h"

namespace swarm::gateway {
namespace {

using nlohmann::json;

json Bytes(const std::string& s) {
  json out = json::array();
  for (unsigned char c : s) out.push_back(static_cast<int>(c));
  return out;
}

}  // namespace

void LogprobCollector::AddPrompt(std::span<const int32_t> prompt,
                                 std::span<const model::TokenLogprob> scored) {
  if (prompt.empty()) return;
  Push(prompt[0], std::nullopt);
  for (const model::TokenLogprob& s : scored) Push(s.token, s);
}

void LogprobCollector::Add(const model::TokenLogprob& scored) { Push(scored.token, scored); }

void LogprobCollector::Push(int32_t token, std::optional<model::TokenLogprob> scored) {
  entries_.push_back({token, std::move(scored), text_offset_});
  text_offset_ += static_cast<int64_t>(tokenizer_.TokenBytes(token).size());
}

std::string LogprobCollector::TokenString(int32_t token) const {
  std::string bytes = tokenizer_.TokenBytes(token);
  if (bytes.empty()) return std::string(tokenizer_.TokenText(token));
  return bytes;
}

json LogprobCollector::TakeChunk() {
  json out = Build(chunk_from_);
  chunk_from_ = entries_.size();
  return out;
}

json LogprobCollector::Build(size_t from) const {
  if (chat_) {
    json content = json::array();
    for (size_t i = from; i < entries_.size(); ++i) {
      const Entry& e = entries_[i];
      if (!e.scored) continue;  // chat has no echo
      json top = json::array();
      for (const model::TokenAlternative& alt : e.scored->top) {
        const std::string s = TokenString(alt.token);
        top.push_back({{"token", s}, {"logprob", alt.logprob}, {"bytes", Bytes(s)}});
      }
      const std::string s = TokenString(e.token);
      content.push_back({{"token", s},
                         {"logprob", e.scored->logprob},
                         {"bytes", Bytes(s)},
                         {"top_logprobs", std::move(top)}});
    }
    return json{{"content", std::move(content)}, {"refusal", nullptr}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top_logprobs = json::array(),
       text_offset = json::array();
  for (size_t i = from; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    tokens.push_back(TokenString(e.token));
    text_offset.push_back(e.text_offset);
    if (!e.scored) {
      token_logprobs.push_back(nullptr);
      top_logprobs.push_back(nullptr);
      continue;
    }
    token_logprobs.push_back(e.scored->logprob);
    json top = json::object();
    // Two alternatives with the same text keep the likelier (they come most likely first).
    for (const model::TokenAlternative& alt : e.scored->top) {
      const std::string s = TokenString(alt.token);
      if (!top.contains(s)) top[s] = alt.logprob;
    }
    top_logprobs.push_back(std::move(top));
  }
  return json{{"tokens", std::move(tokens)},
              {"token_logprobs", std::move(token_logprobs)},
              {"top_logprobs", std::move(top_logprobs)},
              {"text_offset", std::move(text_offset)}};
}

}  // namespace swarm::gateway
