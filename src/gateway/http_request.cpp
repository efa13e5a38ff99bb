#include "gateway/http_request.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/buffer.hpp"

namespace swarm::gateway {

namespace beast = boost::beast;
namespace http = beast::http;

void LimitRequestParser(BeastRequestParser& parser, const HttpServerOptions& options) {
  parser.header_limit(options.max_header_bytes);
  parser.body_limit(options.max_body_bytes);
}

int RequestErrorStatus(const beast::error_code& ec) {
  if (ec == http::error::end_of_stream) return 0;
  if (ec == http::error::body_limit) return 413;
  if (ec == http::error::header_limit) return 431;
  if (ec.category() == http::make_error_code(http::error::bad_method).category()) return 400;
  return 0;
}

std::string RequestErrorMessage(const beast::error_code& ec, const HttpServerOptions& options) {
  switch (RequestErrorStatus(ec)) {
    case 413:
      return absl::StrCat("Request body too large (the limit is ", options.max_body_bytes,
                          " bytes).");
    case 431:
      return absl::StrCat("Request headers too large (the limit is ", options.max_header_bytes,
                          " bytes).");
    case 400:
      return absl::StrCat("Malformed HTTP request: ", ec.message());
    default:
      return ec.message();
  }
}

HttpRequest ToHttpRequest(http::request<http::string_body> request, std::string remote) {
  HttpRequest out;
  out.method = std::string(request.method_string());
  out.target = std::string(request.target());
  out.path = out.target.substr(0, out.target.find('?'));
  for (const auto& field : request) {
    out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  out.body = std::move(request.body());
  out.remote = std::move(remote);
  return out;
}

ParsedRequests ParseHttpRequests(std::string_view bytes, const HttpServerOptions& options) {
  ParsedRequests out;
  while (out.consumed < bytes.size()) {
    BeastRequestParser parser;
    LimitRequestParser(parser, options);
    // Beast wants the whole header in one buffer and takes the body in pieces, as a socket read
    // into a flat buffer gives them.
    size_t pos = out.consumed;
    beast::error_code ec;
    while (!parser.is_done()) {
      const size_t used =
          parser.put(boost::asio::buffer(bytes.data() + pos, bytes.size() - pos), ec);
      pos += used;
      // Incomplete (everything left was offered): a connection would wait for more.
      if (ec == http::error::need_more) return out;
      if (ec) {
        out.error_status = RequestErrorStatus(ec);
        out.error_message = RequestErrorMessage(ec, options);
        return out;
      }
      if (used == 0 && !parser.is_done()) return out;
    }
    const bool keep_alive = parser.get().keep_alive();
    out.requests.push_back(ToHttpRequest(parser.release(), "fuzz"));
    out.consumed = pos;
    if (!keep_alive) break;
  }
  return out;
}

}  // namespace swarm::gateway
