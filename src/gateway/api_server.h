// The gateway as one object: an HTTP server answering the OpenAI-compatible API (/v1/...), the
// swarm dashboard (/ and /api/swarm), Prometheus metrics (/metrics) and /health, in front of a
// CompletionEngine, behind API keys and a CORS policy (AccessControl). Owns the HTTP server, the
// metrics registry and the request log; borrows the engine, which must outlive it. Start/Stop
// from the owning thread; metrics() from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "gateway/access_control.h"
#include "gateway/completion_engine.h"
#include "gateway/http_server.h"
#include "gateway/metrics.h"
#include "nlohmann/json.hpp"

namespace swarm::gateway {

struct ApiServerOptions {
  // http.worker_threads, max_queued_jobs and max_jobs_per_client are set from the fields below.
  HttpServerOptions http;
  int max_concurrent_generations = 4;
  int max_queued_generations = 16;  // beyond these, 429
  // Generations running or waiting for one client (remote address); beyond, 429 for that client
  // while the others go on.
  int max_queued_per_client = 4;
  // With keys, everything but GET /health and the dashboard's page (GET /, which holds no data)
  // needs one. Requests from web pages of origins not allowed here are refused (403).
  AccessOptions access;
  int32_t max_tokens_limit = 4096;
  std::string chat_template;    // a template name overriding detection; "" detects from the GGUF
  size_t recent_requests = 32;  // shown on the dashboard
};

class ApiServer {
 public:
  // Errors: InvalidArgument (bad options or chat template name), Unavailable (cannot listen).
  static absl::StatusOr<std::unique_ptr<ApiServer>> Start(const ApiServerOptions& options,
                                                          CompletionEngine& engine);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  uint16_t port() const;
  // Stops serving: running generations see their clients gone. Idempotent.
  void Stop();
  MetricsRegistry& metrics();
  // The chat format in use (detected or chosen), e.g. "llama2".
  std::string chat_template_name() const;
  // What GET /api/swarm returns; also after Stop().
  nlohmann::json SwarmSnapshot() const;

  class Handler;

 private:
  ApiServer() = default;
  std::unique_ptr<MetricsRegistry> metrics_;
  std::unique_ptr<Handler> handler_;
  std::unique_ptr<HttpServer> http_;
};

}  // namespace swarm::gateway
