// ParseHttpRequests: the server's parser limits, error statuses and request conversion over a
// buffer of client bytes (what the fuzz target drives), on well-formed and hostile requests.
#include <gtest/gtest.h>

#include <string>

#include "gateway/http_request.h"

namespace swarm::gateway {
namespace {

TEST(HttpRequestParse, PipelinedRequestsUntilConnectionClose) {
  const std::string bytes =
      "GET /v1/models?x=1 HTTP/1.1\r\nHost: a\r\nX-One: 1\r\n\r\n"
      "POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
      "GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
      "GET /after-close HTTP/1.1\r\nHost: a\r\n\r\n";
  const ParsedRequests parsed = ParseHttpRequests(bytes, HttpServerOptions{});
  EXPECT_EQ(parsed.error_status, 0) << parsed.error_message;
  ASSERT_EQ(parsed.requests.size(), 3u);
  EXPECT_EQ(parsed.requests[0].method, "GET");
  EXPECT_EQ(parsed.requests[0].target, "/v1/models?x=1");
  EXPECT_EQ(parsed.requests[0].path, "/v1/models");
  ASSERT_EQ(parsed.requests[0].headers.size(), 2u);
  EXPECT_EQ(parsed.requests[0].headers[1].first, "X-One");
  EXPECT_EQ(parsed.requests[1].method, "POST");
  EXPECT_EQ(parsed.requests[1].body, "hello");
  EXPECT_EQ(parsed.requests[2].path, "/health");
  EXPECT_EQ(parsed.consumed, bytes.find("GET /after-close"));
}

TEST(HttpRequestParse, ChunkedBody) {
  const ParsedRequests parsed = ParseHttpRequests(
      "POST /v1/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
      HttpServerOptions{});
  ASSERT_EQ(parsed.requests.size(), 1u) << parsed.error_message;
  EXPECT_EQ(parsed.requests[0].body, "abcde");
}

TEST(HttpRequestParse, IncompleteRequestWaitsForMore) {
  const std::string bytes = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc";
  const ParsedRequests parsed = ParseHttpRequests(bytes, HttpServerOptions{});
  EXPECT_TRUE(parsed.requests.empty());
  EXPECT_EQ(parsed.error_status, 0);
  EXPECT_EQ(parsed.consumed, 0u);
  EXPECT_EQ(ParseHttpRequests("GET / HTTP/1.1\r\nHo", HttpServerOptions{}).error_status, 0);
}

TEST(HttpRequestParse, LimitsAndMalformedRequests) {
  HttpServerOptions options;
  options.max_header_bytes = 64;
  options.max_body_bytes = 4;
  ParsedRequests parsed =
      ParseHttpRequests("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", options);
  EXPECT_EQ(parsed.error_status, 413);
  EXPECT_EQ(parsed.error_message, "Request body too large (the limit is 4 bytes).");
  parsed = ParseHttpRequests(
      "GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + std::string(100, 'x') + "\r\n\r\n", options);
  EXPECT_EQ(parsed.error_status, 431);
  for (const char* bad : {"GET / HTTX/1.1\r\n\r\n", "\x01\x02\x03 / HTTP/1.1\r\n\r\n",
                          "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                          "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"}) {
    parsed = ParseHttpRequests(bad, HttpServerOptions{});
    EXPECT_EQ(parsed.error_status, 400) << bad;
    EXPECT_TRUE(parsed.requests.empty()) << bad;
  }
}

}  // namespace
}  // namespace swarm::gateway
