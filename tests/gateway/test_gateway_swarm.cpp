// The gateway as a user meets it: a `swarm api` process in front of a real local swarm of three
// `swarm serve` processes (stories260K split 0:2, 2:4, 4:5 on one DHT), driven over HTTP. Every
// endpoint, streamed and not; greedy text must be the reference; bad, slow and vanished clients
// get an HTTP error or a clean close while the gateway keeps serving the others.
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "local_swarm.h"

namespace swarm::gateway::swarm_test {
namespace {

json ErrorOf(const Response& r) {
  json j = json::parse(r.body(), nullptr, false);
  EXPECT_TRUE(j.is_object() && j.contains("error")) << r.body();
  if (!j.is_object() || !j.contains("error")) return json::object();
  const json& e = j["error"];
  EXPECT_TRUE(e["message"].is_string()) << r.body();
  EXPECT_TRUE(e["type"].is_string()) << r.body();
  EXPECT_TRUE(e.contains("param")) << r.body();
  EXPECT_TRUE(e.contains("code")) << r.body();
  return e;
}

// The text, finish reason and usage of a streamed completion or chat completion.
struct Streamed {
  std::string text;
  std::string finish_reason;
  json usage;
  bool done = false;  // ended with data: [DONE]
};

Streamed ParseStream(const Response& r, bool chat) {
  Streamed s;
  const std::vector<std::string> events = SseData(r.body());
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i] == "[DONE]") {
      s.done = i + 1 == events.size();
      continue;
    }
    const json chunk = json::parse(events[i]);
    EXPECT_EQ(chunk["object"], chat ? "chat.completion.chunk" : "text_completion");
    if (chunk.contains("usage") && chunk["choices"].empty()) {
      s.usage = chunk["usage"];
      continue;
    }
    const json& choice = chunk["choices"][0];
    const json& piece = chat ? choice["delta"]["content"] : choice["text"];
    if (piece.is_string()) s.text += piece.get<std::string>();
    if (!choice["finish_reason"].is_null()) s.finish_reason = choice["finish_reason"];
  }
  return s;
}

// The value of one series in Prometheus text ("name{labels}"), 0 when absent.
double Metric(const std::string& text, const std::string& series) {
  const std::string key = "\n" + series + " ";
  const size_t at = text.find(key);
  return at == std::string::npos ? 0 : std::stod(text.substr(at + key.size()));
}

std::set<std::string> PeerIds(const LocalSwarm& swarm) {
  std::set<std::string> ids;
  for (const PeerProcess& p : swarm.peers()) ids.insert(p.ready.peer_id);
  return ids;
}

constexpr int kCacheTokens = 600;

class GatewaySwarmTest : public ::testing::Test {
 protected:
  // One swarm per test program (CTest runs every test in a process of its own).
  static void SetUpTestSuite() {
    swarm_ = new LocalSwarm();
    LocalSwarmOptions options;
    // A cache budget for one long session (and a bit): a session the gateway fails to close
    // makes the next long request fail. --cache-tokens is an f32 cache's worth of memory: half
    // of kCacheTokens holds kCacheTokens positions of the default f16 cache.
    options.serve_args = {"--cache-tokens", absl::StrCat(kCacheTokens / 2)};
    options.api_args = {"--request-timeout", "0.5", "--header-timeout", "0.5"};
    start_status_ = swarm_->Start(options);
  }
  static void TearDownTestSuite() {
    delete swarm_;
    swarm_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(start_status_.ok()) << start_status_; }
  void TearDown() override {
    if (HasFailure()) std::cerr << swarm_->Logs();
  }

  uint16_t port() const { return swarm_->api_port(); }

  static LocalSwarm* swarm_;
  static absl::Status start_status_;
};

LocalSwarm* GatewaySwarmTest::swarm_ = nullptr;
absl::Status GatewaySwarmTest::start_status_;

TEST_F(GatewaySwarmTest, ListsTheModel) {
  Client c(port());
  Response r = c.Get("/v1/models");
  ASSERT_EQ(r.result_int(), 200) << r.body();
  EXPECT_EQ(r[http::field::content_type], "application/json");
  const json j = json::parse(r.body());
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 1u);
  // Over the swarm the id is the file's stem, as in-process.
  EXPECT_EQ(j["data"][0]["id"], "stories260K");
  EXPECT_EQ(j["data"][0]["object"], "model");
  EXPECT_TRUE(j["data"][0]["created"].is_number_integer());

  r = c.Get("/v1/models/stories260K");
  ASSERT_EQ(r.result_int(), 200) << r.body();
  EXPECT_EQ(json::parse(r.body())["id"], "stories260K");
  r = c.Get("/v1/models/gpt-4");
  EXPECT_EQ(r.result_int(), 404);
  EXPECT_EQ(ErrorOf(r)["code"], "model_not_found");
  EXPECT_EQ(c.Get("/health").result_int(), 200);
}

TEST_F(GatewaySwarmTest, GreedyCompletionThroughThreePeersIsTheReference) {
  Client c(port());
  Response r =
      c.Post("/v1/completions",
             {{"model", "stories260K"}, {"prompt", ""}, {"max_tokens", 200}, {"temperature", 0}});
  ASSERT_EQ(r.result_int(), 200) << r.body();
  const json j = json::parse(r.body());
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], "stories260K");
  ASSERT_EQ(j["choices"].size(), 1u);
  EXPECT_EQ(j["choices"][0]["text"], ReferenceText());
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 1);  // BOS
  EXPECT_EQ(j["usage"]["completion_tokens"], 200);
  EXPECT_EQ(j["usage"]["total_tokens"], 201);

  // The dashboard's data shows the route: the three peers in block order.
  const json s = swarm_->SwarmJson();
  ASSERT_GE(s["requests"].size(), 1u) << s.dump();  // the newest first
  const json& req = s["requests"][0];
  EXPECT_EQ(req["status"], "done");
  EXPECT_EQ(req["completion_tokens"], 200);
  EXPECT_EQ(req["failovers"], 0);
  ASSERT_EQ(req["route"].size(), 3u) << req.dump();
  for (size_t i = 0; i < 3; ++i) {
    const PeerProcess& peer = swarm_->peers()[i];
    EXPECT_EQ(req["route"][i]["peer"], peer.ready.peer_id);
    EXPECT_EQ(req["route"][i]["address"], peer.ready.address);
    EXPECT_EQ(absl::StrCat(req["route"][i]["blocks"][0].get<int>(), ":",
                           req["route"][i]["blocks"][1].get<int>()),
              peer.ready.Blocks());
  }
}

TEST_F(GatewaySwarmTest, StreamedCompletionIsTheReference) {
  Client c(port());
  Response r = c.Post("/v1/completions", {{"prompt", ""},
                                          {"max_tokens", 200},
                                          {"temperature", 0},
                                          {"stream", true},
                                          {"stream_options", {{"include_usage", true}}}});
  ASSERT_EQ(r.result_int(), 200) << r.body();
  EXPECT_EQ(r[http::field::content_type], "text/event-stream");
  EXPECT_TRUE(r.chunked());
  const Streamed s = ParseStream(r, /*chat=*/false);
  EXPECT_TRUE(s.done) << r.body();
  EXPECT_EQ(s.text, ReferenceText());
  EXPECT_EQ(s.finish_reason, "length");
  EXPECT_EQ(s.usage["completion_tokens"], 200) << s.usage.dump();

  // A prompt continues the reference too: the first words give the rest, space included.
  const std::string ref = ReferenceText();
  const std::string prompt = "Once upon a time, there was";
  ASSERT_EQ(ref.rfind(prompt, 0), 0u);
  r = c.Post("/v1/completions",
             {{"prompt", prompt}, {"max_tokens", 8}, {"temperature", 0}, {"stream", true}});
  ASSERT_EQ(r.result_int(), 200) << r.body();
  const Streamed cont = ParseStream(r, false);
  EXPECT_FALSE(cont.text.empty());
  EXPECT_EQ(ref.substr(prompt.size(), cont.text.size()), cont.text);
}

TEST_F(GatewaySwarmTest, ChatCompletionWholeAndStreamedFollowThePlainTemplate) {
  Client c(port());
  const json messages = json::array({{{"role", "user"}, {"content", "Tell me a story."}}});
  const json request = {
      {"model", "stories260K"}, {"messages", messages}, {"max_tokens", 40}, {"temperature", 0}};
  Response r = c.Post("/v1/chat/completions", request);
  ASSERT_EQ(r.result_int(), 200) << r.body();
  const json j = json::parse(r.body());
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  const std::string content = j["choices"][0]["message"]["content"];
  const std::string finish = j["choices"][0]["finish_reason"];
  EXPECT_FALSE(content.empty());

  json streamed_request = request;
  streamed_request["stream"] = true;
  r = c.Post("/v1/chat/completions", streamed_request);
  ASSERT_EQ(r.result_int(), 200) << r.body();
  const Streamed s = ParseStream(r, /*chat=*/true);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.text, content);
  EXPECT_EQ(s.finish_reason, finish);

  // stories260K has no chat template: the gateway uses the plain one, so the chat is the
  // completion of "User: ...\nAssistant:" (BOS first), cut at the next "\nUser:", without the
  // space the answer starts with.
  r = c.Post("/v1/completions", {{"prompt", "User: Tell me a story.\nAssistant:"},
                                 {"max_tokens", 40},
                                 {"temperature", 0},
                                 {"stop", "\nUser:"}});
  ASSERT_EQ(r.result_int(), 200) << r.body();
  const json k = json::parse(r.body());
  std::string text = k["choices"][0]["text"];
  text.erase(0, text.find_first_not_of(' '));
  EXPECT_EQ(content, text);
  EXPECT_EQ(j["usage"]["prompt_tokens"], k["usage"]["prompt_tokens"]);
}

TEST_F(GatewaySwarmTest, ConcurrentClientsGetTheirOwnAnswers) {
  // Greedy, so each prompt has one answer, whatever else runs through the peers at the time.
  const std::vector<std::string> prompts = {"Lily", "Once upon a time", "The dog", "Tom"};
  std::vector<std::string> expected;
  {
    Client c(port());
    for (const std::string& p : prompts) {
      Response r =
          c.Post("/v1/completions", {{"prompt", p}, {"max_tokens", 24}, {"temperature", 0}});
      ASSERT_EQ(r.result_int(), 200) << r.body();
      expected.push_back(json::parse(r.body())["choices"][0]["text"]);
    }
  }
  constexpr int kClients = 6;
  std::vector<std::string> got(kClients);
  std::vector<int> status(kClients);
  std::vector<std::thread> threads;
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&, t] {
      // Each from its own address: the gateway caps what one address runs at once.
      Client c(port(), "127.0.0." + std::to_string(10 + t));
      const bool stream = t % 2 == 1;
      Response r = c.Post("/v1/completions", {{"prompt", prompts[t % prompts.size()]},
                                              {"max_tokens", 24},
                                              {"temperature", 0},
                                              {"stream", stream}});
      status[t] = r.result_int();
      if (status[t] != 200) return;
      got[t] = stream ? ParseStream(r, false).text
                      : json::parse(r.body())["choices"][0]["text"].get<std::string>();
    });
  }
  for (std::thread& t : threads) t.join();
  for (int t = 0; t < kClients; ++t) {
    EXPECT_EQ(status[t], 200) << t;
    EXPECT_EQ(got[t], expected[t % prompts.size()]) << "client " << t;
  }
}

TEST_F(GatewaySwarmTest, DashboardAndSwarmJsonShowThePeersAndBlocks) {
  Client c(port());
  const json s = swarm_->SwarmJson();
  EXPECT_EQ(s["model"]["id"], "stories260K");
  EXPECT_EQ(s["model"]["n_blocks"], 5);
  ASSERT_EQ(s["blocks"].size(), 5u);
  for (const json& b : s["blocks"]) {
    EXPECT_EQ(b["peers"], 1) << b.dump();
    EXPECT_GT(b["throughput"].get<double>(), 0) << b.dump();
  }
  ASSERT_EQ(s["peers"].size(), 3u) << s.dump();
  std::set<std::string> seen;
  for (const json& p : s["peers"]) {
    const std::string id = p["id"];
    seen.insert(id);
    for (const PeerProcess& peer : swarm_->peers()) {
      if (peer.ready.peer_id != id) continue;
      EXPECT_EQ(p["address"], peer.ready.address);
      EXPECT_EQ(absl::StrCat(p["blocks"][0].get<int>(), ":", p["blocks"][1].get<int>()),
                peer.ready.Blocks());
    }
    EXPECT_EQ(p["state"], "online");
    EXPECT_GT(p["throughput"].get<double>(), 0);
    EXPECT_GT(p["cache_tokens_left"].get<int64_t>(), 0);
    // Bytes: --cache-tokens is an f32 cache's worth of memory (stories260K: 32 key and 32 value
    // dims per block and position, 256 bytes in f32); the default f16 cache takes 128 bytes a
    // position and block.
    const int64_t n_blocks = p["blocks"][1].get<int64_t>() - p["blocks"][0].get<int64_t>();
    EXPECT_EQ(p["cache_bytes_total"].get<int64_t>(), int64_t{kCacheTokens / 2} * n_blocks * 256)
        << p.dump();
    EXPECT_EQ(p["cache_bytes_left"].get<int64_t>(),
              p["cache_tokens_left"].get<int64_t>() * n_blocks * 128)
        << p.dump();
  }
  EXPECT_EQ(seen, PeerIds(*swarm_));
  EXPECT_EQ(s["server"]["chat_template"], "plain");

  Response page = c.Get("/");
  ASSERT_EQ(page.result_int(), 200);
  EXPECT_EQ(page[http::field::content_type], "text/html; charset=utf-8");
  EXPECT_NE(page.body().find("<!DOCTYPE html>"), std::string::npos);
  EXPECT_NE(page.body().find("fetch(\"/api/swarm\""), std::string::npos);
  // No CORS without --cors-origin: pages of other origins cannot read the swarm's state.
  Response cors = c.Get("/api/swarm");
  EXPECT_EQ(cors.count(http::field::access_control_allow_origin), 0u);
}

TEST_F(GatewaySwarmTest, MetricsCountRequestsTokensAndPeerSteps) {
  Client c(port());
  const std::string before = c.Get("/metrics").body();
  ASSERT_EQ(c.Post("/v1/completions", {{"prompt", "Lily"}, {"max_tokens", 12}}).result_int(), 200);
  Response stream = c.Post(
      "/v1/chat/completions",
      {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 5}, {"stream", true}});
  ASSERT_EQ(stream.result_int(), 200);
  ASSERT_EQ(c.Get("/v1/nope").result_int(), 404);
  Response r = c.Get("/metrics");
  ASSERT_EQ(r.result_int(), 200);
  EXPECT_EQ(r[http::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
  const std::string& m = r.body();
  auto delta = [&](const std::string& series) {
    return Metric(m, series) - Metric(before, series);
  };
  EXPECT_EQ(delta("swarm_http_requests_total{endpoint=\"completions\",status=\"200\"}"), 1) << m;
  EXPECT_EQ(delta("swarm_http_requests_total{endpoint=\"chat_completions\",status=\"200\"}"), 1);
  EXPECT_EQ(delta("swarm_http_requests_total{endpoint=\"other\",status=\"404\"}"), 1);
  EXPECT_EQ(delta("swarm_time_to_first_token_seconds_count"), 2);
  // Tokens: 12, and at most 5 for the chat (it may end early).
  EXPECT_GE(delta("swarm_generated_tokens_total"), 13);
  EXPECT_LE(delta("swarm_generated_tokens_total"), 17);
  EXPECT_EQ(Metric(m, "swarm_failovers_total"), 0);
  EXPECT_EQ(Metric(m, "swarm_peers{state=\"online\"}"), 3) << m;
  for (int b = 0; b < 5; ++b) {
    EXPECT_EQ(Metric(m, absl::StrCat("swarm_block_peers{block=\"", b, "\"}")), 1) << b;
  }
  for (const PeerProcess& p : swarm_->peers()) {
    SCOPED_TRACE(p.ready.Blocks());
    // Both generations stepped through every peer.
    EXPECT_EQ(delta(absl::StrCat("swarm_peer_step_latency_seconds_count{peer=\"", p.ready.peer_id,
                                 "\"}")),
              2)
        << m;
    EXPECT_GT(
        Metric(m, absl::StrCat("swarm_peer_cache_tokens_left{peer=\"", p.ready.peer_id, "\"}")), 0);
    // The same cache in bytes: f16 positions of 128 bytes per block (test above).
    const int64_t n_blocks = p.ready.last_block - p.ready.first_block;
    EXPECT_EQ(
        Metric(m, absl::StrCat("swarm_peer_cache_bytes_left{peer=\"", p.ready.peer_id, "\"}")),
        Metric(m, absl::StrCat("swarm_peer_cache_tokens_left{peer=\"", p.ready.peer_id, "\"}")) *
            static_cast<double>(n_blocks * 128))
        << m;
    EXPECT_EQ(
        Metric(m, absl::StrCat("swarm_peer_cache_bytes_total{peer=\"", p.ready.peer_id, "\"}")),
        static_cast<double>(int64_t{kCacheTokens / 2} * n_blocks * 256))
        << m;
    // One peer per span: no replica to check its steps against.
    const std::string span =
        absl::StrCat("{span=\"", p.ready.first_block, "..", p.ready.last_block - 1, "\"}");
    EXPECT_GT(Metric(m, "swarm_unverified_steps_total" + span), 0) << m;
    EXPECT_EQ(Metric(m, "swarm_verified_steps_total" + span), 0) << m;
  }
  EXPECT_EQ(Metric(m, "swarm_peers_banned_total"), 0) << m;
  for (const char* family : {"# TYPE swarm_token_latency_seconds histogram\n",
                             "# TYPE swarm_peer_step_latency_seconds histogram\n",
                             "# TYPE swarm_bytes_sent_total counter\n"}) {
    EXPECT_NE(m.find(family), std::string::npos) << family;
  }
}

TEST_F(GatewaySwarmTest, BadRequestsGetOpenAiErrorsAndTheGatewayKeepsServing) {
  Client c(port());
  const std::string before = c.Get("/metrics").body();
  struct Case {
    const char* name;
    std::string target;
    std::string body;
    const char* param;  // nullptr: param is null
  };
  const std::vector<Case> cases = {
      {"malformed json", "/v1/completions", "{\"prompt\": \"x\",", nullptr},
      {"truncated string", "/v1/chat/completions", "{\"messages\": [{\"role\": \"us", nullptr},
      {"not json at all", "/v1/completions", "prompt=hello&max_tokens=3", nullptr},
      {"body not an object", "/v1/completions", "\"hello\"", "body"},
      {"prompt wrong type", "/v1/completions", R"({"prompt": {"text": "a"}})", "prompt"},
      {"max_tokens string", "/v1/completions", R"({"prompt": "a", "max_tokens": "3"})",
       "max_tokens"},
      {"temperature string", "/v1/completions", R"({"prompt": "a", "temperature": "hot"})",
       "temperature"},
      {"stream number", "/v1/chat/completions",
       R"({"messages": [{"role": "user", "content": "hi"}], "stream": 1})", "stream"},
      {"messages not a list", "/v1/chat/completions", R"({"messages": "hi"})", "messages"},
      {"message without role", "/v1/chat/completions", R"({"messages": [{"content": "hi"}]})",
       "messages[0].role"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    Response r = c.Send(http::verb::post, k.target, k.body);
    EXPECT_EQ(r.result_int(), 400) << r.body();
    const json e = ErrorOf(r);
    EXPECT_EQ(e["type"], "invalid_request_error") << r.body();
    if (k.param == nullptr) {
      EXPECT_TRUE(e["param"].is_null()) << r.body();
    } else {
      EXPECT_EQ(e["param"], k.param) << r.body();
    }
    EXPECT_TRUE(r.keep_alive());  // a bad body is no reason to drop the connection
  }
  // Unknown fields are ignored, as OpenAI does, at the top level and inside messages.
  Response ok = c.Post("/v1/chat/completions",
                       {{"messages", {{{"role", "user"}, {"content", "hi"}, {"name", "tom"}}}},
                        {"max_tokens", 2},
                        {"logit_bias", json::object()},
                        {"some_future_field", {{"x", 1}}}});
  EXPECT_EQ(ok.result_int(), 200) << ok.body();

  {
    // A body over the limit (1 MiB): 413 before it is read, then the connection closes.
    Client big(port());
    const std::string huge = "{\"prompt\": \"" + std::string(3 << 20, 'a') + "\"}";
    Response r = big.Send(http::verb::post, "/v1/completions", huge);
    EXPECT_EQ(r.result_int(), 413);
    EXPECT_EQ(ErrorOf(r)["code"], "request_too_large");
    EXPECT_FALSE(r.keep_alive());
  }
  {
    // A Content-Length that announces too much is refused before any byte of the body.
    Client liar(port());
    net::write(liar.socket(), net::buffer(std::string("POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                                                      "Content-Length: 999999999999\r\n\r\n")));
    Response r;
    http::read(liar.socket(), liar.buffer(), r);
    EXPECT_EQ(r.result_int(), 413);
  }
  {
    Client headers(port());
    Response r = headers.Send(http::verb::get, "/health", "", {{"X-Big", std::string(64000, 'x')}});
    EXPECT_EQ(r.result_int(), 431);
  }
  {
    // Not HTTP at all.
    Client garbage(port());
    net::write(garbage.socket(), net::buffer(std::string("\x16\x03\x01\x02\x00garbage\r\n\r\n")));
    Response r;
    beast::error_code ec;
    http::read(garbage.socket(), garbage.buffer(), r, ec);
    if (!ec) {
      EXPECT_EQ(r.result_int(), 400);
    }
    EXPECT_TRUE(garbage.WaitClosed());
  }
  // The gateway still gives the reference.
  Response r = c.Post("/v1/completions", {{"prompt", ""}, {"max_tokens", 200}, {"temperature", 0}});
  ASSERT_EQ(r.result_int(), 200) << r.body();
  EXPECT_EQ(json::parse(r.body())["choices"][0]["text"], ReferenceText());
  const std::string m = c.Get("/metrics").body();
  auto delta = [&](const std::string& series) {
    return Metric(m, series) - Metric(before, series);
  };
  EXPECT_EQ(delta("swarm_http_requests_total{endpoint=\"completions\",status=\"400\"}"), 6);
  EXPECT_EQ(delta("swarm_http_requests_total{endpoint=\"chat_completions\",status=\"400\"}"), 4);
  EXPECT_EQ(delta("swarm_http_requests_total{endpoint=\"other\",status=\"413\"}"), 2);
  EXPECT_EQ(delta("swarm_http_requests_total{endpoint=\"other\",status=\"431\"}"), 1);
}

TEST_F(GatewaySwarmTest, SlowClientIsClosedWhileOthersAreServed) {
  // The gateway runs with --header-timeout 0.5 and --request-timeout 0.5: headers and bodies
  // dribbled forever are cut off.
  Client slow(port());
  const std::string partial = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le";
  for (char ch : partial) net::write(slow.socket(), net::buffer(&ch, 1));
  // A body that stops half way is cut off too.
  Client stalled(port());
  net::write(stalled.socket(),
             net::buffer(std::string("POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                                     "Content-Length: 100\r\n\r\n{\"prompt\": ")));
  const auto start = std::chrono::steady_clock::now();
  // How long after `start` the server closed each of them.
  auto closed_after = [start](Client& c, double& seconds) {
    return std::thread([&c, &seconds, start] {
      EXPECT_TRUE(c.WaitClosed());
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    });
  };
  double slow_s = -1, stalled_s = -1;
  std::thread slow_watch = closed_after(slow, slow_s);
  std::thread stalled_watch = closed_after(stalled, stalled_s);

  // Meanwhile a well-behaved client is served.
  Client other(port());
  Response r = other.Post("/v1/completions", {{"prompt", ""}, {"max_tokens", 20}});
  EXPECT_EQ(r.result_int(), 200) << r.body();
  slow_watch.join();
  stalled_watch.join();
  for (double s : {slow_s, stalled_s}) {
    EXPECT_GE(s, 0.4);
    EXPECT_LT(s, 5.0);
  }
  // Its connection is still open.
  EXPECT_EQ(other.Get("/health").result_int(), 200);
}

TEST_F(GatewaySwarmTest, VanishedClientsCancelTheirGenerationsAndCloseTheirSessions) {
  const std::string metrics_before = Client(port()).Get("/metrics").body();
  const json before = swarm_->SwarmJson();
  const std::string newest_before = before["requests"].empty() ? "" : before["requests"][0]["id"];
  // Each long request reserves 1 + 500 tokens of every peer's 600: it can only run once the
  // sessions of the one before are closed.
  const json long_request = {{"prompt", ""}, {"max_tokens", 500}, {"temperature", 0}};
  auto newest_is = [&](const std::string& after_id, const char* status) {
    const json s = swarm_->WaitForSwarm([&](const json& j) {
      return !j["requests"].empty() && j["requests"][0]["id"] != after_id &&
             j["requests"][0]["status"] == status;
    });
    EXPECT_EQ(s["requests"][0]["status"], status) << s.dump();
    return s["requests"][0];
  };

  // Streamed: the client reads the first tokens, then is killed (RST).
  {
    Client c(port());
    json streamed = long_request;
    streamed["stream"] = true;
    http::request<http::string_body> req{http::verb::post, "/v1/completions", 11};
    req.set(http::field::host, "127.0.0.1");
    req.body() = streamed.dump();
    req.prepare_payload();
    http::write(c.socket(), req);
    // Up to the first event, or the whole answer if it is not a stream.
    std::string received;
    char buf[4096];
    beast::error_code ec;
    while (!ec && received.find("data: ") == std::string::npos &&
           !(received.find("\r\n\r\n") != std::string::npos &&
             received.rfind("HTTP/1.1 200", 0) != 0 && received.find("}}") != std::string::npos)) {
      received.append(buf, c.socket().read_some(net::buffer(buf), ec));
    }
    ASSERT_EQ(received.rfind("HTTP/1.1 200", 0), 0u) << received;
    c.socket().set_option(net::socket_base::linger(true, 0));
  }
  const json first = newest_is(newest_before, "cancelled");
  EXPECT_LT(first["completion_tokens"].get<int>(), 500) << first.dump();

  // Not streamed: the client leaves while it runs, before any byte of the answer.
  {
    Client c(port());
    http::request<http::string_body> req{http::verb::post, "/v1/completions", 11};
    req.set(http::field::host, "127.0.0.1");
    req.body() = long_request.dump();
    req.prepare_payload();
    http::write(c.socket(), req);
    newest_is(first["id"], "running");
  }
  const json second = newest_is(first["id"], "cancelled");
  EXPECT_LT(second["completion_tokens"].get<int>(), 500) << second.dump();

  Client c(port());
  const std::string m = c.Get("/metrics").body();
  const std::string cancelled =
      "swarm_http_requests_total{endpoint=\"completions\",status=\"499\"}";
  EXPECT_EQ(Metric(m, cancelled) - Metric(metrics_before, cancelled), 2) << m;
  // The peers' caches are free again: a long request runs to its end, greedy as ever.
  Response r = c.Post("/v1/completions", long_request);
  ASSERT_EQ(r.result_int(), 200) << r.body();
  const json j = json::parse(r.body());
  EXPECT_EQ(j["usage"]["completion_tokens"], 500);
  EXPECT_EQ(j["choices"][0]["text"].get<std::string>().substr(0, ReferenceText().size()),
            ReferenceText());
}

}  // namespace
}  // namespace swarm::gateway::swarm_test
