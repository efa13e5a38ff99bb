// Who may use a `swarm api` process, tried against the real binary (in-process engine on
// stories260K, HTTP on a port the OS picks): API keys (flags and a key file) answered with 401 in
// OpenAI's error shape, CORS off unless an origin is allowed, and the per-client caps: one
// client's idle connections and queued generations do not lock the others out.
#include <sys/socket.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/subprocess.h"
#include "boost/asio.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "gateway/api_ready_line.h"
#include "gateway/http_server.h"
#include "gtest/gtest.h"
#include "http_test_client.h"
#include "nlohmann/json.hpp"
#include "support/files.h"
#include "support/shared_model.h"

namespace swarm::gateway {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using nlohmann::json;
using test_http::Client;
using test_http::Response;
using Clock = std::chrono::steady_clock;
using Headers = std::vector<std::pair<std::string, std::string>>;

constexpr auto kStartTimeout = std::chrono::seconds(60);

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string TempPath(const std::string& name) {
  static int counter = 0;
  return absl::StrCat(::testing::TempDir(), "swarm-gw-access-", ::getpid(), "-", counter++, "-",
                      name);
}

// One `swarm api` process in front of its in-process engine; killed when destroyed.
class ApiProcess {
 public:
  // Starts it and waits for its ready line; on failure the status carries its stderr.
  absl::Status Start(const std::vector<std::string>& extra_args) {
    std::vector<std::string> argv = {
        SWARM_BINARY, "api",         "-m",        test_support::kSharedModel,
        "--listen",   "127.0.0.1:0", "--backend", "reference"};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    log_path_ = TempPath("api.log");
    Subprocess::Options options;
    options.argv = argv;
    options.stderr_path = log_path_;
    auto process = Subprocess::Start(options);
    if (!process.ok()) return process.status();
    process_ = std::move(*process);
    auto line = process_->ReadLine(kStartTimeout);
    if (!line.ok()) {
      return absl::InternalError(
          absl::StrCat("swarm api did not start: ", line.status().message(), "\n", stderr_text()));
    }
    auto ready = ApiReadyLine::Parse(*line);
    if (!ready.ok()) {
      return absl::InternalError(absl::StrCat("not a ready line: ", *line, "\n", stderr_text()));
    }
    port_ = ready->port;
    return absl::OkStatus();
  }

  uint16_t port() const { return port_; }
  Subprocess& process() { return *process_; }
  std::string stderr_text() const { return test_support::ReadFile(log_path_); }

 private:
  std::unique_ptr<Subprocess> process_;
  std::string log_path_;
  uint16_t port_ = 0;
};

json ErrorOf(const Response& r) {
  json j = json::parse(r.body(), nullptr, false);
  EXPECT_TRUE(j.is_object() && j.contains("error")) << r.body();
  if (!j.is_object() || !j.contains("error")) return json::object();
  const json& e = j["error"];
  // OpenAI's shape: exactly these four keys.
  EXPECT_EQ(e.size(), 4u) << r.body();
  EXPECT_TRUE(e["message"].is_string()) << r.body();
  EXPECT_TRUE(e["type"].is_string()) << r.body();
  EXPECT_TRUE(e.contains("param")) << r.body();
  EXPECT_TRUE(e.contains("code")) << r.body();
  return e;
}

Response Get(uint16_t port, const std::string& target, const Headers& headers = {}) {
  Client c(port);
  return c.Send(http::verb::get, target, "", headers);
}

Response Complete(Client& c, const Headers& headers = {}) {
  return c.Send(http::verb::post, "/v1/completions",
                json{{"prompt", "Once"}, {"max_tokens", 4}, {"temperature", 0}}.dump(), headers);
}

Headers Bearer(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }

void ExpectUnauthorized(const Response& r) {
  EXPECT_EQ(r.result_int(), 401) << r.body();
  const json e = ErrorOf(r);
  EXPECT_EQ(e["type"], "invalid_request_error");
  EXPECT_EQ(e["code"], "invalid_api_key");
  EXPECT_TRUE(e["param"].is_null());
  EXPECT_EQ(r[http::field::www_authenticate], "Bearer");
}

TEST(GatewayAccessTest, ClientsAreAddressesAndIpv6Prefixes) {
  EXPECT_EQ(ClientKey("127.0.0.1"), "127.0.0.1");
  EXPECT_EQ(ClientKey("::ffff:192.0.2.7"), "192.0.2.7");
  // One host commonly holds a whole /64: its addresses are one client.
  EXPECT_EQ(ClientKey("2001:db8:1:2::1"), "2001:db8:1:2::/64");
  EXPECT_EQ(ClientKey("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
  EXPECT_NE(ClientKey("2001:db8:1:3::1"), ClientKey("2001:db8:1:2::1"));
  EXPECT_EQ(ClientKey("not an address"), "");
  EXPECT_TRUE(IsLoopbackAddress("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackAddress("127.1.2.3"));
  EXPECT_TRUE(IsLoopbackAddress("::1"));
  EXPECT_FALSE(IsLoopbackAddress("0.0.0.0"));
  EXPECT_FALSE(IsLoopbackAddress("::"));
  EXPECT_FALSE(IsLoopbackAddress("192.168.1.2"));
}

TEST(GatewayAccessTest, KeysAreRequiredWhenGiven) {
  ApiProcess api;
  ASSERT_TRUE(api.Start({"--api-key", "sk-first", "--api-key", "sk-second"}).ok())
      << api.stderr_text();
  const uint16_t port = api.port();

  ExpectUnauthorized(Get(port, "/v1/models"));
  Response wrong = Get(port, "/v1/models", Bearer("sk-firsX"));
  ExpectUnauthorized(wrong);
  EXPECT_EQ(wrong.body().find("sk-firsX"), std::string::npos) << "the key is echoed";
  ExpectUnauthorized(Get(port, "/v1/models", Bearer("sk-first-and-more")));
  ExpectUnauthorized(Get(port, "/v1/models", {{"Authorization", "Basic sk-first"}}));
  ExpectUnauthorized(Get(port, "/v1/models", {{"Authorization", "sk-first"}}));

  EXPECT_EQ(Get(port, "/v1/models", Bearer("sk-first")).result_int(), 200);
  {
    Client c(port);
    ExpectUnauthorized(Complete(c));
    Response r = Complete(c, Bearer("sk-second"));
    EXPECT_EQ(r.result_int(), 200) << r.body();
    EXPECT_EQ(json::parse(r.body())["object"], "text_completion");
  }
  // Everything that reveals or costs something needs the key; the health probe and the
  // dashboard's page (no data in it) do not.
  for (const char* target : {"/metrics", "/api/swarm", "/v1/models/stories260K", "/v1/nope"}) {
    ExpectUnauthorized(Get(port, target));
    EXPECT_NE(Get(port, target, Bearer("sk-first")).result_int(), 401) << target;
  }
  EXPECT_EQ(Get(port, "/health").result_int(), 200);
  EXPECT_EQ(Get(port, "/").result_int(), 200);
}

TEST(GatewayAccessTest, KeyFile) {
  const std::string path = TempPath("keys.txt");
  {
    std::ofstream out(path);
    out << "# the team's keys\n\n  sk-from-file  \nsk-other\n   # indented comment\n";
  }
  ApiProcess api;
  ASSERT_TRUE(api.Start({"--api-key-file", path}).ok()) << api.stderr_text();
  EXPECT_EQ(Get(api.port(), "/v1/models", Bearer("sk-from-file")).result_int(), 200);
  EXPECT_EQ(Get(api.port(), "/v1/models", Bearer("sk-other")).result_int(), 200);
  ExpectUnauthorized(Get(api.port(), "/v1/models", Bearer("# the team's keys")));
  ExpectUnauthorized(Get(api.port(), "/v1/models"));
}

TEST(GatewayAccessTest, UnreadableKeyFileIsAStartupError) {
  for (const std::string& file : {TempPath("missing.txt"), ::testing::TempDir()}) {
    ApiProcess api;
    EXPECT_FALSE(api.Start({"--api-key-file", file}).ok());
    auto code = api.process().Wait(std::chrono::seconds(30));
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 1);
    EXPECT_TRUE(absl::StrContains(api.stderr_text(), "cannot read the API key file"))
        << api.stderr_text();
  }
  const std::string empty = TempPath("empty-keys.txt");
  std::ofstream(empty) << "# nothing yet\n";
  ApiProcess api;
  EXPECT_FALSE(api.Start({"--api-key-file", empty}).ok());
  EXPECT_TRUE(absl::StrContains(api.stderr_text(), "holds no key")) << api.stderr_text();
}

TEST(GatewayAccessTest, NoKeysOnANonLoopbackAddressWarns) {
  // Port 0 on every address; the warning comes before it serves.
  std::vector<std::string> argv = {
      SWARM_BINARY, "api",       "-m",        test_support::kSharedModel,
      "--listen",   "0.0.0.0:0", "--backend", "reference"};
  const std::string log = TempPath("warn.log");
  Subprocess::Options options;
  options.argv = argv;
  options.stderr_path = log;
  auto process = Subprocess::Start(options);
  ASSERT_TRUE(process.ok()) << process.status();
  ASSERT_TRUE((*process)->ReadLine(kStartTimeout).ok()) << test_support::ReadFile(log);
  EXPECT_TRUE(absl::StrContains(test_support::ReadFile(log), "without --api-key"))
      << test_support::ReadFile(log);

  ApiProcess loopback;
  ASSERT_TRUE(loopback.Start({}).ok()) << loopback.stderr_text();
  EXPECT_FALSE(absl::StrContains(loopback.stderr_text(), "warning")) << loopback.stderr_text();
}

TEST(GatewayAccessTest, NoCorsUnlessAnOriginIsAllowed) {
  ApiProcess api;
  ASSERT_TRUE(api.Start({}).ok()) << api.stderr_text();
  Response plain = Get(api.port(), "/v1/models");
  EXPECT_EQ(plain.result_int(), 200);
  EXPECT_EQ(plain.count(http::field::access_control_allow_origin), 0u);
  // A page of another origin is refused outright, also for requests a browser sends without a
  // preflight, and a preflight gets no CORS headers.
  Response foreign = Get(api.port(), "/v1/models", {{"Origin", "http://evil.example"}});
  EXPECT_EQ(foreign.result_int(), 403);
  EXPECT_EQ(ErrorOf(foreign)["code"], "origin_not_allowed");
  EXPECT_EQ(foreign.count(http::field::access_control_allow_origin), 0u);
  Client c(api.port());
  Response preflight =
      c.Send(http::verb::options, "/v1/chat/completions", "",
             {{"Origin", "http://evil.example"}, {"Access-Control-Request-Method", "POST"}});
  EXPECT_EQ(preflight.result_int(), 403);
  EXPECT_EQ(preflight.count(http::field::access_control_allow_origin), 0u);
  // The gateway's own pages (the dashboard) are same-origin.
  const std::string self = absl::StrCat("http://127.0.0.1:", api.port());
  EXPECT_EQ(Get(api.port(), "/api/swarm",
                {{"Origin", self}, {"Host", absl::StrCat("127.0.0.1:", api.port())}})
                .result_int(),
            200);
}

TEST(GatewayAccessTest, AllowedOriginsAndPreflight) {
  ApiProcess api;
  ASSERT_TRUE(api.Start({"--cors-origin", "http://app.example:3000", "--cors-origin",
                         "https://other.example", "--api-key", "sk-k"})
                  .ok())
      << api.stderr_text();
  const uint16_t port = api.port();
  Response r = Get(port, "/v1/models",
                   {{"Origin", "http://app.example:3000"}, {"Authorization", "Bearer sk-k"}});
  EXPECT_EQ(r.result_int(), 200);
  EXPECT_EQ(r[http::field::access_control_allow_origin], "http://app.example:3000");
  EXPECT_TRUE(absl::StrContains(std::string(r[http::field::vary]), "Origin"));
  // The 401 carries the CORS headers too, so the page can read why.
  Response unauthorized = Get(port, "/v1/models", {{"Origin", "https://other.example"}});
  EXPECT_EQ(unauthorized.result_int(), 401);
  EXPECT_EQ(unauthorized[http::field::access_control_allow_origin], "https://other.example");

  // A browser's preflight carries no key and needs none.
  Client c(port);
  Response preflight =
      c.Send(http::verb::options, "/v1/chat/completions", "",
             {{"Origin", "http://app.example:3000"},
              {"Access-Control-Request-Method", "POST"},
              {"Access-Control-Request-Headers", "authorization, content-type, x-stainless-os"}});
  EXPECT_EQ(preflight.result_int(), 204);
  EXPECT_EQ(preflight[http::field::access_control_allow_origin], "http://app.example:3000");
  EXPECT_TRUE(
      absl::StrContains(std::string(preflight[http::field::access_control_allow_methods]), "POST"));
  const std::string allowed(preflight[http::field::access_control_allow_headers]);
  EXPECT_TRUE(absl::StrContains(allowed, "Authorization")) << allowed;
  EXPECT_TRUE(absl::StrContains(allowed, "x-stainless-os")) << allowed;
  EXPECT_TRUE(absl::StrContains(std::string(preflight[http::field::vary]), "Origin"));
  // Matching is exact: another port, scheme or a suffix is another origin.
  for (const char* origin :
       {"http://app.example", "https://app.example:3000", "http://app.example:3000.evil.example"}) {
    Response no = c.Send(http::verb::options, "/v1/completions", "",
                         {{"Origin", origin}, {"Access-Control-Request-Method", "POST"}});
    EXPECT_EQ(no.result_int(), 403) << origin;
    EXPECT_EQ(no.count(http::field::access_control_allow_origin), 0u) << origin;
  }

  ApiProcess any;
  ASSERT_TRUE(any.Start({"--cors-origin", "*"}).ok()) << any.stderr_text();
  Response star = Get(any.port(), "/v1/models", {{"Origin", "http://anything.example"}});
  EXPECT_EQ(star.result_int(), 200);
  EXPECT_EQ(star[http::field::access_control_allow_origin], "*");
}

// A raw connection from a chosen loopback address that sends nothing unless told.
struct RawConnection {
  RawConnection(net::io_context& ioc, uint16_t port, const std::string& from) : socket(ioc) {
    socket.open(tcp::v4());
    socket.bind(tcp::endpoint(net::ip::make_address(from), 0));
    socket.connect(tcp::endpoint(net::ip::address_v4::loopback(), port));
  }
  // Everything the server sends until it closes; false if it has not closed by `timeout` (the
  // socket's receive timeout).
  bool ReadToClose(std::string& received, std::chrono::seconds timeout) {
    const timeval tv{static_cast<time_t>(timeout.count()), 0};
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(socket.native_handle(), buf, sizeof buf, 0);
      if (n > 0) {
        received.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) return true;
      return errno == ECONNRESET;
    }
  }
  tcp::socket socket;
};

TEST(GatewayAccessTest, OneClientsIdleConnectionsDoNotLockOutAnother) {
  ApiProcess api;
  ASSERT_TRUE(api.Start({"--max-connections-per-client", "8", "--header-timeout", "30"}).ok())
      << api.stderr_text();
  const uint16_t port = api.port();
  // More idle connections than the server holds in all (512): the attack that locked everyone out.
  net::io_context ioc;
  std::vector<std::unique_ptr<RawConnection>> idle;
  for (int i = 0; i < 530; ++i) {
    idle.push_back(std::make_unique<RawConnection>(ioc, port, "127.0.0.1"));
  }
  // Another client is served at once.
  const auto start = Clock::now();
  {
    Client other(port, "127.0.0.2");
    EXPECT_EQ(other.Get("/v1/models").result_int(), 200);
    Response r = Complete(other);
    EXPECT_EQ(r.result_int(), 200) << r.body();
  }
  EXPECT_LT(SecondsSince(start), 5.0);
  // The first client's connections beyond its 8 were refused at once (429, then closed), long
  // before the 30 s header timeout closes the 8 it holds.
  const auto refused_start = Clock::now();
  for (size_t i = 8; i < idle.size(); ++i) {
    std::string received;
    ASSERT_TRUE(idle[i]->ReadToClose(received, std::chrono::seconds(10))) << "connection " << i;
    EXPECT_TRUE(received.empty() || absl::StartsWith(received, "HTTP/1.1 429")) << received;
  }
  EXPECT_LT(SecondsSince(refused_start), 10.0);
  // And a connection of its beyond the cap that asks something gets the reason.
  RawConnection extra(ioc, port, "127.0.0.1");
  const std::string request = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  beast::error_code ec;
  net::write(extra.socket, net::buffer(request), ec);
  std::string received;
  EXPECT_TRUE(extra.ReadToClose(received, std::chrono::seconds(10)));
  if (!received.empty()) {
    EXPECT_TRUE(absl::StartsWith(received, "HTTP/1.1 429")) << received;
    EXPECT_TRUE(absl::StrContains(received, "rate_limit_exceeded")) << received;
  }
  // Once it lets its idle connections go, it is served again.
  idle.clear();
  bool served = false;
  for (int attempt = 0; attempt < 200 && !served; ++attempt) {
    // The server notices the closes asynchronously; a refused attempt is retried.
    Client again(port);
    served = again.Get("/health").result_int() == 200;
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(served);
}

TEST(GatewayAccessTest, IdleConnectionsAreClosedByTheHeaderTimeout) {
  ApiProcess api;
  ASSERT_TRUE(api.Start({"--max-connections-per-client", "4", "--header-timeout", "0.5",
                         "--idle-timeout", "0.5"})
                  .ok())
      << api.stderr_text();
  net::io_context ioc;
  const auto start = Clock::now();
  std::vector<std::unique_ptr<RawConnection>> idle;
  for (int i = 0; i < 4; ++i)
    idle.push_back(std::make_unique<RawConnection>(ioc, api.port(), "127.0.0.1"));
  for (auto& c : idle) {
    std::string received;
    EXPECT_TRUE(c->ReadToClose(received, std::chrono::seconds(10)));
    EXPECT_EQ(received, "");
  }
  const double waited = SecondsSince(start);
  EXPECT_GE(waited, 0.4);
  EXPECT_LT(waited, 5.0);
  // The slots are free again; a keep-alive connection is closed once idle too.
  Client c(api.port());
  EXPECT_EQ(c.Get("/health").result_int(), 200);
  EXPECT_TRUE(c.WaitClosed());
}

// A streamed generation whose client does not read: the server's writes block once the socket
// buffers are full, so the generation stays running (or waiting to write) until the client
// leaves. A small receive buffer keeps the buffers small.
class StalledStream {
 public:
  StalledStream(net::io_context& ioc, uint16_t port) : socket_(ioc) {
    socket_.open(tcp::v4());
    socket_.set_option(net::socket_base::receive_buffer_size(4096));
    socket_.connect(tcp::endpoint(net::ip::address_v4::loopback(), port));
    http::request<http::string_body> req{http::verb::post, "/v1/completions", 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::content_type, "application/json");
    req.body() =
        json{{"prompt", ""}, {"max_tokens", 30000}, {"temperature", 0}, {"stream", true}}.dump();
    req.prepare_payload();
    http::write(socket_, req);
  }
  // The response's status line: the generation has been admitted and is running.
  std::string StatusLine() {
    std::string received;
    char ch;
    while (received.find("\r\n") == std::string::npos) {
      if (net::read(socket_, net::buffer(&ch, 1)) != 1) break;
      received.push_back(ch);
    }
    return received;
  }
  void Leave() {
    socket_.set_option(net::socket_base::linger(true, 0));
    socket_.close();
  }

 private:
  tcp::socket socket_;
};

TEST(GatewayAccessTest, QueuedGenerationsPerClientAreCapped) {
  ApiProcess api;
  ASSERT_TRUE(api.Start({"--max-queued-per-client", "1", "--concurrency", "2", "-c", "32768",
                         "--max-tokens-limit", "32000"})
                  .ok())
      << api.stderr_text();
  const uint16_t port = api.port();
  net::io_context ioc;
  StalledStream running(ioc, port);
  EXPECT_EQ(running.StatusLine().rfind("HTTP/1.1 200", 0), 0u);
  {
    Client same(port);
    Response r = Complete(same);
    EXPECT_EQ(r.result_int(), 429) << r.body();
    const json e = ErrorOf(r);
    EXPECT_EQ(e["type"], "requests");
    EXPECT_EQ(e["code"], "rate_limit_exceeded");
    EXPECT_TRUE(absl::StrContains(e["message"].get<std::string>(), "per client")) << e;
    EXPECT_EQ(r[http::field::retry_after], "1");
    // Cheap requests are not generations and still pass.
    EXPECT_EQ(same.Get("/v1/models").result_int(), 200);
  }
  // Another client is admitted while the first is at its cap. (The in-process engine runs one
  // generation at a time, so its answer comes once the first client's generation ends.)
  const auto start = Clock::now();
  EXPECT_EQ(Get(port, "/v1/models").result_int(), 200);
  Response other_answer;
  std::thread other([&] {
    Client other(port, "127.0.0.2");
    other_answer = Complete(other);
  });
  // Polled: the gateway has no event to wait on over HTTP.
  bool admitted = false;
  while (!admitted && SecondsSince(start) < 30) {
    Client probe(port, "127.0.0.3");
    admitted = json::parse(probe.Get("/api/swarm").body())["server"]["active_generations"] == 2;
    if (!admitted) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(admitted);
  // When the first client leaves, its generation ends, the other's runs, and the first client's
  // slot is free again.
  running.Leave();
  other.join();
  EXPECT_EQ(other_answer.result_int(), 200) << other_answer.body();
  EXPECT_LT(SecondsSince(start), 30.0);
  Client again(port);
  Response r = Complete(again);
  EXPECT_EQ(r.result_int(), 200) << r.body();
}

}  // namespace
}  // namespace swarm::gateway
