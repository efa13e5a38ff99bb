// The gateway end to end: a real ApiServer on 127.0.0.1 (port 0) in front of the real in-process
// engine on stories260K, driven by a Beast HTTP client. The engine is wrapped only to observe it
// (tokens produced, whether the gateway asked it to stop) and, in a few tests, to pause it at a
// chosen token so that a disconnect or an overload happens at a known point.
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "boost/asio.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "gateway/api_server.h"
#include "gateway/chat_template.h"
#include "gateway/local_engine.h"
#include "gtest/gtest.h"
#include "http_test_client.h"
#include "nlohmann/json.hpp"
#include "support/shared_model.h"

namespace swarm::gateway {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using nlohmann::json;
using test_http::Client;
using test_http::ReferenceText;
using test_http::Response;
using test_http::SseData;

const std::string& kModel = test_support::kSharedModel;

// Forwards to the real engine, counting what happens; can hold generation at one token until the
// test releases it.
class ObservedEngine final : public CompletionEngine {
 public:
  explicit ObservedEngine(CompletionEngine& inner) : inner_(inner) {}

  const ModelInfo& info() const override { return inner_.info(); }
  const model::Tokenizer& tokenizer() const override { return inner_.tokenizer(); }
  SwarmView Describe() const override { return inner_.Describe(); }

  absl::Status Generate(const GenerationRequest& request, const TokenCallback& on_token) override {
    {
      std::lock_guard lock(mu_);
      ++started_;
      cv_.notify_all();
    }
    int64_t n = 0;
    bool refused = false;
    absl::Status status = inner_.Generate(request, [&](const GenerationEvent& event) {
      ++n;
      {
        std::unique_lock lock(mu_);
        if (pause_at_ > 0 && n == pause_at_) {
          paused_ = true;
          cv_.notify_all();
          cv_.wait(lock, [this] { return released_; });
        }
      }
      const bool go_on = on_token(event);
      if (!go_on) refused = true;
      return go_on;
    });
    std::lock_guard lock(mu_);
    ++finished_;
    last_tokens_ = n;
    last_refused_ = refused;
    cv_.notify_all();
    return status;
  }

  void PauseAt(int64_t token) {
    std::lock_guard lock(mu_);
    pause_at_ = token;
    paused_ = false;
    released_ = false;
  }
  void WaitPaused() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return paused_; });
  }
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  void WaitStarted(int count) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return started_ >= count; });
  }
  void WaitFinished(int count) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return finished_ >= count; });
  }
  int finished() {
    std::lock_guard lock(mu_);
    return finished_;
  }
  int started() {
    std::lock_guard lock(mu_);
    return started_;
  }
  int64_t last_tokens() {
    std::lock_guard lock(mu_);
    return last_tokens_;
  }
  bool last_refused() {
    std::lock_guard lock(mu_);
    return last_refused_;
  }

 private:
  CompletionEngine& inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  int started_ = 0;
  int finished_ = 0;
  int64_t last_tokens_ = 0;
  bool last_refused_ = false;
  int64_t pause_at_ = 0;
  bool paused_ = false;
  bool released_ = false;
};

json Error(const Response& r) {
  json j = json::parse(r.body(), nullptr, false);
  EXPECT_TRUE(j.is_object()) << r.body();
  EXPECT_TRUE(j.contains("error")) << r.body();
  const json& e = j["error"];
  // OpenAI's shape: all four keys present, message and type strings.
  EXPECT_TRUE(e["message"].is_string()) << r.body();
  EXPECT_TRUE(e["type"].is_string()) << r.body();
  EXPECT_TRUE(e.contains("param")) << r.body();
  EXPECT_TRUE(e.contains("code")) << r.body();
  return e;
}

class ApiServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    LocalEngineOptions options;
    options.backend.name = "reference";
    auto engine = LocalEngine::Load(kModel, options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = engine->release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(engine_, nullptr);
    observed_ = std::make_unique<ObservedEngine>(*engine_);
  }

  void StartServer(ApiServerOptions options = {}) {
    options.http.io_threads = 2;
    auto server = ApiServer::Start(options, *observed_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  uint16_t port() const { return server_->port(); }

  static LocalEngine* engine_;
  std::unique_ptr<ObservedEngine> observed_;
  std::unique_ptr<ApiServer> server_;
};

LocalEngine* ApiServerTest::engine_ = nullptr;

TEST_F(ApiServerTest, ListsTheModel) {
  StartServer();
  Client c(port());
  Response r = c.Get("/v1/models");
  ASSERT_EQ(r.result_int(), 200) << r.body();
  json j = json::parse(r.body());
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 1u);
  EXPECT_EQ(j["data"][0]["id"], "stories260K");
  EXPECT_EQ(j["data"][0]["object"], "model");
  EXPECT_TRUE(j["data"][0]["created"].is_number_integer());
  EXPECT_TRUE(j["data"][0]["owned_by"].is_string());

  r = c.Get("/v1/models/stories260K");
  ASSERT_EQ(r.result_int(), 200) << r.body();
  EXPECT_EQ(json::parse(r.body())["id"], "stories260K");

  r = c.Get("/v1/models/gpt-4");
  EXPECT_EQ(r.result_int(), 404);
  EXPECT_EQ(Error(r)["code"], "model_not_found");
}

TEST_F(ApiServerTest, GreedyCompletionIsTheReferenceText) {
  StartServer();
  Client c(port());
  Response r =
      c.Post("/v1/completions",
             {{"model", "stories260K"}, {"prompt", ""}, {"max_tokens", 200}, {"temperature", 0}});
  ASSERT_EQ(r.result_int(), 200) << r.body();
  EXPECT_EQ(r[http::field::content_type], "application/json");
  json j = json::parse(r.body());
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  EXPECT_EQ(j["model"], "stories260K");
  ASSERT_EQ(j["choices"].size(), 1u);
  EXPECT_EQ(j["choices"][0]["text"], ReferenceText());
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 1);  // BOS
  EXPECT_EQ(j["usage"]["completion_tokens"], 200);
  EXPECT_EQ(j["usage"]["total_tokens"], 201);
}

TEST_F(ApiServerTest, StreamedCompletionEqualsTheWholeOne) {
  StartServer();
  Client c(port());
  const json request = {{"prompt", "Once upon a"}, {"max_tokens", 40}, {"temperature", 0}};
  Response whole = c.Post("/v1/completions", request);
  ASSERT_EQ(whole.result_int(), 200) << whole.body();
  const json wj = json::parse(whole.body());
  const std::string expected = wj["choices"][0]["text"];
  // A continuation of a prompt keeps the space its first word carries (the reference text goes
  // on with " time").
  EXPECT_EQ(expected.rfind(" time", 0), 0u) << expected;

  json streamed_request = request;
  streamed_request["stream"] = true;
  streamed_request["stream_options"] = {{"include_usage", true}};
  Response r = c.Post("/v1/completions", streamed_request);  // same connection: keep-alive
  ASSERT_EQ(r.result_int(), 200) << r.body();
  EXPECT_EQ(r[http::field::content_type], "text/event-stream");
  EXPECT_TRUE(r.chunked());
  std::vector<std::string> events = SseData(r.body());
  ASSERT_GE(events.size(), 4u) << r.body();
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  std::string finish;
  json usage;
  std::string id;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    json chunk = json::parse(events[i]);
    EXPECT_EQ(chunk["object"], "text_completion");
    if (id.empty()) id = chunk["id"];
    EXPECT_EQ(chunk["id"], id);  // one id for the whole stream
    if (chunk.contains("usage")) {
      EXPECT_TRUE(chunk["choices"].empty());
      usage = chunk["usage"];
      continue;
    }
    ASSERT_EQ(chunk["choices"].size(), 1u);
    text += chunk["choices"][0]["text"].get<std::string>();
    if (!chunk["choices"][0]["finish_reason"].is_null()) {
      finish = chunk["choices"][0]["finish_reason"];
    }
  }
  EXPECT_EQ(text, expected);
  EXPECT_EQ(finish, "length");
  EXPECT_EQ(usage, wj["usage"]);

  // And the connection is still good for another request.
  EXPECT_EQ(c.Get("/health").result_int(), 200);
}

TEST_F(ApiServerTest, StopSequencesEndTheTextAndAreNotEmitted) {
  StartServer();
  Client c(port());
  const std::string ref = ReferenceText();
  // "Lily" is one or more tokens; ", there w" spans several tokens.
  for (const std::string& stop : {std::string("Lily"), std::string(", there w")}) {
    for (bool stream : {false, true}) {
      SCOPED_TRACE(stop + (stream ? " streamed" : ""));
      Response r = c.Post("/v1/completions", {{"prompt", ""},
                                              {"max_tokens", 200},
                                              {"temperature", 0},
                                              {"stop", json::array({"zzz", stop})},
                                              {"stream", stream}});
      ASSERT_EQ(r.result_int(), 200) << r.body();
      std::string text, finish;
      if (!stream) {
        json j = json::parse(r.body());
        text = j["choices"][0]["text"];
        finish = j["choices"][0]["finish_reason"];
      } else {
        for (const std::string& e : SseData(r.body())) {
          if (e == "[DONE]") continue;
          json chunk = json::parse(e);
          const std::string piece = chunk["choices"][0]["text"];
          // No chunk carries any part of the stop sequence's text beyond the reference prefix.
          EXPECT_EQ(piece.find(stop), std::string::npos);
          text += piece;
          if (!chunk["choices"][0]["finish_reason"].is_null()) {
            finish = chunk["choices"][0]["finish_reason"];
          }
        }
      }
      EXPECT_EQ(text, ref.substr(0, ref.find(stop)));
      EXPECT_EQ(finish, "stop");
    }
  }
  // A single stop string works too.
  Response r = c.Post("/v1/completions",
                      {{"prompt", ""}, {"max_tokens", 50}, {"temperature", 0}, {"stop", "."}});
  ASSERT_EQ(r.result_int(), 200);
  EXPECT_EQ(json::parse(r.body())["choices"][0]["text"], ref.substr(0, ref.find('.')));
}

TEST_F(ApiServerTest, ChatCompletionWholeAndStreamed) {
  StartServer();
  Client c(port());
  const json messages = json::array({{{"role", "system"}, {"content", "You tell stories."}},
                                     {{"role", "user"}, {"content", "Tell me about Lily."}}});
  Response r = c.Post(
      "/v1/chat/completions",
      {{"model", "stories260K"}, {"messages", messages}, {"max_tokens", 30}, {"temperature", 0}});
  ASSERT_EQ(r.result_int(), 200) << r.body();
  json j = json::parse(r.body());
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  const std::string content = j["choices"][0]["message"]["content"];
  EXPECT_FALSE(content.empty());
  EXPECT_NE(content[0], ' ');  // the reply starts at its first visible character
  EXPECT_TRUE(j["choices"][0]["finish_reason"] == "length" ||
              j["choices"][0]["finish_reason"] == "stop");
  // stories260K has no chat template: the plain format, tokenized as the formatter does.
  ChatFormatter plain(ChatTemplateKind::kPlain, engine_->tokenizer());
  auto ids = plain.Tokenize({{"system", "You tell stories."}, {"user", "Tell me about Lily."}});
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(j["usage"]["prompt_tokens"], ids->size());
  EXPECT_EQ(j["usage"]["total_tokens"],
            j["usage"]["prompt_tokens"].get<int>() + j["usage"]["completion_tokens"].get<int>());

  Response s =
      c.Post("/v1/chat/completions",
             {{"messages", messages}, {"max_tokens", 30}, {"temperature", 0}, {"stream", true}});
  ASSERT_EQ(s.result_int(), 200) << s.body();
  std::vector<std::string> events = SseData(s.body());
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string streamed;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    json chunk = json::parse(events[i]);
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    const json& choice = chunk["choices"][0];
    const json& delta = choice["delta"];
    if (i == 0) {
      EXPECT_EQ(delta["role"], "assistant");  // the first chunk carries the role
    } else {
      EXPECT_FALSE(delta.contains("role"));
    }
    if (i + 2 == events.size()) {
      EXPECT_TRUE(delta.empty()) << events[i];  // the last chunk: {} and the finish reason
      EXPECT_EQ(choice["finish_reason"], j["choices"][0]["finish_reason"]);
    } else {
      EXPECT_TRUE(choice["finish_reason"].is_null());
    }
    if (delta.contains("content")) streamed += delta["content"].get<std::string>();
  }
  EXPECT_EQ(streamed, content);
}

TEST_F(ApiServerTest, BadRequestsGetOpenAiErrors) {
  StartServer();
  Client c(port());
  struct Case {
    const char* name;
    std::string target;
    std::string body;
    int status;
    const char* param;  // nullptr: param is null
  };
  const std::vector<Case> cases = {
      {"malformed json", "/v1/completions", "{\"prompt\": \"x\",", 400, nullptr},
      {"not an object", "/v1/completions", "[1,2]", 400, "body"},
      {"missing prompt", "/v1/completions", R"({"max_tokens": 3})", 400, "prompt"},
      {"max_tokens string", "/v1/completions", R"({"prompt": "a", "max_tokens": "3"})", 400,
       "max_tokens"},
      {"max_tokens decimal", "/v1/completions", R"({"prompt": "a", "max_tokens": 3.5})", 400,
       "max_tokens"},
      {"negative max_tokens", "/v1/completions", R"({"prompt": "a", "max_tokens": -1})", 400,
       "max_tokens"},
      {"max_tokens over limit", "/v1/completions", R"({"prompt": "a", "max_tokens": 100000})", 400,
       "max_tokens"},
      {"temperature too high", "/v1/completions", R"({"prompt": "a", "temperature": 2.5})", 400,
       "temperature"},
      {"top_p wrong type", "/v1/completions", R"({"prompt": "a", "top_p": "high"})", 400, "top_p"},
      {"stream not bool", "/v1/completions", R"({"prompt": "a", "stream": "yes"})", 400, "stream"},
      {"stop wrong type", "/v1/completions", R"({"prompt": "a", "stop": 5})", 400, "stop"},
      {"too many stops", "/v1/completions", R"({"prompt": "a", "stop": ["a", "b", "c", "d", "e"]})",
       400, "stop"},
      {"n=9", "/v1/completions", R"({"prompt": "a", "n": 9})", 400, "n"},
      {"seed wrong type", "/v1/completions", R"({"prompt": "a", "seed": "1"})", 400, "seed"},
      {"model wrong type", "/v1/completions", R"({"prompt": "a", "model": 7})", 400, "model"},
      {"token outside vocab", "/v1/completions", R"({"prompt": [1, 512]})", 400, "prompt"},
      {"two prompts", "/v1/completions", R"({"prompt": ["a", "b"]})", 400, "prompt"},
      {"missing messages", "/v1/chat/completions", R"({"max_tokens": 3})", 400, "messages"},
      {"empty messages", "/v1/chat/completions", R"({"messages": []})", 400, "messages"},
      {"bad role", "/v1/chat/completions", R"({"messages": [{"role": "robot", "content": "hi"}]})",
       400, "messages[0].role"},
      {"content wrong type", "/v1/chat/completions",
       R"({"messages": [{"role": "user", "content": 5}]})", 400, "messages[0].content"},
      {"chat n=0", "/v1/chat/completions",
       R"({"messages": [{"role": "user", "content": "hi"}], "n": 0})", 400, "n"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    Response r = c.Send(http::verb::post, k.target, k.body);
    EXPECT_EQ(r.result_int(), k.status) << r.body();
    json e = Error(r);
    EXPECT_EQ(e["type"], "invalid_request_error");
    if (k.param == nullptr) {
      EXPECT_TRUE(e["param"].is_null()) << r.body();
    } else {
      EXPECT_EQ(e["param"], k.param) << r.body();
    }
  }
  EXPECT_EQ(observed_->started(), 0);  // none of them reached the engine

  // Unknown top-level fields are ignored, as OpenAI does.
  Response ok = c.Post("/v1/completions", {{"prompt", "a"},
                                           {"max_tokens", 2},
                                           {"some_future_field", {{"x", 1}}},
                                           {"presence_penalty", 0}});
  EXPECT_EQ(ok.result_int(), 200) << ok.body();
}

TEST_F(ApiServerTest, ContextLimits) {
  StartServer();
  Client c(port());
  const int n_ctx = engine_->info().n_ctx;
  std::vector<int> long_prompt(n_ctx, 100);
  Response r = c.Post("/v1/completions", {{"prompt", long_prompt}, {"max_tokens", 1}});
  EXPECT_EQ(r.result_int(), 400);
  EXPECT_EQ(Error(r)["code"], "context_length_exceeded");

  std::vector<int> prompt(n_ctx - 10, 100);
  r = c.Post("/v1/completions", {{"prompt", prompt}, {"max_tokens", 11}});
  EXPECT_EQ(r.result_int(), 400);
  EXPECT_EQ(Error(r)["code"], "context_length_exceeded");
  EXPECT_EQ(Error(r)["param"], "max_tokens");
}

TEST_F(ApiServerTest, HttpLevelErrors) {
  ApiServerOptions options;
  options.http.max_body_bytes = 64 * 1024;
  options.http.max_header_bytes = 4096;
  StartServer(options);
  {
    Client c(port());
    Response r = c.Get("/v1/nothing-here");
    EXPECT_EQ(r.result_int(), 404);
    EXPECT_EQ(Error(r)["code"], "unknown_url");
    r = c.Get("/v1/completions");
    EXPECT_EQ(r.result_int(), 405);
    EXPECT_EQ(r[http::field::allow], "POST");
    EXPECT_EQ(Error(r)["code"], "method_not_allowed");
    r = c.Send(http::verb::delete_, "/v1/models");
    EXPECT_EQ(r.result_int(), 405);
    r = c.Send(http::verb::post, "/metrics", "{}");
    EXPECT_EQ(r.result_int(), 405);
  }
  {
    // A body over the limit: 413, and the client can read the answer.
    Client c(port());
    const std::string huge = "{\"prompt\": \"" + std::string(256 * 1024, 'a') + "\"}";
    Response r = c.Send(http::verb::post, "/v1/completions", huge);
    EXPECT_EQ(r.result_int(), 413);
    EXPECT_EQ(Error(r)["code"], "request_too_large");
    EXPECT_FALSE(r.keep_alive());
  }
  {
    Client c(port());
    Response r = c.Send(http::verb::get, "/health", "", {{"X-Big", std::string(8000, 'x')}});
    EXPECT_EQ(r.result_int(), 431);
    Error(r);
  }
  {
    // Not HTTP at all.
    Client c(port());
    net::write(c.socket(), net::buffer(std::string("HELLO THERE\r\n\r\n")));
    beast::flat_buffer buffer;
    Response r;
    beast::error_code ec;
    http::read(c.socket(), buffer, r, ec);
    ASSERT_FALSE(ec) << ec.message();
    EXPECT_EQ(r.result_int(), 400);
  }
  EXPECT_EQ(observed_->started(), 0);
}

TEST_F(ApiServerTest, ExpectContinueIsAnswered) {
  StartServer();
  Client c(port());
  const std::string body = json{{"prompt", "a"}, {"max_tokens", 2}}.dump();
  const std::string head =
      "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      "Content-Type: application/json\r\nExpect: 100-continue\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n";
  net::write(c.socket(), net::buffer(head));
  // The interim response comes before the client has sent any of the body.
  beast::flat_buffer buffer;
  http::response<http::empty_body> interim;
  http::read(c.socket(), buffer, interim);
  EXPECT_EQ(interim.result(), http::status::continue_);
  net::write(c.socket(), net::buffer(body));
  Response r;
  http::read(c.socket(), buffer, r);
  EXPECT_EQ(r.result_int(), 200) << r.body();
}

TEST_F(ApiServerTest, SlowClientIsClosedWhileOthersAreServed) {
  ApiServerOptions options;
  options.http.header_timeout = std::chrono::milliseconds(300);
  StartServer(options);
  Client slow(port());
  // Headers one byte at a time, never finished.
  const std::string partial = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le";
  for (char ch : partial) net::write(slow.socket(), net::buffer(&ch, 1));

  const auto start = std::chrono::steady_clock::now();
  Client other(port());
  Response r = other.Post("/v1/completions", {{"prompt", "Lily"}, {"max_tokens", 5}});
  EXPECT_EQ(r.result_int(), 200) << r.body();

  EXPECT_TRUE(slow.WaitClosed());
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(waited, 0.2);
  EXPECT_LT(waited, 10.0);
  // The well-behaved client's connection is still open.
  EXPECT_EQ(other.Get("/health").result_int(), 200);
}

TEST_F(ApiServerTest, IdleKeepAliveConnectionIsClosed) {
  ApiServerOptions options;
  options.http.idle_timeout = std::chrono::milliseconds(200);
  StartServer(options);
  Client c(port());
  EXPECT_EQ(c.Get("/health").result_int(), 200);
  EXPECT_TRUE(c.WaitClosed());
}

TEST_F(ApiServerTest, ClientDisconnectMidStreamStopsGeneration) {
  StartServer();
  observed_->PauseAt(3);
  Client c(port());
  http::request<http::string_body> req{http::verb::post, "/v1/completions", 11};
  req.set(http::field::host, "127.0.0.1");
  req.body() =
      json{{"prompt", ""}, {"max_tokens", 1000}, {"temperature", 0}, {"stream", true}}.dump();
  req.prepare_payload();
  http::write(c.socket(), req);
  // The stream has begun: the status line and the first chunks arrive.
  std::string received;
  char buf[4096];
  while (received.find("data: ") == std::string::npos) {
    received.append(buf, c.socket().read_some(net::buffer(buf)));
  }
  EXPECT_EQ(received.rfind("HTTP/1.1 200", 0), 0u) << received;
  observed_->WaitPaused();
  // Leave abruptly (RST), as a killed client does.
  c.socket().set_option(net::socket_base::linger(true, 0));
  c.socket().close();
  observed_->Release();
  observed_->WaitFinished(1);
  EXPECT_TRUE(observed_->last_refused());
  EXPECT_LT(observed_->last_tokens(), 20);

  // The gateway counts it as a request whose client went away, and the dashboard shows it. (The
  // gateway finishes its bookkeeping after the engine returns; Stop() waits for that.)
  server_->Stop();
  json swarm = server_->SwarmSnapshot();
  ASSERT_FALSE(swarm["requests"].empty());
  EXPECT_EQ(swarm["requests"][0]["status"], "cancelled");
  EXPECT_EQ(server_->metrics().Value("swarm_http_requests_total", {"completions", "499"}), 1);
}

TEST_F(ApiServerTest, NonStreamedClientDisconnectAlsoStops) {
  StartServer();
  observed_->PauseAt(2);
  {
    Client c(port());
    http::request<http::string_body> req{http::verb::post, "/v1/completions", 11};
    req.set(http::field::host, "127.0.0.1");
    req.body() = json{{"prompt", ""}, {"max_tokens", 1000}, {"temperature", 0}}.dump();
    req.prepare_payload();
    http::write(c.socket(), req);
    observed_->WaitPaused();
  }  // closed here, with nothing written to it yet
  // Nothing is written before the end, so only the closed-connection watch can notice.
  observed_->Release();
  observed_->WaitFinished(1);
  EXPECT_TRUE(observed_->last_refused());
  EXPECT_LT(observed_->last_tokens(), 1000);
}

TEST_F(ApiServerTest, ConcurrentRequestsAllGetTheirOwnAnswers) {
  ApiServerOptions options;
  options.max_concurrent_generations = 3;
  options.max_queued_generations = 16;
  StartServer(options);
  const std::vector<std::string> prompts = {"Lily", "Once upon a time", "The dog", "Tom"};
  std::vector<std::string> expected;
  {
    Client c(port());
    for (const std::string& p : prompts) {
      Response r = c.Post("/v1/completions", {{"prompt", p}, {"max_tokens", 24}, {"seed", 7}});
      ASSERT_EQ(r.result_int(), 200);
      expected.push_back(json::parse(r.body())["choices"][0]["text"]);
    }
  }
  constexpr int kThreads = 8;
  std::vector<std::string> got(kThreads);
  std::vector<int> status(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Each from its own address: the gateway caps what one address runs at once.
      Client c(port(), "127.0.0." + std::to_string(10 + t));
      const bool stream = t % 2 == 1;
      Response r = c.Post("/v1/completions", {{"prompt", prompts[t % prompts.size()]},
                                              {"max_tokens", 24},
                                              {"seed", 7},
                                              {"stream", stream}});
      status[t] = r.result_int();
      if (!stream) {
        got[t] = json::parse(r.body())["choices"][0]["text"];
        return;
      }
      for (const std::string& e : SseData(r.body())) {
        if (e != "[DONE]") got[t] += json::parse(e)["choices"][0]["text"].get<std::string>();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(status[t], 200);
    EXPECT_EQ(got[t], expected[t % prompts.size()]) << "thread " << t;
  }
}

TEST_F(ApiServerTest, OverloadGets429) {
  ApiServerOptions options;
  options.max_concurrent_generations = 1;
  options.max_queued_generations = 0;
  StartServer(options);
  observed_->PauseAt(1);
  std::thread first([&] {
    Client c(port());
    Response r = c.Post("/v1/completions", {{"prompt", "a"}, {"max_tokens", 3}});
    EXPECT_EQ(r.result_int(), 200);
  });
  observed_->WaitPaused();
  Client c(port());
  Response r = c.Post("/v1/completions", {{"prompt", "a"}, {"max_tokens", 3}});
  EXPECT_EQ(r.result_int(), 429);
  EXPECT_EQ(Error(r)["code"], "rate_limit_exceeded");
  // Cheap endpoints do not wait for workers.
  EXPECT_EQ(c.Get("/v1/models").result_int(), 200);
  observed_->Release();
  first.join();
  Response again = c.Post("/v1/completions", {{"prompt", "a"}, {"max_tokens", 3}});
  EXPECT_EQ(again.result_int(), 200);
}

TEST_F(ApiServerTest, OneClientsGenerationsAreCappedWhileOthersGoOn) {
  ApiServerOptions options;
  options.max_concurrent_generations = 2;
  options.max_queued_generations = 4;
  options.max_queued_per_client = 1;
  StartServer(options);
  observed_->PauseAt(1);
  std::thread first([&] {
    Client c(port());
    Response r = c.Post("/v1/completions", {{"prompt", "a"}, {"max_tokens", 3}});
    EXPECT_EQ(r.result_int(), 200) << r.body();
  });
  observed_->WaitPaused();
  // The same address again, on another connection: over its cap.
  Client again(port());
  Response r = again.Post("/v1/completions", {{"prompt", "a"}, {"max_tokens", 3}});
  EXPECT_EQ(r.result_int(), 429);
  const json e = Error(r);
  EXPECT_EQ(e["type"], "requests");
  EXPECT_EQ(e["code"], "rate_limit_exceeded");
  EXPECT_NE(e["message"].get<std::string>().find("per client"), std::string::npos) << e;
  EXPECT_EQ(r["Retry-After"], "1");
  // Another address is admitted and served while the first client is at its cap.
  std::thread other([&] {
    Client c(port(), "127.0.0.2");
    Response r = c.Post("/v1/completions", {{"prompt", "a"}, {"max_tokens", 3}});
    EXPECT_EQ(r.result_int(), 200) << r.body();
  });
  observed_->WaitStarted(2);
  observed_->Release();
  first.join();
  other.join();
  EXPECT_EQ(observed_->finished(), 2);
  // Its slot is free again once its generation is done.
  EXPECT_EQ(again.Post("/v1/completions", {{"prompt", "a"}, {"max_tokens", 3}}).result_int(), 200);
}

TEST_F(ApiServerTest, StopEndsRunningGenerations) {
  StartServer();
  observed_->PauseAt(2);
  std::thread client([&] {
    Client c(port());
    http::request<http::string_body> req{http::verb::post, "/v1/completions", 11};
    req.set(http::field::host, "127.0.0.1");
    req.body() = json{{"prompt", ""}, {"max_tokens", 1000}, {"stream", true}}.dump();
    req.prepare_payload();
    http::write(c.socket(), req);
    c.WaitClosed();
  });
  observed_->WaitPaused();
  std::thread stopper([&] { server_->Stop(); });
  observed_->Release();
  stopper.join();
  client.join();
  EXPECT_EQ(observed_->finished(), 1);
  EXPECT_TRUE(observed_->last_refused());
}

TEST_F(ApiServerTest, MetricsInPrometheusFormat) {
  StartServer();
  Client c(port());
  ASSERT_EQ(c.Post("/v1/completions", {{"prompt", "a"}, {"max_tokens", 5}}).result_int(), 200);
  ASSERT_EQ(c.Get("/v1/nope").result_int(), 404);
  Response r = c.Get("/metrics");
  ASSERT_EQ(r.result_int(), 200);
  EXPECT_EQ(r[http::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
  const std::string& m = r.body();
  for (const char* expected :
       {"# TYPE swarm_http_requests_total counter\n",
        "swarm_http_requests_total{endpoint=\"completions\",status=\"200\"} 1\n",
        "swarm_http_requests_total{endpoint=\"other\",status=\"404\"} 1\n",
        "swarm_generated_tokens_total 5\n", "# TYPE swarm_token_latency_seconds histogram\n",
        "swarm_token_latency_seconds_count 4\n", "swarm_time_to_first_token_seconds_count 1\n",
        "swarm_peer_step_latency_seconds_count{peer=\"local\"} 5\n",
        "swarm_peer_step_latency_seconds_bucket{peer=\"local\",le=\"+Inf\"} 5\n",
        "swarm_failovers_total 0\n", "swarm_kv_cache_capacity_tokens{peer=\"local\"}",
        "swarm_peers{state=\"local\"} 1\n", "swarm_block_peers{block=\"4\"} 1\n",
        "# TYPE swarm_bytes_sent_total counter\n"}) {
    EXPECT_NE(m.find(expected), std::string::npos) << expected << "\n---\n" << m;
  }
  // The cache in bytes beside the tokens: stories260K's default f16 cache takes 640 bytes a
  // position over its 5 blocks (32 key and 32 value dims each).
  auto value = [&](const std::string& series) {
    const std::string key = "\n" + series + " ";
    const size_t at = m.find(key);
    return at == std::string::npos ? -1.0 : std::stod(m.substr(at + key.size()));
  };
  const double capacity = value("swarm_kv_cache_capacity_tokens{peer=\"local\"}");
  EXPECT_GT(capacity, 0) << m;
  EXPECT_EQ(value("swarm_kv_cache_capacity_bytes{peer=\"local\"}"), capacity * 640) << m;
  EXPECT_EQ(value("swarm_kv_cache_used_bytes{peer=\"local\"}"),
            value("swarm_kv_cache_used_tokens{peer=\"local\"}") * 640)
      << m;
  EXPECT_EQ(value("swarm_peer_cache_bytes_total{peer=\"local\"}"),
            value("swarm_peer_cache_tokens_left{peer=\"local\"}") * 640)
      << m;  // nothing in use between requests
}

TEST_F(ApiServerTest, SwarmJsonAndDashboard) {
  StartServer();
  Client c(port());
  ASSERT_EQ(c.Post("/v1/completions", {{"prompt", "a"}, {"max_tokens", 4}}).result_int(), 200);
  Response r = c.Get("/api/swarm");
  ASSERT_EQ(r.result_int(), 200);
  json j = json::parse(r.body());
  EXPECT_EQ(j["model"]["id"], "stories260K");
  EXPECT_EQ(j["model"]["n_blocks"], 5);
  ASSERT_EQ(j["blocks"].size(), 5u);
  for (const json& b : j["blocks"]) EXPECT_EQ(b["peers"], 1);
  ASSERT_EQ(j["peers"].size(), 1u);
  EXPECT_EQ(j["peers"][0]["id"], "local");
  EXPECT_EQ(j["peers"][0]["blocks"], json::array({0, 5}));
  ASSERT_EQ(j["requests"].size(), 1u);
  const json& req = j["requests"][0];
  EXPECT_EQ(req["status"], "done");
  EXPECT_EQ(req["completion_tokens"], 4);
  ASSERT_EQ(req["route"].size(), 1u);
  EXPECT_EQ(req["route"][0]["peer"], "local");
  EXPECT_EQ(req["route"][0]["blocks"], json::array({0, 5}));
  EXPECT_EQ(j["server"]["chat_template"], "plain");

  Response page = c.Get("/");
  ASSERT_EQ(page.result_int(), 200);
  EXPECT_EQ(page[http::field::content_type], "text/html; charset=utf-8");
  const std::string& html = page.body();
  EXPECT_NE(html.find("<!DOCTYPE html>"), std::string::npos);
  EXPECT_NE(html.find("fetch(\"/api/swarm\""), std::string::npos);
  // Self-contained: no external scripts, styles, fonts or images.
  for (const char* external : {"http://", "https://", "<link", "src=", "@import", "url("}) {
    EXPECT_EQ(html.find(external), std::string::npos) << external;
  }
  // Data reaches the page as text, never as markup.
  EXPECT_EQ(html.find("innerHTML"), std::string::npos);
}

}  // namespace
}  // namespace swarm::gateway
