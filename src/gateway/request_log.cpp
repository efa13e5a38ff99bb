#include "gateway/request_log.h"

#include <ctime>

namespace swarm::gateway {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

bool SameRoute(const std::vector<RouteHop>& a, std::span<const RouteHop> b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].peer_id != b[i].peer_id || a[i].block_begin != b[i].block_begin ||
        a[i].block_end != b[i].block_end) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::shared_ptr<RequestLog::Record> RequestLog::Begin(std::string id, std::string endpoint,
                                                      int64_t prompt_tokens) {
  auto r = std::make_shared<Record>();
  r->id = std::move(id);
  r->endpoint = std::move(endpoint);
  r->created = static_cast<int64_t>(std::time(nullptr));
  r->start = std::chrono::steady_clock::now();
  r->prompt_tokens = prompt_tokens;
  absl::MutexLock lock(&mu_);
  records_.push_front(r);
  // Running records are never dropped, so a long generation stays visible.
  while (records_.size() > capacity_) {
    auto it = records_.end();
    bool dropped = false;
    while (it != records_.begin()) {
      --it;
      if ((*it)->status != "running") {
        records_.erase(it);
        dropped = true;
        break;
      }
    }
    if (!dropped) break;
  }
  return r;
}

void RequestLog::OnToken(const std::shared_ptr<Record>& record, const GenerationEvent& event) {
  const double t = SecondsSince(record->start);
  absl::MutexLock lock(&mu_);
  record->completion_tokens += 1;
  if (record->first_token_s < 0) record->first_token_s = t;
  record->elapsed_s = t;
  record->failovers = event.failovers;
  if (!event.route.empty() && !SameRoute(record->route, event.route)) {
    record->route.assign(event.route.begin(), event.route.end());
  }
}

void RequestLog::Finish(const std::shared_ptr<Record>& record, std::string status) {
  const double t = SecondsSince(record->start);
  absl::MutexLock lock(&mu_);
  record->status = std::move(status);
  record->elapsed_s = t;
}

nlohmann::json RequestLog::ToJson() const {
  nlohmann::json out = nlohmann::json::array();
  absl::MutexLock lock(&mu_);
  for (const auto& r : records_) {
    const double elapsed = r->status == "running" ? SecondsSince(r->start) : r->elapsed_s;
    // Decode speed: tokens after the first over the time they took.
    double tps = 0;
    if (r->completion_tokens > 1 && r->elapsed_s > r->first_token_s && r->first_token_s >= 0) {
      tps = static_cast<double>(r->completion_tokens - 1) / (r->elapsed_s - r->first_token_s);
    }
    nlohmann::json route = nlohmann::json::array();
    for (const RouteHop& hop : r->route) {
      route.push_back({{"peer", hop.peer_id},
                       {"address", hop.address},
                       {"blocks", {hop.block_begin, hop.block_end}}});
    }
    out.push_back({{"id", r->id},
                   {"endpoint", r->endpoint},
                   {"created", r->created},
                   {"status", r->status},
                   {"prompt_tokens", r->prompt_tokens},
                   {"completion_tokens", r->completion_tokens},
                   {"time_to_first_token_s", r->first_token_s},
                   {"elapsed_s", elapsed},
                   {"tokens_per_second", tps},
                   {"failovers", r->failovers},
                   {"route", std::move(route)}});
  }
  return out;
}

int RequestLog::running() const {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& r : records_) n += r->status == "running";
  return n;
}

}  // namespace swarm::gateway
