#include "transport/http_range_client.h"

#include <charconv>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "base/status_macros.h"
#include "boost/asio.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"

namespace swarm::transport {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

constexpr std::string_view kHttp = "http://";
constexpr std::string_view kHttps = "https://";

bool StartsWithNoCase(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    const char c = text[i];
    if ((c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c) != prefix[i]) return false;
  }
  return true;
}

bool ConsumePrefix(std::string_view* text, std::string_view prefix) {
  if (text->substr(0, prefix.size()) != prefix) return false;
  text->remove_prefix(prefix.size());
  return true;
}

bool ParseU64(std::string_view s, uint64_t& out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// "bytes FIRST-LAST/TOTAL" (TOTAL may be '*', which we do not accept: we need the size).
struct ContentRange {
  uint64_t first = 0, last = 0, total = 0;
};
std::optional<ContentRange> ParseContentRange(std::string_view v) {
  if (!ConsumePrefix(&v, "bytes ")) return std::nullopt;
  const size_t dash = v.find('-'), slash = v.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash) {
    return std::nullopt;
  }
  ContentRange r;
  if (!ParseU64(v.substr(0, dash), r.first) ||
      !ParseU64(v.substr(dash + 1, slash - dash - 1), r.last) ||
      !ParseU64(v.substr(slash + 1), r.total) || r.first > r.last || r.last >= r.total) {
    return std::nullopt;
  }
  return r;
}

std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 120)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  return out;
}

}  // namespace

std::string HttpUrl::ToString() const {
  return absl::StrCat(ToAbsl(kHttp), host, port == "80" ? "" : absl::StrCat(":", port), target);
}

bool IsHttpUrl(std::string_view text) {
  return StartsWithNoCase(text, kHttp) || StartsWithNoCase(text, kHttps);
}

absl::StatusOr<HttpUrl> HttpUrl::Parse(std::string_view url) {
  if (StartsWithNoCase(url, kHttps)) {
    return absl::UnimplementedError(
        absl::StrCat("https:// is not supported by this build (no TLS): ", Printable(url),
                     "; use an http:// mirror or download the file and pass -m FILE"));
  }
  if (!StartsWithNoCase(url, kHttp)) {
    return absl::InvalidArgumentError(absl::StrCat("not an http:// URL: '", Printable(url), "'"));
  }
  std::string_view rest = url.substr(kHttp.size());
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  HttpUrl out;
  out.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (authority.find('@') != std::string_view::npos) {
    return absl::InvalidArgumentError("URLs with user information are not supported");
  }
  std::string_view host = authority;
  if (!authority.empty() && authority.front() == '[') {  // [v6]:port
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("bad host in '", Printable(url), "'"));
    }
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (ConsumePrefix(&after, ":")) out.port = std::string(after);
  } else if (const size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    out.port = std::string(authority.substr(colon + 1));
  }
  uint64_t port = 0;
  if (host.empty() || !ParseU64(out.port, port) || port == 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad host or port in URL '", Printable(url), "'"));
  }
  out.host = std::string(host);
  return out;
}

struct HttpRangeClient::Connection {
  net::io_context io;
  beast::tcp_stream stream{io};
  beast::flat_buffer buffer;
  bool open = false;
};

namespace {

// Runs one asynchronous operation to completion on the connection's own io_context (the stream's
// expiry gives every operation its timeout, which blocking calls would not).
template <typename Start>
beast::error_code Run(net::io_context& io, Start&& start) {
  beast::error_code result = net::error::operation_aborted;
  start([&result](beast::error_code ec, auto&&...) { result = ec; });
  io.restart();
  io.run();
  return result;
}

}  // namespace

HttpRangeClient::HttpRangeClient(HttpUrl url, Options options)
    : url_(std::move(url)), options_(options) {}

HttpRangeClient::~HttpRangeClient() = default;

absl::StatusOr<std::unique_ptr<HttpRangeClient>> HttpRangeClient::Create(std::string_view url,
                                                                         Options options) {
  SWARM_ASSIGN_OR_RETURN(HttpUrl parsed, HttpUrl::Parse(url));
  return std::unique_ptr<HttpRangeClient>(new HttpRangeClient(std::move(parsed), options));
}

namespace {

struct Answer {
  unsigned status = 0;
  std::string content_range;
  std::string location;
  std::vector<uint8_t> body;
};

// One request on the kept-alive connection (opened if needed; a stale one is reopened once). The
// body is read (at most body_limit bytes) only when the status is `wanted_status`; otherwise the
// connection is dropped after the header (the body might be the whole file).
absl::StatusOr<Answer> Exchange(HttpRangeClient::Connection& c, const HttpUrl& url,
                                std::chrono::milliseconds timeout,
                                std::optional<std::pair<uint64_t, uint64_t>> range,
                                uint64_t body_limit, unsigned wanted_status);

absl::StatusOr<Answer> Exchange(HttpRangeClient::Connection& c, const HttpUrl& url,
                                std::chrono::milliseconds timeout,
                                std::optional<std::pair<uint64_t, uint64_t>> range,
                                uint64_t body_limit, unsigned wanted_status) {
  const std::string where = url.ToString();
  for (int attempt = 0;; ++attempt) {
    const bool reused = c.open;
    if (!c.open) {
      tcp::resolver resolver(c.io);
      tcp::resolver::results_type endpoints;
      beast::error_code ec = Run(c.io, [&](auto handler) {
        resolver.async_resolve(url.host, url.port,
                               [&endpoints, handler](beast::error_code e, auto results) mutable {
                                 endpoints = results;
                                 handler(e);
                               });
      });
      if (ec) {
        return absl::UnavailableError(
            absl::StrCat("cannot resolve ", url.host, ": ", ec.message()));
      }
      c.stream.expires_after(timeout);
      ec = Run(c.io, [&](auto handler) { c.stream.async_connect(endpoints, handler); });
      if (ec) {
        return absl::UnavailableError(
            absl::StrCat("cannot connect to ", url.host, ":", url.port, ": ", ec.message()));
      }
      c.buffer.clear();
      c.open = true;
    }
    http::request<http::empty_body> request{http::verb::get, url.target, 11};
    request.set(http::field::host, url.host);
    request.set(http::field::user_agent, "swarm");
    request.keep_alive(true);
    if (range) {
      request.set(http::field::range,
                  absl::StrCat("bytes=", range->first, "-", range->first + range->second - 1));
    }
    c.stream.expires_after(timeout);
    beast::error_code ec =
        Run(c.io, [&](auto handler) { http::async_write(c.stream, request, handler); });
    http::response_parser<http::vector_body<uint8_t>> parser;
    // The body's limit is set once the status is known: an answer we will not read (the whole
    // file, to a range request) may announce any length.
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    parser.header_limit(64 * 1024);
    if (!ec) {
      c.stream.expires_after(timeout);
      ec = Run(c.io,
               [&](auto handler) { http::async_read_header(c.stream, c.buffer, parser, handler); });
    }
    if (ec) {
      beast::error_code ignored;
      c.stream.socket().close(ignored);
      c.open = false;
      // A kept-alive connection the server closed meanwhile: once more on a fresh one.
      if (reused && attempt == 0) continue;
      return absl::UnavailableError(
          absl::StrCat("HTTP request to ", where, " failed: ", ec.message()));
    }
    auto& header = parser.get();
    Answer answer;
    answer.status = header.result_int();
    answer.content_range = std::string(header[http::field::content_range]);
    answer.location = std::string(header[http::field::location]);
    if (answer.status != wanted_status) {
      // The body (perhaps the whole file) is not read: the connection is dropped instead.
      beast::error_code ignored;
      c.stream.socket().close(ignored);
      c.open = false;
      return answer;
    }
    if (const auto length = parser.content_length(); length && *length > body_limit) {
      beast::error_code ignored;
      c.stream.socket().close(ignored);
      c.open = false;
      return absl::DataLossError(absl::StrCat(where, ": the server announced a body of ", *length,
                                              " bytes; ", body_limit, " were asked for"));
    }
    parser.body_limit(body_limit);
    c.stream.expires_after(timeout);
    ec = Run(c.io, [&](auto handler) { http::async_read(c.stream, c.buffer, parser, handler); });
    if (ec) {
      beast::error_code ignored;
      c.stream.socket().close(ignored);
      c.open = false;
      if (ec == http::error::body_limit) {
        return absl::DataLossError(absl::StrCat(where, ": the server sent a body longer than the ",
                                                body_limit, " bytes asked for"));
      }
      return absl::UnavailableError(
          absl::StrCat("HTTP transfer from ", where, " broke off: ", ec.message()));
    }
    if (!parser.keep_alive()) {
      beast::error_code ignored;
      c.stream.socket().close(ignored);
      c.open = false;
    }
    answer.body = std::move(parser.get().body());
    return answer;
  }
}

}  // namespace

absl::StatusOr<uint64_t> HttpRangeClient::Size() {
  for (int redirect = 0;; ++redirect) {
    if (!connection_) connection_ = std::make_unique<Connection>();
    SWARM_ASSIGN_OR_RETURN(Answer answer, Exchange(*connection_, url_, options_.timeout,
                                                   std::pair<uint64_t, uint64_t>{0, 1}, 1, 206));
    bytes_received_ += answer.body.size();
    if (answer.status >= 300 && answer.status < 400 && !answer.location.empty()) {
      if (redirect >= options_.max_redirects) {
        return absl::FailedPreconditionError(
            absl::StrCat(url_.ToString(), ": more than ", options_.max_redirects, " redirects"));
      }
      HttpUrl next;
      if (answer.location.front() == '/') {
        next = url_;
        next.target = answer.location;
      } else {
        SWARM_ASSIGN_OR_RETURN(next, HttpUrl::Parse(answer.location));
      }
      url_ = std::move(next);
      connection_.reset();
      continue;
    }
    if (answer.status == 200) {
      return absl::FailedPreconditionError(absl::StrCat(
          url_.ToString(),
          ": the server does not support range requests (it answered 200 with the whole file to "
          "a Range request); use a server or mirror that answers ranges with 206"));
    }
    if (answer.status != 206) {
      return absl::FailedPreconditionError(
          absl::StrCat(url_.ToString(), ": HTTP ", answer.status, " to a range request"));
    }
    auto range = ParseContentRange(answer.content_range);
    if (!range || range->first != 0 || range->last != 0 || answer.body.size() != 1) {
      return absl::DataLossError(absl::StrCat(url_.ToString(), ": bad Content-Range '",
                                              Printable(answer.content_range), "' for bytes 0-0"));
    }
    return range->total;
  }
}

absl::StatusOr<std::vector<uint8_t>> HttpRangeClient::Read(uint64_t offset, uint64_t length) {
  if (length == 0 || length > kMaxRange) {
    return absl::InvalidArgumentError(
        absl::StrCat("range of ", length, " bytes (1..", kMaxRange, " per request)"));
  }
  if (!connection_) connection_ = std::make_unique<Connection>();
  SWARM_ASSIGN_OR_RETURN(Answer answer,
                         Exchange(*connection_, url_, options_.timeout,
                                  std::pair<uint64_t, uint64_t>{offset, length}, length, 206));
  bytes_received_ += answer.body.size();
  if (answer.status == 200) {
    return absl::FailedPreconditionError(absl::StrCat(
        url_.ToString(), ": the server does not support range requests (answered 200)"));
  }
  if (answer.status != 206) {
    return absl::UnavailableError(absl::StrCat(url_.ToString(), ": HTTP ", answer.status,
                                               " to the range ", offset, "+", length));
  }
  auto range = ParseContentRange(answer.content_range);
  if (!range || range->first != offset || range->last != offset + length - 1 ||
      answer.body.size() != length) {
    return absl::DataLossError(absl::StrCat(
        url_.ToString(), ": asked for bytes ", offset, "-", offset + length - 1, ", got ",
        answer.body.size(), " bytes with Content-Range '", Printable(answer.content_range), "'"));
  }
  return std::move(answer.body);
}

absl::StatusOr<std::string> HttpRangeClient::GetAll(uint64_t max_bytes) {
  if (!connection_) connection_ = std::make_unique<Connection>();
  SWARM_ASSIGN_OR_RETURN(
      Answer answer, Exchange(*connection_, url_, options_.timeout, std::nullopt, max_bytes, 200));
  bytes_received_ += answer.body.size();
  if (answer.status != 200) {
    return absl::UnavailableError(absl::StrCat(url_.ToString(), ": HTTP ", answer.status));
  }
  return std::string(answer.body.begin(), answer.body.end());
}

}  // namespace swarm::transport
