// The OpenAI request fields beyond the prompt (n, presence/frequency penalties, logit_bias, stop
// lists, seed, response_format json_object / json_schema) on both engines: the in-process one
// behind an ApiServer in this process, and `swarm api` in front of three real `swarm serve` peers
// (LocalSwarm). Every request goes to both; each answer is checked for what the field promises,
// and the two must be identical (f32 activations, same kernels, same seeds).
#include <set>
#include <string>
#include <vector>

#include "gateway/api_server.h"
#include "gateway/local_engine.h"
#include "json_schema_check.h"
#include "local_swarm.h"

namespace swarm::gateway::swarm_test {
namespace {

const json kPersonSchema = json::parse(R"({
  "type": "object",
  "properties": {
    "name": {"type": "string", "maxLength": 12},
    "age": {"type": "integer"},
    "address": {"type": "object",
                "properties": {"city": {"type": "string", "maxLength": 10},
                               "zip": {"type": "string", "maxLength": 5}},
                "required": ["city", "zip"], "additionalProperties": false}
  },
  "required": ["name", "age", "address"],
  "additionalProperties": false
})");
const json kEnumSchema = json::parse(R"({
  "type": "object",
  "properties": {"color": {"enum": ["red", "green", "blue"]}, "ok": {"type": "boolean"}},
  "required": ["color", "ok"], "additionalProperties": false
})");
const json kIntegersSchema = json::parse(R"({
  "type": "object",
  "properties": {"values": {"type": "array", "items": {"type": "integer"}, "minItems": 1,
                            "maxItems": 6}},
  "required": ["values"], "additionalProperties": false
})");

// One choice of a response, whole or reassembled from a stream.
struct Choice {
  std::string text;
  std::string finish_reason;
};

std::vector<Choice> Choices(const Response& r, bool chat, bool stream) {
  std::vector<Choice> out;
  auto at = [&](const json& index) -> Choice& {
    EXPECT_TRUE(index.is_number_integer());
    const size_t i = index.get<size_t>();
    if (out.size() <= i) out.resize(i + 1);
    return out[i];
  };
  if (!stream) {
    const json j = json::parse(r.body(), nullptr, false);
    EXPECT_TRUE(j.is_object()) << r.body();
    EXPECT_TRUE(j["system_fingerprint"].is_string()) << r.body();
    for (const json& c : j.value("choices", json::array())) {
      Choice& choice = at(c["index"]);
      choice.text =
          chat ? c["message"]["content"].get<std::string>() : c["text"].get<std::string>();
      choice.finish_reason = c["finish_reason"];
    }
    return out;
  }
  for (const std::string& event : SseData(r.body())) {
    if (event == "[DONE]") continue;
    const json chunk = json::parse(event, nullptr, false);
    EXPECT_TRUE(chunk.is_object() && chunk.contains("choices")) << event;  // not an error event
    for (const json& c : chunk.value("choices", json::array())) {
      Choice& choice = at(c["index"]);
      const json& piece = chat ? c["delta"].value("content", json()) : c["text"];
      if (piece.is_string()) choice.text += piece.get<std::string>();
      if (!c["finish_reason"].is_null()) choice.finish_reason = c["finish_reason"];
    }
  }
  return out;
}

class OpenAiFieldsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    LocalEngineOptions options;
    options.backend.name = "reference";  // as LocalSwarm's peers and gateway
    auto engine = LocalEngine::Load(kModel, options);
    if (!engine.ok()) {
      start_status_ = engine.status();
      return;
    }
    engine_ = engine->release();
    ApiServerOptions server_options;
    server_options.http.io_threads = 2;
    auto server = ApiServer::Start(server_options, *engine_);
    if (!server.ok()) {
      start_status_ = server.status();
      return;
    }
    server_ = server->release();
    swarm_ = new LocalSwarm();
    start_status_ = swarm_->Start();
  }
  static void TearDownTestSuite() {
    delete swarm_;
    delete server_;
    delete engine_;
  }
  void SetUp() override { ASSERT_TRUE(start_status_.ok()) << start_status_; }
  void TearDown() override {
    if (HasFailure()) std::cerr << swarm_->Logs();
  }

  // Sends `body` to both gateways; the in-process answer's choices (after checking that the
  // swarm's are the same, status and all).
  std::vector<Choice> Both(const std::string& target, const json& body, int expect_status = 200) {
    Client local(server_->port());
    Client through(swarm_->api_port());
    const Response a = local.Post(target, body);
    const Response b = through.Post(target, body);
    EXPECT_EQ(a.result_int(), expect_status) << a.body();
    EXPECT_EQ(b.result_int(), expect_status) << b.body();
    if (expect_status != 200) {
      last_error_ = json::parse(b.body(), nullptr, false);
      const json ea = json::parse(a.body(), nullptr, false);
      EXPECT_EQ(ea, last_error_);
      EXPECT_EQ(last_error_["error"]["type"], "invalid_request_error") << b.body();
      EXPECT_TRUE(last_error_["error"]["message"].is_string()) << b.body();
      EXPECT_TRUE(last_error_["error"].contains("code")) << b.body();
      return {};
    }
    const bool chat = target == "/v1/chat/completions";
    const bool stream = body.value("stream", false);
    const std::vector<Choice> ca = Choices(a, chat, stream);
    const std::vector<Choice> cb = Choices(b, chat, stream);
    EXPECT_EQ(ca.size(), cb.size());
    for (size_t i = 0; i < ca.size() && i < cb.size(); ++i) {
      EXPECT_EQ(ca[i].text, cb[i].text) << "choice " << i << " in-process vs through the swarm";
      EXPECT_EQ(ca[i].finish_reason, cb[i].finish_reason) << "choice " << i;
    }
    return ca;
  }

  static const model::Tokenizer& tokenizer() { return engine_->tokenizer(); }
  // The token whose text is `text`, -1 if none.
  static int32_t TokenWithText(const std::string& text) {
    for (int32_t id = 0; id < tokenizer().n_vocab(); ++id) {
      if (!tokenizer().IsSpecial(id) && tokenizer().TokenBytes(id) == text) return id;
    }
    return -1;
  }

  static LocalEngine* engine_;
  static ApiServer* server_;
  static LocalSwarm* swarm_;
  static absl::Status start_status_;
  json last_error_;
};

LocalEngine* OpenAiFieldsTest::engine_ = nullptr;
ApiServer* OpenAiFieldsTest::server_ = nullptr;
LocalSwarm* OpenAiFieldsTest::swarm_ = nullptr;
absl::Status OpenAiFieldsTest::start_status_;

std::string FirstText(const std::vector<Choice>& choices) {
  return choices.empty() ? "<no choice>" : choices[0].text;
}

const json kChatMessages = {{{"role", "user"}, {"content", "Tell me about a cat."}}};

TEST_F(OpenAiFieldsTest, NChoicesWithIndicesSeededAndStreamed) {
  const json body = {{"prompt", "Once upon a time"},
                     {"max_tokens", 12},
                     {"n", 3},
                     {"temperature", 1.0},
                     {"seed", 42}};
  const std::vector<Choice> first = Both("/v1/completions", body);
  ASSERT_EQ(first.size(), 3u);
  std::set<std::string> distinct;
  for (const Choice& c : first) {
    EXPECT_FALSE(c.text.empty());
    distinct.insert(c.text);
  }
  EXPECT_GT(distinct.size(), 1u) << "the choices are samples of their own";
  // Same seed, same request: the same texts; streamed: the same texts too.
  const std::vector<Choice> again = Both("/v1/completions", body);
  ASSERT_EQ(again.size(), 3u);
  json streamed_body = body;
  streamed_body["stream"] = true;
  const std::vector<Choice> streamed = Both("/v1/completions", streamed_body);
  ASSERT_EQ(streamed.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(again[i].text, first[i].text);
    EXPECT_EQ(streamed[i].text, first[i].text);
    EXPECT_EQ(streamed[i].finish_reason, first[i].finish_reason);
  }
  // Another seed, other texts.
  json other = body;
  other["seed"] = 43;
  EXPECT_NE(FirstText(Both("/v1/completions", other)), first[0].text);

  // Chat, streamed, two choices: each starts with its role chunk and ends with its reason.
  const std::vector<Choice> chat = Both(
      "/v1/chat/completions",
      {{"messages", kChatMessages}, {"max_tokens", 8}, {"n", 2}, {"seed", 7}, {"stream", true}});
  ASSERT_EQ(chat.size(), 2u);
  for (const Choice& c : chat) EXPECT_FALSE(c.finish_reason.empty());

  Both("/v1/completions", {{"prompt", "a"}, {"n", 9}}, 400);
  EXPECT_EQ(last_error_["error"]["param"], "n");
  EXPECT_EQ(last_error_["error"]["code"], "integer_above_max_value");
}

TEST_F(OpenAiFieldsTest, PenaltiesChangeGreedyTextAgainstRepetition) {
  const json greedy = {{"prompt", "Once upon a time"}, {"max_tokens", 40}, {"temperature", 0}};
  const std::string plain = FirstText(Both("/v1/completions", greedy));
  auto repeats = [&](const std::string& text) {  // tokens that occurred before
    std::set<int32_t> seen;
    int n = 0;
    for (int32_t t : tokenizer().Encode(text, false, false)) n += !seen.insert(t).second;
    return n;
  };
  for (const char* field : {"frequency_penalty", "presence_penalty"}) {
    SCOPED_TRACE(field);
    json body = greedy;
    body[field] = 2.0;
    const std::string penalised = FirstText(Both("/v1/completions", body));
    EXPECT_NE(penalised, plain);
    EXPECT_LT(repeats(penalised), repeats(plain)) << penalised << "\nvs\n" << plain;
    body[field] = -2.5;
    Both("/v1/completions", body, 400);
    EXPECT_EQ(last_error_["error"]["param"], field);
  }
}

TEST_F(OpenAiFieldsTest, LogitBiasBansAndForces) {
  const json greedy = {{"prompt", "Once upon a time"}, {"max_tokens", 10}, {"temperature", 0}};
  const std::string plain = FirstText(Both("/v1/completions", greedy));
  // Ban the token the greedy text starts with: the text starts otherwise.
  json one = greedy;
  one["max_tokens"] = 1;
  const std::string first = FirstText(Both("/v1/completions", one));
  json ban = greedy;
  ban["logit_bias"] = json::object();
  for (int32_t id = 0; id < tokenizer().n_vocab(); ++id) {  // its piece and its byte token
    if (!tokenizer().IsSpecial(id) && tokenizer().TokenBytes(id) == first) {
      ban["logit_bias"][std::to_string(id)] = -100;
    }
  }
  ASSERT_FALSE(ban["logit_bias"].empty()) << first;
  const std::string banned = FirstText(Both("/v1/completions", ban));
  EXPECT_NE(banned, plain);
  EXPECT_NE(banned.substr(0, first.size()), first);
  // Force one token: every token is it, even when sampling.
  const int32_t the = TokenWithText(" the");
  ASSERT_GE(the, 0);
  json force = greedy;
  force["temperature"] = 1.0;
  force["seed"] = 3;
  force["logit_bias"] = {{std::to_string(the), 100}};
  EXPECT_EQ(FirstText(Both("/v1/completions", force)), " the the the the the the the the the the");

  Both("/v1/completions", {{"prompt", "a"}, {"logit_bias", {{"99999", 1}}}}, 400);
  EXPECT_EQ(last_error_["error"]["param"], "logit_bias");
  Both("/v1/completions", {{"prompt", "a"}, {"logit_bias", {{"5", -101}}}}, 400);
  EXPECT_EQ(last_error_["error"]["code"], "decimal_below_min_value");
}

TEST_F(OpenAiFieldsTest, StopListCutsBeforeTheFirstStopWholeAndStreamed) {
  const json greedy = {{"prompt", ""}, {"max_tokens", 60}, {"temperature", 0}};
  const std::string plain = FirstText(Both("/v1/completions", greedy));
  // Two stops from the middle of the text (each spanning token boundaries): the earlier one cuts.
  ASSERT_GT(plain.size(), 60u);
  const std::string late = plain.substr(40, 6);
  const std::string early = plain.substr(20, 5);
  const size_t cut = std::min(plain.find(late), plain.find(early));
  for (bool stream : {false, true}) {
    json body = greedy;
    body["stop"] = {late, "\x01never", early};
    body["stream"] = stream;
    const std::vector<Choice> c = Both("/v1/completions", body);
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].text, plain.substr(0, cut));
    EXPECT_EQ(c[0].finish_reason, "stop");
  }
  Both("/v1/completions", {{"prompt", "a"}, {"stop", {"a", "b", "c", "d", "e"}}}, 400);
  EXPECT_EQ(last_error_["error"]["param"], "stop");
}

TEST_F(OpenAiFieldsTest, JsonSchemaOutputParsesAndValidates) {
  for (const json* schema : {&kPersonSchema, &kEnumSchema, &kIntegersSchema}) {
    for (bool stream : {false, true}) {
      const json body = {
          {"messages", kChatMessages},
          {"max_tokens", 120},
          {"n", 2},
          {"temperature", 1.0},
          {"seed", 11},
          {"stream", stream},
          {"response_format",
           {{"type", "json_schema"},
            {"json_schema", {{"name", "answer"}, {"schema", *schema}, {"strict", true}}}}}};
      const std::vector<Choice> choices = Both("/v1/chat/completions", body);
      ASSERT_EQ(choices.size(), 2u);
      for (const Choice& c : choices) {
        SCOPED_TRACE(c.text);
        EXPECT_EQ(c.finish_reason, "stop");
        const json v = json::parse(c.text, nullptr, false);
        ASSERT_FALSE(v.is_discarded());
        EXPECT_EQ(test_schema::Check(v, *schema), "");
      }
    }
  }
  // json_object, on /v1/completions too.
  const std::vector<Choice> object =
      Both("/v1/completions", {{"prompt", "Once"},
                               {"max_tokens", 40},
                               {"temperature", 1.0},
                               {"seed", 5},
                               {"response_format", {{"type", "json_object"}}}});
  ASSERT_EQ(object.size(), 1u);
  EXPECT_TRUE(json::parse(object[0].text, nullptr, false).is_object()) << object[0].text;
  // Too few tokens for the shortest valid value: cut at max_tokens, "length".
  const std::vector<Choice> cut = Both(
      "/v1/chat/completions",
      {{"messages", kChatMessages},
       {"max_tokens", 5},
       {"seed", 1},
       {"response_format",
        {{"type", "json_schema"}, {"json_schema", {{"name", "p"}, {"schema", kPersonSchema}}}}}});
  ASSERT_EQ(cut.size(), 1u);
  EXPECT_EQ(cut[0].finish_reason, "length");

  json unsupported = kIntegersSchema;
  unsupported["properties"]["values"]["uniqueItems"] = true;
  Both("/v1/chat/completions",
       {{"messages", kChatMessages},
        {"response_format",
         {{"type", "json_schema"}, {"json_schema", {{"name", "p"}, {"schema", unsupported}}}}}},
       400);
  EXPECT_EQ(last_error_["error"]["param"], "response_format.json_schema.schema");
  EXPECT_NE(last_error_["error"]["message"].get<std::string>().find("'uniqueItems'"),
            std::string::npos);
}

}  // namespace
}  // namespace swarm::gateway::swarm_test
