// An HTTP/1.1 client for byte ranges of one remote file (Boost.Beast, plain http://): the size of
// the file, then any [offset, offset + length) of it, over one kept-alive connection that is
// reopened when it drops. Every answer is checked (206 with the exact Content-Range asked for, a
// body of the length asked for), so a server without range support or one that lies about lengths
// is a clear error. Blocking, with a timeout per operation; one thread uses a client at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace swarm::transport {

// http://HOST[:PORT]/PATH. https:// is refused with a message saying so (no TLS in this build).
struct HttpUrl {
  std::string host;
  std::string port = "80";
  std::string target = "/";  // path and query
  std::string ToString() const;
  static absl::StatusOr<HttpUrl> Parse(std::string_view url);
};

bool IsHttpUrl(std::string_view text);  // starts with http:// or https://

class HttpRangeClient {
 public:
  struct Options {
    std::chrono::milliseconds timeout{30000};  // per connect, write or read
    int max_redirects = 5;
  };
  // Parses the URL; connects on first use.
  static absl::StatusOr<std::unique_ptr<HttpRangeClient>> Create(std::string_view url,
                                                                 Options options);
  static absl::StatusOr<std::unique_ptr<HttpRangeClient>> Create(std::string_view url) {
    return Create(url, Options{});
  }
  ~HttpRangeClient();

  // The file's size, from the Content-Range of a one-byte range request (following redirects to
  // other http:// URLs). FailedPrecondition when the server ignores ranges.
  absl::StatusOr<uint64_t> Size();
  // Bytes [offset, offset + length) (length >= 1, at most kMaxRange).
  absl::StatusOr<std::vector<uint8_t>> Read(uint64_t offset, uint64_t length);
  // A whole small resource (a manifest): a plain GET, at most max_bytes.
  absl::StatusOr<std::string> GetAll(uint64_t max_bytes);

  // Body bytes received so far (what the server sent us), for accounting.
  uint64_t bytes_received() const { return bytes_received_; }
  const HttpUrl& url() const { return url_; }

  static constexpr uint64_t kMaxRange = uint64_t{64} << 20;

  struct Connection;  // the socket and its io_context (defined in the .cpp)

 private:
  HttpRangeClient(HttpUrl url, Options options);

  HttpUrl url_;
  Options options_;
  std::unique_ptr<Connection> connection_;
  uint64_t bytes_received_ = 0;
};

}  // namespace swarm::transport
