// The OpenAI wire format without a server (request validation, response and chunk shapes, error
// bodies) and the Prometheus registry's text format.
#include <string>

#include "gateway/metrics.h"
#include "gateway/openai_protocol.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace swarm::gateway {
namespace {

using nlohmann::json;

RequestLimits Limits() {
  RequestLimits l;
  l.n_vocab = 1000;
  l.max_tokens_limit = 512;
  return l;
}

CompletionParams Parse(const std::string& body, bool chat) {
  CompletionParams p;
  auto error = ParseCompletionRequest(body, chat, Limits(), &p);
  EXPECT_FALSE(error.has_value()) << (error ? error->message : "");
  return p;
}

ApiError ParseError(const std::string& body, bool chat) {
  CompletionParams p;
  auto error = ParseCompletionRequest(body, chat, Limits(), &p);
  EXPECT_TRUE(error.has_value()) << body;
  return error.value_or(ApiError{});
}

TEST(OpenAiProtocol, ParsesACompletionRequest) {
  CompletionParams p = Parse(R"({"model": "m", "prompt": "Hello", "max_tokens": 7,
      "temperature": 0.5, "top_p": 0.9, "seed": -3, "stop": ["a", "", "b"], "stream": true,
      "stream_options": {"include_usage": true}, "echo": true, "top_k": 5, "min_p": 0.1,
      "repeat_penalty": 1.1, "n": 1, "best_of": 1, "user": "u", "logit_bias": {},
      "presence_penalty": 0.5, "unknown_field": [1, 2]})",
                             false);
  EXPECT_EQ(p.model, "m");
  EXPECT_EQ(p.prompt_text, "Hello");
  EXPECT_EQ(p.max_tokens, 7);
  EXPECT_FLOAT_EQ(p.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(p.sampling.top_p, 0.9f);
  EXPECT_EQ(p.sampling.top_k, 5);
  EXPECT_FLOAT_EQ(p.sampling.min_p, 0.1f);
  EXPECT_FLOAT_EQ(p.sampling.repeat_penalty, 1.1f);
  EXPECT_TRUE(p.seed_given);
  EXPECT_EQ(p.sampling.seed, static_cast<uint64_t>(int64_t{-3}));
  EXPECT_EQ(p.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(p.stream);
  EXPECT_TRUE(p.include_usage);
  EXPECT_TRUE(p.echo);
}

TEST(OpenAiProtocol, NullMeansNotGiven) {
  CompletionParams p =
      Parse(R"({"prompt": "x", "max_tokens": null, "temperature": null, "stop": null, "n": null})",
            false);
  EXPECT_FALSE(p.max_tokens.has_value());
  EXPECT_FLOAT_EQ(p.sampling.temperature, model::SamplingParams{}.temperature);
  EXPECT_TRUE(p.stop.empty());
}

TEST(OpenAiProtocol, PromptForms) {
  EXPECT_EQ(Parse(R"({"prompt": ["one"]})", false).prompt_text, "one");
  EXPECT_EQ(Parse(R"({"prompt": [1, 2, 3]})", false).prompt_tokens,
            (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(Parse(R"({"prompt": [[4, 5]]})", false).prompt_tokens, (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(ParseError(R"({"prompt": [1, -1]})", false).param, "prompt");
  EXPECT_EQ(ParseError(R"({"prompt": [1, 1000]})", false).param, "prompt");
  EXPECT_EQ(ParseError(R"({"prompt": [1, 18446744073709551615]})", false).param, "prompt");
  EXPECT_EQ(ParseError(R"({"prompt": [1, "a"]})", false).code, "invalid_type");
  EXPECT_EQ(ParseError(R"({"prompt": []})", false).param, "prompt");
  EXPECT_EQ(ParseError(R"({"prompt": {"a": 1}})", false).code, "invalid_type");
}

TEST(OpenAiProtocol, TopPZeroIsGreedy) {
  CompletionParams p = Parse(R"({"prompt": "x", "top_p": 0})", false);
  EXPECT_EQ(p.sampling.temperature, 0.0f);
}

TEST(OpenAiProtocol, ParsesChatMessages) {
  CompletionParams p = Parse(R"({"messages": [
      {"role": "system", "content": "S"},
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
       "name": "bob"},
      {"role": "assistant", "content": null},
      {"role": "developer", "content": "D"}], "max_completion_tokens": 9, "logprobs": false,
      "tools": [], "response_format": {"type": "text"}})",
                             true);
  ASSERT_EQ(p.messages.size(), 4u);
  EXPECT_EQ(p.messages[0].role, "system");
  EXPECT_EQ(p.messages[1].content, "ab");
  EXPECT_EQ(p.messages[2].content, "");
  EXPECT_EQ(p.messages[3].role, "developer");
  EXPECT_EQ(p.max_tokens, 9);
}

TEST(OpenAiProtocol, RejectsWhatItCannotDo) {
  struct Case {
    std::string body;
    bool chat;
    std::string param;
    std::string code;
  };
  const std::vector<Case> cases = {
      {R"({"prompt": "x", "n": 9})", false, "n", "integer_above_max_value"},
      {R"({"prompt": "x", "n": 0})", false, "n", "integer_below_min_value"},
      {R"({"prompt": "x", "presence_penalty": 2.5})", false, "presence_penalty",
       "decimal_above_max_value"},
      {R"({"prompt": "x", "frequency_penalty": -3})", false, "frequency_penalty",
       "decimal_below_min_value"},
      {R"({"prompt": "x", "logit_bias": {"5": 101}})", false, "logit_bias",
       "decimal_above_max_value"},
      {R"({"prompt": "x", "logit_bias": {"9999999": 1}})", false, "logit_bias", "invalid_value"},
      {R"({"prompt": "x", "logit_bias": {"a": 1}})", false, "logit_bias", "invalid_value"},
      {R"({"prompt": "x", "logit_bias": {"5": "1"}})", false, "logit_bias", "invalid_type"},
      {R"({"prompt": "x", "logit_bias": [1]})", false, "logit_bias", "invalid_type"},
      {R"({"prompt": "x", "seed": 1.5})", false, "seed", "invalid_type"},
      {R"({"prompt": "x", "best_of": 3})", false, "best_of", "unsupported_parameter"},
      {R"({"prompt": "x", "logprobs": 6})", false, "logprobs", "integer_above_max_value"},
      {R"({"prompt": "x", "logprobs": -1})", false, "logprobs", "integer_below_min_value"},
      {R"({"prompt": "x", "logprobs": true})", false, "logprobs", "invalid_type"},
      {R"({"prompt": "x", "suffix": "end"})", false, "suffix", "unsupported_parameter"},
      {R"({"prompt": "x", "max_tokens": 513})", false, "max_tokens", "integer_above_max_value"},
      {R"({"prompt": "x", "max_tokens": -5})", false, "max_tokens", "integer_below_min_value"},
      {R"({"prompt": "x", "temperature": -0.1})", false, "temperature", "decimal_below_min_value"},
      {R"({"prompt": "x", "top_p": 1.5})", false, "top_p", "decimal_above_max_value"},
      {R"({"prompt": "x", "stream": 1})", false, "stream", "invalid_type"},
      {R"({"prompt": "x", "stream_options": {"include_usage": "yes"}})", false,
       "stream_options.include_usage", "invalid_type"},
      {R"({"prompt": "x", "stop": ["a", 1]})", false, "stop", "invalid_type"},
      {R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]})", true,
       "tools", "unsupported_parameter"},
      {R"({"messages": [{"role": "tool", "content": "x"}]})", true, "messages[0].role",
       "unsupported_parameter"},
      {R"({"messages": [{"content": "x"}]})", true, "messages[0].role",
       "missing_required_parameter"},
      {R"({"messages": [{"role": "user"}]})", true, "messages[0].content",
       "missing_required_parameter"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", true,
       "messages[0].content[0].type", "unsupported_parameter"},
      {R"({"messages": "hi"})", true, "messages", "invalid_type"},
      {R"({"messages": [{"role": "user", "content": "x"}], "logprobs": 1})", true, "logprobs",
       "invalid_type"},
      {R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true,
           "top_logprobs": 21})",
       true, "top_logprobs", "integer_above_max_value"},
      {R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})", true,
       "top_logprobs", "invalid_value"},
      {R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}})",
       true, "response_format.type", "invalid_value"},
      {R"({"messages": [{"role": "user", "content": "x"}], "response_format": "json"})", true,
       "response_format", "invalid_type"},
      {R"({"messages": [{"role": "user", "content": "x"}], "response_format": {}})", true,
       "response_format.type", "missing_required_parameter"},
      {R"({"messages": [{"role": "user", "content": "x"}],
           "response_format": {"type": "json_schema"}})",
       true, "response_format.json_schema", "missing_required_parameter"},
      {R"({"messages": [{"role": "user", "content": "x"}],
           "response_format": {"type": "json_schema", "json_schema": {"schema": {}}}})",
       true, "response_format.json_schema.name", "missing_required_parameter"},
      {R"({"messages": [{"role": "user", "content": "x"}],
           "response_format": {"type": "json_schema", "json_schema": {"name": "a b"}}})",
       true, "response_format.json_schema.name", "invalid_value"},
      {R"({"messages": [{"role": "user", "content": "x"}],
           "response_format": {"type": "json_schema", "json_schema": {"name": "p",
             "schema": {"type": "object", "properties": {"x": {"type": "string",
                        "pattern": "^a"}}}}}})",
       true, "response_format.json_schema.schema", "invalid_json_schema"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.body);
    ApiError e = ParseError(c.body, c.chat);
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.type, "invalid_request_error");
    EXPECT_EQ(e.param, c.param);
    EXPECT_EQ(e.code, c.code);
    EXPECT_FALSE(e.message.empty());
  }
}

TEST(OpenAiProtocol, MalformedJson) {
  for (const char* body : {"", "{", "nul", "{\"prompt\": \"x\"} trailing", "\xff\xfe"}) {
    ApiError e = ParseError(body, false);
    EXPECT_EQ(e.status, 400);
    EXPECT_TRUE(e.param.empty());
  }
}

TEST(OpenAiProtocol, DeeplyNestedJsonIsAnErrorNotACrash) {
  const size_t depth = 200000;
  EXPECT_EQ(ParseError(std::string(depth, '['), false).status, 400);
  EXPECT_EQ(ParseError(std::string(depth, '[') + std::string(depth, ']'), false).param, "body");
  EXPECT_EQ(
      ParseError("{\"prompt\": " + std::string(depth, '[') + std::string(depth, ']') + "}", false)
          .param,
      "prompt");
}

TEST(OpenAiProtocol, ErrorBodyShape) {
  EXPECT_EQ(
      ErrorBody({400, "Bad.", "invalid_request_error", "", ""}),
      R"({"error":{"code":null,"message":"Bad.","param":null,"type":"invalid_request_error"}})");
  json j = json::parse(ErrorBody({429, "Slow down", "requests", "x", "rate_limit_exceeded"}));
  EXPECT_EQ(j["error"]["param"], "x");
  EXPECT_EQ(j["error"]["code"], "rate_limit_exceeded");
}

TEST(OpenAiProtocol, ResponseShapes) {
  ResponseMeta meta{"cmpl-1", 1700000000, "m"};
  json c = CompletionJson(meta, "hi", "length", {3, 2});
  EXPECT_EQ(c, json::parse(R"({"id": "cmpl-1", "object": "text_completion", "created": 1700000000,
      "model": "m", "choices": [{"text": "hi", "index": 0, "logprobs": null,
      "finish_reason": "length"}], "usage": {"prompt_tokens": 3, "completion_tokens": 2,
      "total_tokens": 5}})"));
  json chat = ChatCompletionJson(meta, "yo", "stop", {1, 1});
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["choices"][0]["message"], json::parse(R"({"role":"assistant","content":"yo"})"));

  json first = ChatChunkJson(meta, true, std::string(), "");
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"], json::parse(R"({"role":"assistant","content":""})"));
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  json last = ChatChunkJson(meta, false, std::nullopt, "stop");
  EXPECT_EQ(last["choices"][0]["delta"], json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  json usage = UsageChunkJson(meta, true, {4, 6});
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["total_tokens"], 10);

  EXPECT_EQ(SseEvent(json{{"a", 1}}), "data: {\"a\":1}\n\n");
  // Never throws on invalid UTF-8.
  EXPECT_EQ(Dump(json("a\xff")), "\"a\xEF\xBF\xBD\"");
}

TEST(Metrics, RendersPrometheusText) {
  MetricsRegistry m;
  m.CountRequest("completions", 200);
  m.CountRequest("completions", 200);
  m.CountRequest("other", 404);
  m.AddTokens(3, 7);
  m.ObservePeerStep("peer\"a\\b\nc", 0.003);
  m.ObservePeerStep("peer\"a\\b\nc", 0.2);
  m.ObservePeerStep("peer\"a\\b\nc", 50);
  m.AddBytesSent("int8+zstd", 1000);
  m.AddBytesSent("int8+zstd", 24);
  m.AddFailover();
  m.SetKvCacheUse("p1", 10, 100, 64);
  const std::string text = m.Render();
  for (const char* expected :
       {"# HELP swarm_http_requests_total HTTP requests by endpoint and status code.\n"
        "# TYPE swarm_http_requests_total counter\n"
        "swarm_http_requests_total{endpoint=\"completions\",status=\"200\"} 2\n"
        "swarm_http_requests_total{endpoint=\"other\",status=\"404\"} 1\n",
        "swarm_prompt_tokens_total 3\n", "swarm_generated_tokens_total 7\n",
        "swarm_peer_step_latency_seconds_bucket{peer=\"peer\\\"a\\\\b\\nc\",le=\"0.0025\"} 0\n",
        "swarm_peer_step_latency_seconds_bucket{peer=\"peer\\\"a\\\\b\\nc\",le=\"0.005\"} 1\n",
        "swarm_peer_step_latency_seconds_bucket{peer=\"peer\\\"a\\\\b\\nc\",le=\"0.25\"} 2\n",
        "swarm_peer_step_latency_seconds_bucket{peer=\"peer\\\"a\\\\b\\nc\",le=\"10\"} 2\n",
        "swarm_peer_step_latency_seconds_bucket{peer=\"peer\\\"a\\\\b\\nc\",le=\"+Inf\"} 3\n",
        "swarm_peer_step_latency_seconds_sum{peer=\"peer\\\"a\\\\b\\nc\"} 50.203\n",
        "swarm_peer_step_latency_seconds_count{peer=\"peer\\\"a\\\\b\\nc\"} 3\n",
        "swarm_bytes_sent_total{codec=\"int8+zstd\"} 1024\n", "swarm_failovers_total 1\n",
        "swarm_kv_cache_used_tokens{peer=\"p1\"} 10\n",
        "swarm_kv_cache_capacity_tokens{peer=\"p1\"} 100\n",
        "swarm_kv_cache_used_bytes{peer=\"p1\"} 640\n",
        "swarm_kv_cache_capacity_bytes{peer=\"p1\"} 6400\n",
        "# TYPE swarm_token_latency_seconds histogram\n"
        "swarm_token_latency_seconds_bucket{le=\"+Inf\"} 0\n"}) {
    EXPECT_NE(text.find(expected), std::string::npos) << expected << "\n---\n" << text;
  }
  EXPECT_EQ(m.Value("swarm_http_requests_total", {"completions", "200"}), 2);
  EXPECT_EQ(m.HistogramCount("swarm_peer_step_latency_seconds", {"peer\"a\\b\nc"}), 3u);
}

TEST(Metrics, BoundsSeriesFromUntrustedLabels) {
  MetricsRegistry m;
  for (size_t i = 0; i < MetricsRegistry::kMaxSeriesPerFamily + 100; ++i) {
    m.ObservePeerStep("peer" + std::to_string(i), 0.01);
  }
  const std::string text = m.Render();
  size_t count = 0;
  for (size_t pos = 0;
       (pos = text.find("swarm_peer_step_latency_seconds_count{", pos)) != std::string::npos;
       ++pos) {
    ++count;
  }
  EXPECT_EQ(count, MetricsRegistry::kMaxSeriesPerFamily);
  // Wrong label counts and unknown families are ignored, not fatal.
  m.Add("swarm_http_requests_total", {"only-one"});
  m.Add("no_such_family", {});
  m.Observe("swarm_failovers_total", {}, 1);  // a counter, not a histogram
}

TEST(Metrics, ReplaceGaugeDropsGoneSeries) {
  MetricsRegistry m;
  m.ReplaceGauge("swarm_peers", {{{"online"}, 3}, {{"joining"}, 1}});
  m.ReplaceGauge("swarm_peers", {{{"online"}, 2}});
  const std::string text = m.Render();
  EXPECT_NE(text.find("swarm_peers{state=\"online\"} 2\n"), std::string::npos);
  EXPECT_EQ(text.find("joining"), std::string::npos);
}

TEST(OpenAiProtocol, ParsesLogprobs) {
  EXPECT_EQ(Parse(R"({"prompt": "x"})", false).logprobs, -1);
  EXPECT_EQ(Parse(R"({"prompt": "x", "logprobs": 0})", false).logprobs, 0);
  EXPECT_EQ(Parse(R"({"prompt": "x", "logprobs": 5, "echo": true})", false).logprobs, 5);
  EXPECT_EQ(Parse(R"({"prompt": "x", "logprobs": null})", false).logprobs, -1);
  const std::string chat = R"({"messages": [{"role": "user", "content": "x"}])";
  EXPECT_EQ(Parse(chat + "}", true).logprobs, -1);
  EXPECT_EQ(Parse(chat + R"(, "logprobs": false})", true).logprobs, -1);
  EXPECT_EQ(Parse(chat + R"(, "logprobs": true})", true).logprobs, 0);
  EXPECT_EQ(Parse(chat + R"(, "logprobs": true, "top_logprobs": 20})", true).logprobs, 20);
}

}  // namespace
}  // namespace swarm::gateway
