// The OpenAI-compatible endpoints: /v1/models (answered on the I/O thread) and /v1/completions,
// /v1/chat/completions (run as worker jobs: parse, tokenize, generate through the
// CompletionEngine, answer whole or as server-sent events). Borrows the engine, metrics registry
// and request log, which must outlive it. Thread-safe: jobs run on many workers at once.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "gateway/chat_template.h"
#include "gateway/completion_engine.h"
#include "gateway/http_server.h"
#include "gateway/metrics.h"
#include "gateway/openai_protocol.h"
#include "gateway/request_log.h"

namespace swarm::gateway {

struct OpenAiOptions {
  int32_t max_tokens_limit = 4096;  // the largest max_tokens a request may ask for
  // Room left in the context is the other limit.
};

// Maps an engine error to an HTTP status and OpenAI error.
ApiError EngineError(const absl::Status& status);
// An HttpResponse carrying an OpenAI error body.
HttpResponse ErrorResponse(const ApiError& error);

class OpenAiApi {
 public:
  OpenAiApi(CompletionEngine& engine, ChatTemplateKind chat_template, const OpenAiOptions& options,
            MetricsRegistry& metrics, RequestLog& log);

  HttpResponse ListModels() const;
  // /v1/models/{id}
  HttpResponse GetModel(const std::string& id) const;

  // Runs on a worker thread. `endpoint` is the metrics label.
  void Complete(const std::string& body, bool chat, const std::string& endpoint,
                ResponseWriter& writer);

  const ChatFormatter& chat_formatter() const { return formatter_; }

 private:
  std::string NewId(const char* prefix);
  uint64_t NewSeed();
  // Sends `error` (whole) and counts it.
  void Fail(ResponseWriter& writer, const std::string& endpoint, const ApiError& error);

  CompletionEngine& engine_;
  ChatFormatter formatter_;
  OpenAiOptions options_;
  MetricsRegistry& metrics_;
  RequestLog& log_;
  const int64_t created_;          // the model's "created": when the server started
  const std::string fingerprint_;  // system_fingerprint
  absl::Mutex rng_mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(rng_mu_);
};

}  // namespace swarm::gateway
