#include "gateway/openai_protocol.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace swarm::gateway {
namespace {

using nlohmann::json;

std::string TypeName(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a decimal";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    default:
      return "an unsupported value";
  }
}

ApiError InvalidType(const std::string& param, const std::string& expected, const json& got) {
  return {400,
          absl::StrCat("Invalid type for '", param, "': expected ", expected, ", but got ",
                       TypeName(got), " instead."),
          "invalid_request_error", param, "invalid_type"};
}

ApiError InvalidValue(const std::string& param, const std::string& message,
                      const std::string& code = "invalid_value") {
  return {400, absl::StrCat("Invalid '", param, "': ", message), "invalid_request_error", param,
          code};
}

ApiError Unsupported(const std::string& param, const std::string& what) {
  return {400, absl::StrCat(what, " is not supported by this server."), "invalid_request_error",
          param, "unsupported_parameter"};
}

std::string Num(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return absl::StrCat(static_cast<int64_t>(v));
  return absl::StrCat(v);
}

// A field that is absent or null counts as not given, as in OpenAI's API.
const json* Field(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<ApiError> GetNumber(const json& obj, const char* name, double lo, double hi,
                                  std::optional<double>* out) {
  const json* v = Field(obj, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) return InvalidType(name, "a number", *v);
  double d = v->get<double>();
  if (!std::isfinite(d) || d < lo) {
    return InvalidValue(name,
                        absl::StrCat("number below minimum value. Expected a value >= ", Num(lo),
                                     ", but got ", Num(d), " instead."),
                        "decimal_below_min_value");
  }
  if (d > hi) {
    return InvalidValue(name,
                        absl::StrCat("number above maximum value. Expected a value <= ", Num(hi),
                                     ", but got ", Num(d), " instead."),
                        "decimal_above_max_value");
  }
  *out = d;
  return std::nullopt;
}

std::optional<ApiError> GetInteger(const json& obj, const char* name, int64_t lo, int64_t hi,
                                   std::optional<int64_t>* out) {
  const json* v = Field(obj, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number_integer()) return InvalidType(name, "an integer", *v);
  // Unsigned values beyond int64 are out of every range we accept.
  if (v->is_number_unsigned() &&
      v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return InvalidValue(name,
                        absl::StrCat("integer above maximum value. Expected a value <= ", hi, "."),
                        "integer_above_max_value");
  }
  int64_t i = v->get<int64_t>();
  if (i < lo) {
    return InvalidValue(name,
                        absl::StrCat("integer below minimum value. Expected a value >= ", lo,
                                     ", but got ", i, " instead."),
                        "integer_below_min_value");
  }
  if (i > hi) {
    return InvalidValue(name,
                        absl::StrCat("integer above maximum value. Expected a value <= ", hi,
                                     ", but got ", i, " instead."),
                        "integer_above_max_value");
  }
  *out = i;
  return std::nullopt;
}

std::optional<ApiError> GetBool(const json& obj, const char* name, bool* out) {
  const json* v = Field(obj, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) return InvalidType(name, "a boolean", *v);
  *out = v->get<bool>();
  return std::nullopt;
}

std::optional<ApiError> ParsePrompt(const json& body, const RequestLimits& limits,
                                    CompletionParams* out) {
  const json* p = Field(body, "prompt");
  if (p == nullptr) {
    return ApiError{400, "Missing required parameter: 'prompt'.", "invalid_request_error", "prompt",
                    "missing_required_parameter"};
  }
  auto parse_tokens = [&](const json& arr) -> std::optional<ApiError> {
    if (arr.empty()) return InvalidValue("prompt", "a token array must not be empty.");
    out->prompt_tokens.reserve(arr.size());
    for (const json& t : arr) {
      if (!t.is_number_integer()) {
        return InvalidType("prompt", "a string or an array of integer token ids", t);
      }
      const bool in_vocab = t.is_number_unsigned()
                                ? t.get<uint64_t>() < static_cast<uint64_t>(limits.n_vocab)
                                : t.get<int64_t>() >= 0 && t.get<int64_t>() < limits.n_vocab;
      if (!in_vocab) {
        return InvalidValue("prompt",
                            absl::StrCat("token id ", t.dump(), " is outside the vocabulary (0..",
                                         limits.n_vocab - 1, ")."));
      }
      const auto id = static_cast<int32_t>(t.get<int64_t>());
      out->prompt_tokens.push_back(id);
    }
    return std::nullopt;
  };
  if (p->is_string()) {
    out->prompt_text = p->get<std::string>();
    return std::nullopt;
  }
  if (!p->is_array()) return InvalidType("prompt", "a string or an array", *p);
  if (p->empty()) return InvalidValue("prompt", "the prompt array must not be empty.");
  const json& first = p->front();
  if (first.is_number_integer()) return parse_tokens(*p);
  if (p->size() > 1) {
    return Unsupported("prompt", "More than one prompt per request");
  }
  if (first.is_string()) {
    out->prompt_text = first.get<std::string>();
    return std::nullopt;
  }
  if (first.is_array()) return parse_tokens(first);
  return InvalidType("prompt", "a string or an array of strings or token ids", first);
}

std::optional<ApiError> ParseMessages(const json& body, CompletionParams* out) {
  const json* m = Field(body, "messages");
  if (m == nullptr) {
    return ApiError{400, "Missing required parameter: 'messages'.", "invalid_request_error",
                    "messages", "missing_required_parameter"};
  }
  if (!m->is_array()) return InvalidType("messages", "an array", *m);
  if (m->empty()) {
    return InvalidValue("messages", "empty array. Expected an array with minimum length 1.",
                        "empty_array");
  }
  for (size_t i = 0; i < m->size(); ++i) {
    const json& msg = (*m)[i];
    const std::string at = absl::StrCat("messages[", i, "]");
    if (!msg.is_object()) return InvalidType(at, "an object", msg);
    const json* role = Field(msg, "role");
    if (role == nullptr) {
      return ApiError{400, absl::StrCat("Missing required parameter: '", at, ".role'."),
                      "invalid_request_error", at + ".role", "missing_required_parameter"};
    }
    if (!role->is_string()) return InvalidType(at + ".role", "a string", *role);
    ChatMessage cm;
    cm.role = role->get<std::string>();
    if (cm.role != "system" && cm.role != "developer" && cm.role != "user" &&
        cm.role != "assistant") {
      if (cm.role == "tool" || cm.role == "function") {
        return Unsupported(at + ".role", absl::StrCat("The '", cm.role, "' role"));
      }
      return InvalidValue(at + ".role",
                          absl::StrCat("'", cm.role,
                                       "' is not one of 'system', 'developer', 'user', "
                                       "'assistant'."));
    }
    if (const json* calls = Field(msg, "tool_calls"); calls != nullptr && !calls->empty()) {
      return Unsupported(at + ".tool_calls", "Tool calling");
    }
    const json* content = Field(msg, "content");
    if (content == nullptr) {
      if (cm.role != "assistant") {
        return ApiError{400, absl::StrCat("Missing required parameter: '", at, ".content'."),
                        "invalid_request_error", at + ".content", "missing_required_parameter"};
      }
    } else if (content->is_string()) {
      cm.content = content->get<std::string>();
    } else if (content->is_array()) {
      for (size_t j = 0; j < content->size(); ++j) {
        const json& part = (*content)[j];
        const std::string pat = absl::StrCat(at, ".content[", j, "]");
        if (!part.is_object()) return InvalidType(pat, "an object", part);
        const json* type = Field(part, "type");
        if (type == nullptr || !type->is_string()) {
          return InvalidValue(pat + ".type", "expected a content part type string.");
        }
        if (type->get<std::string>() != "text") {
          return Unsupported(pat + ".type",
                             absl::StrCat("Content of type '", type->get<std::string>(), "'"));
        }
        const json* text = Field(part, "text");
        if (text == nullptr || !text->is_string()) {
          return InvalidType(pat + ".text", "a string", text ? *text : json());
        }
        cm.content += text->get<std::string>();
      }
    } else {
      return InvalidType(at + ".content", "a string or an array of content parts", *content);
    }
    if (const json* name = Field(msg, "name"); name != nullptr && !name->is_string()) {
      return InvalidType(at + ".name", "a string", *name);
    }
    out->messages.push_back(std::move(cm));
  }
  return std::nullopt;
}

std::optional<ApiError> ParseStop(const json& body, const RequestLimits& limits,
                                  CompletionParams* out) {
  const json* s = Field(body, "stop");
  if (s == nullptr) return std::nullopt;
  if (s->is_string()) {
    if (!s->get<std::string>().empty()) out->stop.push_back(s->get<std::string>());
    return std::nullopt;
  }
  if (!s->is_array()) return InvalidType("stop", "a string or an array of strings", *s);
  if (s->size() > limits.max_stop_sequences) {
    return InvalidValue("stop",
                        absl::StrCat("array too long. Expected an array with maximum length ",
                                     limits.max_stop_sequences, ", but got an array with length ",
                                     s->size(), " instead."),
                        "array_above_max_length");
  }
  for (const json& e : *s) {
    if (!e.is_string()) return InvalidType("stop", "an array of strings", e);
    if (!e.get<std::string>().empty()) out->stop.push_back(e.get<std::string>());
  }
  return std::nullopt;
}

// Completions: `logprobs` an integer 0..5 (OpenAI's bound). Chat: `logprobs` a boolean, and
// `top_logprobs` 0..20, which needs `logprobs: true`.
std::optional<ApiError> ParseLogprobs(const json& j, bool chat, CompletionParams* out) {
  std::optional<int64_t> k;
  if (!chat) {
    if (auto e = GetInteger(j, "logprobs", 0, 5, &k)) return e;
    if (k) out->logprobs = static_cast<int32_t>(*k);
    return std::nullopt;
  }
  bool wanted = false;
  if (auto e = GetBool(j, "logprobs", &wanted)) return e;
  if (auto e = GetInteger(j, "top_logprobs", 0, 20, &k)) return e;
  if (k && !wanted) {
    return InvalidValue("top_logprobs",
                        "'logprobs' must be set to true when 'top_logprobs' is used.");
  }
  if (wanted) out->logprobs = k ? static_cast<int32_t>(*k) : 0;
  return std::nullopt;
}

// logit_bias: {"token id": bias in [-100, 100]}.
std::optional<ApiError> ParseLogitBias(const json& body, const RequestLimits& limits,
                                       CompletionParams* out) {
  const json* bias = Field(body, "logit_bias");
  if (bias == nullptr) return std::nullopt;
  if (!bias->is_object()) return InvalidType("logit_bias", "an object", *bias);
  if (bias->size() > 1024) {
    return InvalidValue("logit_bias", "at most 1024 tokens may be biased.");
  }
  for (const auto& [key, value] : bias->items()) {
    int64_t id = -1;
    if (!key.empty() && key.size() <= 10 &&
        std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      id = std::stoll(key);
    }
    if (id < 0 || id >= limits.n_vocab) {
      return InvalidValue("logit_bias",
                          absl::StrCat("'", key, "' is not a token id of this model (0..",
                                       limits.n_vocab - 1, ")."));
    }
    if (!value.is_number()) return InvalidType("logit_bias", "a number", value);
    const double b = value.get<double>();
    if (!std::isfinite(b) || b < -100 || b > 100) {
      return InvalidValue("logit_bias",
                          absl::StrCat("the bias of token ", key, " is ", Num(b),
                                       "; biases must be in [-100, 100]."),
                          b < 0 ? "decimal_below_min_value" : "decimal_above_max_value");
    }
    out->sampling.logit_bias.emplace_back(static_cast<int32_t>(id), static_cast<float>(b));
  }
  return std::nullopt;
}

// response_format: {"type": "text" | "json_object" | "json_schema", "json_schema": {...}}.
std::optional<ApiError> ParseResponseFormat(const json& body, CompletionParams* out) {
  const json* rf = Field(body, "response_format");
  if (rf == nullptr) return std::nullopt;
  if (!rf->is_object()) return InvalidType("response_format", "an object", *rf);
  const json* type = Field(*rf, "type");
  if (type == nullptr) {
    return ApiError{400, "Missing required parameter: 'response_format.type'.",
                    "invalid_request_error", "response_format.type", "missing_required_parameter"};
  }
  if (!type->is_string()) return InvalidType("response_format.type", "a string", *type);
  const std::string t = type->get<std::string>();
  if (t == "text") return std::nullopt;
  if (t == "json_object") {
    out->json_grammar = JsonGrammar::AnyObject();
    return std::nullopt;
  }
  if (t != "json_schema") {
    return InvalidValue("response_format.type",
                        absl::StrCat("'", t,
                                     "' is not one of 'text', 'json_object', "
                                     "'json_schema'."));
  }
  const json* js = Field(*rf, "json_schema");
  if (js == nullptr) {
    return ApiError{400, "Missing required parameter: 'response_format.json_schema'.",
                    "invalid_request_error", "response_format.json_schema",
                    "missing_required_parameter"};
  }
  if (!js->is_object()) return InvalidType("response_format.json_schema", "an object", *js);
  const json* name = Field(*js, "name");
  if (name == nullptr) {
    return ApiError{400, "Missing required parameter: 'response_format.json_schema.name'.",
                    "invalid_request_error", "response_format.json_schema.name",
                    "missing_required_parameter"};
  }
  if (!name->is_string()) {
    return InvalidType("response_format.json_schema.name", "a string", *name);
  }
  const std::string n = name->get<std::string>();
  if (n.empty() || n.size() > 64 || !std::all_of(n.begin(), n.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
      })) {
    return InvalidValue("response_format.json_schema.name",
                        "must be 1-64 characters of a-z, A-Z, 0-9, underscores and dashes.");
  }
  bool strict = false;
  if (auto e = GetBool(*js, "strict", &strict)) {
    e->param = "response_format.json_schema.strict";
    return e;
  }
  if (const json* d = Field(*js, "description"); d != nullptr && !d->is_string()) {
    return InvalidType("response_format.json_schema.description", "a string", *d);
  }
  // No schema: any JSON value would do; an object is what clients expect.
  const json* schema = Field(*js, "schema");
  if (schema == nullptr) {
    out->json_grammar = JsonGrammar::AnyObject();
    return std::nullopt;
  }
  absl::StatusOr<std::shared_ptr<const JsonGrammar>> grammar = JsonGrammar::FromSchema(*schema);
  if (!grammar.ok()) {
    return InvalidValue("response_format.json_schema.schema",
                        std::string(grammar.status().message()), "invalid_json_schema");
  }
  out->json_grammar = std::move(*grammar);
  return std::nullopt;
}

}  // namespace

nlohmann::json ErrorJson(const ApiError& error) {
  json e = {{"message", error.message},
            {"type", error.type},
            {"param", error.param.empty() ? json() : json(error.param)},
            {"code", error.code.empty() ? json() : json(error.code)}};
  return json{{"error", std::move(e)}};
}

std::string ErrorBody(const ApiError& error) { return Dump(ErrorJson(error)); }

std::string Dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<ApiError> ParseCompletionRequest(std::string_view body, bool chat,
                                               const RequestLimits& limits, CompletionParams* out) {
  *out = CompletionParams{};
  out->chat = chat;
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return ApiError{400,
                    "We could not parse the JSON body of your request. The body must be a "
                    "valid JSON object.",
                    "invalid_request_error", "", ""};
  }
  if (!j.is_object()) return InvalidType("body", "a JSON object", j);

  if (const json* model = Field(j, "model")) {
    if (!model->is_string()) return InvalidType("model", "a string", *model);
    out->model = model->get<std::string>();
  }
  if (auto e = chat ? ParseMessages(j, out) : ParsePrompt(j, limits, out)) return e;

  std::optional<int64_t> max_tokens;
  if (auto e = GetInteger(j, "max_tokens", 0, limits.max_tokens_limit, &max_tokens)) return e;
  if (chat && !max_tokens) {
    if (auto e = GetInteger(j, "max_completion_tokens", 0, limits.max_tokens_limit, &max_tokens)) {
      return e;
    }
  }
  if (max_tokens) out->max_tokens = static_cast<int32_t>(*max_tokens);

  std::optional<double> d;
  if (auto e = GetNumber(j, "temperature", 0, 2, &d)) return e;
  if (d) out->sampling.temperature = static_cast<float>(*d);
  d.reset();
  if (auto e = GetNumber(j, "top_p", 0, 1, &d)) return e;
  if (d) {
    // Nucleus of mass 0 keeps only the most likely token: greedy.
    if (*d == 0) {
      out->sampling.temperature = 0;
    } else {
      out->sampling.top_p = static_cast<float>(*d);
    }
  }
  d.reset();
  if (auto e = GetNumber(j, "min_p", 0, 1, &d)) return e;
  if (d) out->sampling.min_p = static_cast<float>(*d);
  d.reset();
  if (auto e = GetNumber(j, "repeat_penalty", 0.01, 10, &d)) return e;
  if (d) out->sampling.repeat_penalty = static_cast<float>(*d);
  d.reset();
  if (auto e = GetNumber(j, "presence_penalty", -2, 2, &d)) return e;
  if (d) out->sampling.presence_penalty = static_cast<float>(*d);
  d.reset();
  if (auto e = GetNumber(j, "frequency_penalty", -2, 2, &d)) return e;
  if (d) out->sampling.frequency_penalty = static_cast<float>(*d);
  std::optional<int64_t> i;
  if (auto e = GetInteger(j, "top_k", 0, std::numeric_limits<int32_t>::max(), &i)) return e;
  if (i) out->sampling.top_k = static_cast<int32_t>(*i);
  i.reset();
  if (auto e = GetInteger(j, "seed", std::numeric_limits<int64_t>::min(),
                          std::numeric_limits<int64_t>::max(), &i)) {
    return e;
  }
  if (i) {
    out->sampling.seed = static_cast<uint64_t>(*i);
    out->seed_given = true;
  }
  i.reset();
  if (auto e = GetInteger(j, "n", 1, limits.max_n, &i)) return e;
  if (i) out->n = static_cast<int32_t>(*i);
  i.reset();
  if (auto e = GetInteger(j, "best_of", std::numeric_limits<int64_t>::min(),
                          std::numeric_limits<int64_t>::max(), &i)) {
    return e;
  }
  if (i && *i != 1) return Unsupported("best_of", absl::StrCat("best_of=", *i, " (only 1)"));

  if (auto e = ParseStop(j, limits, out)) return e;
  if (auto e = GetBool(j, "stream", &out->stream)) return e;
  if (const json* so = Field(j, "stream_options")) {
    if (!so->is_object()) return InvalidType("stream_options", "an object", *so);
    if (auto e = GetBool(*so, "include_usage", &out->include_usage)) {
      e->param = "stream_options.include_usage";
      return e;
    }
  }
  if (!chat) {
    if (auto e = GetBool(j, "echo", &out->echo)) return e;
    if (const json* suffix = Field(j, "suffix")) {
      if (!suffix->is_string()) return InvalidType("suffix", "a string", *suffix);
      if (!suffix->get<std::string>().empty()) return Unsupported("suffix", "'suffix'");
    }
  }
  if (auto e = ParseLogprobs(j, chat, out)) return e;
  if (auto e = ParseLogitBias(j, limits, out)) return e;
  if (auto e = ParseResponseFormat(j, out)) return e;
  if (const json* user = Field(j, "user"); user != nullptr && !user->is_string()) {
    return InvalidType("user", "a string", *user);
  }
  if (chat) {
    if (const json* tools = Field(j, "tools")) {
      if (!tools->is_array()) return InvalidType("tools", "an array", *tools);
      if (!tools->empty()) return Unsupported("tools", "Tool calling");
    }
  }
  return std::nullopt;
}

nlohmann::json UsageJson(const Usage& usage) {
  return json{{"prompt_tokens", usage.prompt_tokens},
              {"completion_tokens", usage.completion_tokens},
              {"total_tokens", usage.prompt_tokens + usage.completion_tokens}};
}

namespace {

json FinishReason(const std::string& reason) { return reason.empty() ? json() : json(reason); }

}  // namespace

nlohmann::json CompletionJson(const ResponseMeta& meta, const std::string& text,
                              const std::string& finish_reason, const Usage& usage) {
  return json{{"id", meta.id},
              {"object", "text_completion"},
              {"created", meta.created},
              {"model", meta.model},
              {"choices", json::array({json{{"text", text},
                                            {"index", 0},
                                            {"logprobs", nullptr},
                                            {"finish_reason", FinishReason(finish_reason)}}})},
              {"usage", UsageJson(usage)}};
}

nlohmann::json ChatCompletionJson(const ResponseMeta& meta, const std::string& content,
                                  const std::string& finish_reason, const Usage& usage) {
  json message = {{"role", "assistant"}, {"content", content}};
  return json{{"id", meta.id},
              {"object", "chat.completion"},
              {"created", meta.created},
              {"model", meta.model},
              {"choices", json::array({json{{"index", 0},
                                            {"message", std::move(message)},
                                            {"logprobs", nullptr},
                                            {"finish_reason", FinishReason(finish_reason)}}})},
              {"usage", UsageJson(usage)}};
}

nlohmann::json CompletionChunkJson(const ResponseMeta& meta, const std::string& text,
                                   const std::string& finish_reason) {
  return json{{"id", meta.id},
              {"object", "text_completion"},
              {"created", meta.created},
              {"model", meta.model},
              {"choices", json::array({json{{"text", text},
                                            {"index", 0},
                                            {"logprobs", nullptr},
                                            {"finish_reason", FinishReason(finish_reason)}}})}};
}

nlohmann::json ChatChunkJson(const ResponseMeta& meta, bool with_role,
                             const std::optional<std::string>& content,
                             const std::string& finish_reason) {
  json delta = json::object();
  if (with_role) delta["role"] = "assistant";
  if (content) delta["content"] = *content;
  return json{{"id", meta.id},
              {"object", "chat.completion.chunk"},
              {"created", meta.created},
              {"model", meta.model},
              {"choices", json::array({json{{"index", 0},
                                            {"delta", std::move(delta)},
                                            {"logprobs", nullptr},
                                            {"finish_reason", FinishReason(finish_reason)}}})}};
}

nlohmann::json UsageChunkJson(const ResponseMeta& meta, bool chat, const Usage& usage) {
  return json{{"id", meta.id},
              {"object", chat ? "chat.completion.chunk" : "text_completion"},
              {"created", meta.created},
              {"model", meta.model},
              {"choices", json::array()},
              {"usage", UsageJson(usage)}};
}

std::string SseEvent(const nlohmann::json& data) { return "data: " + Dump(data) + "\n\n"; }

}  // namespace swarm::gateway
