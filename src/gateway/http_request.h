// Reading HTTP requests from a client's bytes: the limits the server's Beast parser is held to,
// the mapping of a parse error to the status the server answers, and the conversion of Beast's
// request into an HttpRequest. HttpServer's connections use these on their sockets;
// ParseHttpRequests runs the same steps over a buffer (tests, the fuzz target). Pure functions:
// any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "boost/beast/http.hpp"
#include "gateway/http_server.h"

namespace swarm::gateway {

using BeastRequestParser = boost::beast::http::request_parser<boost::beast::http::string_body>;

// Header and body limits from the server's options.
void LimitRequestParser(BeastRequestParser& parser, const HttpServerOptions& options);

// The status the server answers a parse error with: 413 (body too large), 431 (headers too
// large), 400 (malformed); 0 for errors that are not about the request (the client closed the
// connection, the read failed), where the server just closes.
int RequestErrorStatus(const boost::beast::error_code& ec);
// The message of that answer.
std::string RequestErrorMessage(const boost::beast::error_code& ec,
                                const HttpServerOptions& options);

// A parsed request as the handler sees it (path without the query string, headers in order).
HttpRequest ToHttpRequest(boost::beast::http::request<boost::beast::http::string_body> request,
                          std::string remote);

struct ParsedRequests {
  std::vector<HttpRequest> requests;  // complete requests, in order
  int error_status = 0;               // RequestErrorStatus of the error that stopped parsing
  std::string error_message;          // RequestErrorMessage of it
  size_t consumed = 0;                // bytes of `bytes` the complete requests took
};

// The requests a connection receiving `bytes` would read: pipelined requests one after another,
// until the bytes end (an incomplete request is left unconsumed), a request that does not keep
// the connection alive, or a parse error.
ParsedRequests ParseHttpRequests(std::string_view bytes, const HttpServerOptions& options);

}  // namespace swarm::gateway
