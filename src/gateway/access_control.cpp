#include "gateway/access_control.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace swarm::gateway {
namespace {

bool ValidKey(absl::string_view key) {
  if (key.empty()) return false;
  for (const char c : key) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) return false;
  }
  return true;
}

// scheme://host[:port], as browsers send it in Origin (no path, no trailing slash).
bool ValidOrigin(absl::string_view origin) {
  const size_t sep = origin.find("://");
  if (sep == absl::string_view::npos || sep == 0) return false;
  const absl::string_view host = origin.substr(sep + 3);
  if (host.empty() || host.find('/') != absl::string_view::npos) return false;
  for (const char c : origin) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return false;
  }
  return true;
}

// Equal in time independent of where the bytes differ (only the lengths' equality shows).
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = a.size();
  for (size_t i = 0; i < n; ++i) {
    const unsigned char other = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(a[i]) ^ other;
  }
  return diff == 0;
}

// A comma-separated list of header names (Access-Control-Request-Headers), if it is one.
bool ValidHeaderList(absl::string_view list) {
  if (list.size() > 1024) return false;
  for (const char c : list) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == ',' ||
          c == ' ')) {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ReadApiKeyFile(const std::string& path) {
  std::error_code dir_error;
  if (std::filesystem::is_directory(path, dir_error)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read the API key file '", path, "': it is a directory"));
  }
  errno = 0;
  std::ifstream in(path);
  if (!in) {
    const int err = errno;
    const std::string what = absl::StrCat("cannot read the API key file '", path,
                                          "': ", err != 0 ? std::strerror(err) : "unreadable");
    return err == EACCES ? absl::PermissionDeniedError(what) : absl::NotFoundError(what);
  }
  std::vector<std::string> keys;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    const absl::string_view key = absl::StripAsciiWhitespace(line);
    if (key.empty() || key[0] == '#') continue;
    if (!ValidKey(key)) {
      return absl::InvalidArgumentError(absl::StrCat("the API key file '", path, "' line ", number,
                                                     ": a key must not contain whitespace"));
    }
    keys.emplace_back(key);
  }
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat("cannot read the API key file '", path, "'"));
  }
  if (keys.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the API key file '", path, "' holds no key (one a line, # for comments)"));
  }
  return keys;
}

const std::string* FindHeader(const HttpHeaders& headers, absl::string_view name) {
  for (const auto& [n, v] : headers) {
    if (absl::EqualsIgnoreCase(n, name)) return &v;
  }
  return nullptr;
}

absl::StatusOr<AccessControl> AccessControl::Create(AccessOptions options) {
  for (const std::string& key : options.api_keys) {
    if (!ValidKey(key)) {
      return absl::InvalidArgumentError(
          "an API key must be non-empty, without whitespace or control characters");
    }
  }
  for (const std::string& origin : options.cors_origins) {
    if (origin != "*" && !ValidOrigin(origin)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--cors-origin '", origin,
                       "': give an origin as browsers send it, scheme://host[:port] (e.g. "
                       "http://localhost:3000), or '*'"));
    }
  }
  return AccessControl(std::move(options));
}

bool AccessControl::Authorized(const HttpHeaders& request_headers) const {
  if (options_.api_keys.empty()) return true;
  const std::string* auth = FindHeader(request_headers, "Authorization");
  if (auth == nullptr) return false;
  absl::string_view value = absl::StripAsciiWhitespace(*auth);
  if (value.size() < 7 || !absl::EqualsIgnoreCase(value.substr(0, 7), "Bearer ")) return false;
  value = absl::StripLeadingAsciiWhitespace(value.substr(7));
  // Every key is compared, so the time does not tell which one matched.
  bool ok = false;
  for (const std::string& key : options_.api_keys) ok |= ConstantTimeEquals(key, value);
  return ok;
}

std::optional<std::string> AccessControl::Origin(const HttpHeaders& request_headers) {
  const std::string* origin = FindHeader(request_headers, "Origin");
  if (origin == nullptr) return std::nullopt;
  return *origin;
}

std::optional<std::string> AccessControl::AllowOrigin(const std::string& origin) const {
  for (const std::string& allowed : options_.cors_origins) {
    if (allowed == "*") return std::string("*");
    if (allowed == origin) return origin;
  }
  return std::nullopt;
}

HttpHeaders AccessControl::CorsHeaders(const HttpHeaders& request_headers) const {
  HttpHeaders out;
  if (options_.cors_origins.empty()) return out;
  // Caches must not hand one origin's answer to another.
  out.emplace_back("Vary", "Origin");
  const std::optional<std::string> origin = Origin(request_headers);
  if (!origin) return out;
  if (std::optional<std::string> allow = AllowOrigin(*origin)) {
    out.emplace_back("Access-Control-Allow-Origin", *allow);
  }
  return out;
}

std::optional<HttpHeaders> AccessControl::PreflightHeaders(
    const HttpHeaders& request_headers) const {
  const std::optional<std::string> origin = Origin(request_headers);
  if (!origin) return std::nullopt;
  std::optional<std::string> allow = AllowOrigin(*origin);
  if (!allow) return std::nullopt;
  std::string headers = "Authorization, Content-Type";
  const std::string* asked = FindHeader(request_headers, "Access-Control-Request-Headers");
  if (asked != nullptr && !asked->empty() && ValidHeaderList(*asked)) {
    // The OpenAI SDKs send their own headers (x-stainless-*); allowing what the browser asks for
    // costs nothing, since the key, not the header set, is what protects the API.
    absl::StrAppend(&headers, ", ", *asked);
  }
  return HttpHeaders{{"Access-Control-Allow-Origin", *allow},
                     {"Vary", "Origin, Access-Control-Request-Headers"},
                     {"Access-Control-Allow-Methods", "GET, POST, OPTIONS"},
                     {"Access-Control-Allow-Headers", headers},
                     {"Access-Control-Max-Age", "600"}};
}

}  // namespace swarm::gateway
