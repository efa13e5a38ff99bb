// The most recent generation requests with their routes and speeds, for the dashboard. The log owns
// its records; a running generation updates its own record through the shared pointer it was given.
// Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "gateway/completion_engine.h"
#include "nlohmann/json.hpp"

namespace swarm::gateway {

class RequestLog {
 public:
  struct Record {
    std::string id;
    std::string endpoint;
    int64_t created = 0;  // unix seconds
    std::chrono::steady_clock::time_point start;
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
    double first_token_s = -1;  // time to first token, -1 before it
    double elapsed_s = 0;       // until the last token (or now while running)
    std::vector<RouteHop> route;
    int32_t failovers = 0;
    std::string status = "running";  // running, done, error, cancelled
  };

  explicit RequestLog(size_t capacity) : capacity_(capacity) {}

  // Adds a running request; the newest first.
  std::shared_ptr<Record> Begin(std::string id, std::string endpoint, int64_t prompt_tokens);
  // Called with every token of `record`'s generation.
  void OnToken(const std::shared_ptr<Record>& record, const GenerationEvent& event);
  void Finish(const std::shared_ptr<Record>& record, std::string status);

  // [{id, endpoint, created, status, prompt_tokens, completion_tokens, time_to_first_token_s,
  //   elapsed_s, tokens_per_second, failovers, route: [{peer, address, blocks: [a, b]}]}]
  nlohmann::json ToJson() const;
  int running() const;

 private:
  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<std::shared_ptr<Record>> records_ ABSL_GUARDED_BY(mu_);
};

}  // namespace swarm::gateway
