// Who may use the gateway: the API keys a request must present (Authorization: Bearer KEY) and
// the web origins whose pages a browser may let read the answers (CORS). Built once from the
// command line, immutable afterwards, so any thread may ask it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gateway/http_server.h"

namespace swarm::gateway {

struct AccessOptions {
  // Empty: no key is needed. Otherwise every request but the public ones needs one of them.
  std::vector<std::string> api_keys;
  // Origins (scheme://host[:port], matched exactly) whose pages may call the API, or "*" for any.
  // Empty: browsers are told nothing, so pages of other origins cannot read the answers.
  std::vector<std::string> cors_origins;
};

// The keys in a file: one a line; surrounding whitespace, blank lines and lines starting with '#'
// are ignored. Errors: NotFound/PermissionDenied (cannot read it, with the reason),
// InvalidArgument (no key in it, or a key with whitespace inside).
absl::StatusOr<std::vector<std::string>> ReadApiKeyFile(const std::string& path);

// The value of header `name` (case-insensitive), or nullptr.
const std::string* FindHeader(const HttpHeaders& headers, absl::string_view name);

class AccessControl {
 public:
  // Errors: InvalidArgument (an empty key or one with whitespace or control characters; an origin
  // that is neither "*" nor scheme://host[:port]).
  static absl::StatusOr<AccessControl> Create(AccessOptions options);

  bool keys_required() const { return !options_.api_keys.empty(); }
  // True if no key is required or the request's Authorization header is "Bearer " and one of the
  // keys. The comparison takes the same time whichever bytes differ.
  bool Authorized(const HttpHeaders& request_headers) const;

  // The request's Origin header, if it has one.
  static std::optional<std::string> Origin(const HttpHeaders& request_headers);
  // What Access-Control-Allow-Origin says to `origin`: the origin itself, "*", or nothing.
  std::optional<std::string> AllowOrigin(const std::string& origin) const;
  // The headers every response to this request carries: Access-Control-Allow-Origin where the
  // request's origin is allowed, and Vary: Origin whenever the answer depends on it.
  HttpHeaders CorsHeaders(const HttpHeaders& request_headers) const;
  // For an allowed preflight (OPTIONS with Origin): the CORS headers plus Allow-Methods,
  // Allow-Headers (Authorization, Content-Type and the well-formed headers the browser asks for)
  // and Max-Age. nullopt if the origin is not allowed.
  std::optional<HttpHeaders> PreflightHeaders(const HttpHeaders& request_headers) const;

 private:
  explicit AccessControl(AccessOptions options) : options_(std::move(options)) {}
  AccessOptions options_;
};

}  // namespace swarm::gateway
