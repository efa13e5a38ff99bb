// A small HTTP/1.1 server on Boost.Beast: a fixed pool of I/O threads runs every connection
// (keep-alive, header/body size limits, read/idle/write deadlines against slow clients, caps on
// connections and jobs per client address so that one client cannot lock out the others); work that
// may block (text generation) runs as a job on a fixed pool of worker threads and writes its
// response, whole or chunked (server-sent events), through a blocking ResponseWriter that reports
// when the client is gone. The server owns its threads and sockets; the handler is owned by the
// caller and must outlive the server. Start/Stop from one owning thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace swarm::gateway {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as sent: path and query
  std::string path;    // target without the query string
  HttpHeaders headers;
  std::string body;
  std::string remote;  // client address and port
  std::string client;  // who the per-client limits count: see ClientKey()
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  HttpHeaders headers;  // extra headers
};

// A job's way to answer. Every call blocks until the bytes are written or the client is gone, and
// returns false once it is gone (closed, reset, too slow to read, or the server is stopping).
class ResponseWriter {
 public:
  virtual ~ResponseWriter() = default;
  // A whole response (Content-Length).
  virtual bool Send(const HttpResponse& response) = 0;
  // A streamed response: the status line and headers, then the body in pieces (chunked), then
  // EndStream().
  virtual bool BeginStream(int status, const std::string& content_type,
                           const HttpHeaders& headers) = 0;
  virtual bool Write(std::string data) = 0;
  virtual bool EndStream() = 0;
  // Cheap, never blocks: true once the client is gone, even if nothing was written yet.
  virtual bool client_gone() const = 0;
};

using HttpJob = std::function<void(ResponseWriter&)>;

// What the handler decides for a request: an answer now, or a job for a worker thread.
struct HttpDispatch {
  std::optional<HttpResponse> response;
  HttpJob job;
};

class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  // Called on an I/O thread: must not block.
  virtual HttpDispatch Handle(HttpRequest request) = 0;
  // The response for an error the server detects itself (malformed HTTP 400, body too large 413,
  // headers too large 431, workers all busy or too many connections or jobs from one client 429,
  // stopping 503). Any thread.
  virtual HttpResponse ServerError(int status, const std::string& message) = 0;
};

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0: the OS picks one; see HttpServer::port()
  int io_threads = 2;
  int worker_threads = 4;   // jobs running at once
  int max_queued_jobs = 0;  // jobs waiting for a worker beyond that; more are refused with 429
  // Jobs running or waiting for one client (ClientKey); more are refused with 429. 0: no cap.
  int max_jobs_per_client = 0;
  // Open connections in all; beyond, new connections are closed at once. A client's further
  // connections beyond max_connections_per_client are answered 429 and closed, so no single
  // client can take all max_connections.
  int max_connections = 512;
  int max_connections_per_client = 16;
  uint32_t max_header_bytes = 16 * 1024;  // 431 beyond
  uint64_t max_body_bytes = 1 << 20;      // 413 beyond
  // A new connection's first request headers must arrive complete within this time of the
  // connection; a keep-alive connection's next headers within this time of their first byte. Idle
  // or dribbling sockets cannot pin connection slots.
  std::chrono::milliseconds header_timeout{5000};
  // From the end of the headers to the last byte of the body: slow clients (slowloris) are closed.
  std::chrono::milliseconds request_timeout{10000};
  // Waiting for the next request on a keep-alive connection.
  std::chrono::milliseconds idle_timeout{15000};
  // One write to the client (a response, a stream chunk).
  std::chrono::milliseconds write_timeout{30000};
};

// The client an address belongs to, for per-client limits: an IPv4 address as such (also when
// it reaches an IPv6 socket as ::ffff:a.b.c.d), an IPv6 address by its /64 prefix (one host is
// commonly given a whole /64). "" if `address` is not an IP address.
std::string ClientKey(const std::string& address);
// True for 127.0.0.0/8 and ::1: only this machine can connect there.
bool IsLoopbackAddress(const std::string& address);

class HttpServer {
 public:
  // Binds, listens and starts the threads. Errors: InvalidArgument (bad options or address),
  // Unavailable (cannot bind).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                           HttpHandler& handler);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Stops accepting, tells running jobs their clients are gone, waits for them, closes every
  // connection and joins the threads. Idempotent.
  void Stop();

  uint16_t port() const;
  int open_connections() const;
  int running_jobs() const;

  class Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace swarm::gateway
