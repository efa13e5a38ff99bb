#include "peer/session_table.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace swarm::peer {

absl::StatusOr<Session*> SessionTable::Open(const transport::SessionId& id, std::string owner,
                                            const SessionRoute& route, int64_t max_length,
                                            std::chrono::steady_clock::time_point now) {
  if (sessions_.contains(id)) return absl::AlreadyExistsError("session id already in use");
  if (max_length <= 0 || max_length > limits_.max_session_length) {
    return absl::InvalidArgumentError(
        absl::StrCat("session length ", max_length, " outside 1..", limits_.max_session_length));
  }
  if (static_cast<int64_t>(sessions_.size()) >= limits_.max_sessions) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many sessions (", limits_.max_sessions, "); try another peer"));
  }
  if (max_length > free_cache_tokens()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV cache budget exhausted: ", max_length, " tokens asked, ",
                     free_cache_tokens(), " of ", limits_.cache_tokens, " free; try another peer"));
  }
  auto session = std::make_unique<Session>();
  session->id = id;
  session->owner = std::move(owner);
  session->route = route;
  session->opened = now;
  session->last_used = now;
  SWARM_ASSIGN_OR_RETURN(session->cache, stack_.NewCache(max_length));
  reserved_tokens_ += max_length;
  Session* raw = session.get();
  sessions_.emplace(id, std::move(session));
  return raw;
}

Session* SessionTable::Find(const transport::SessionId& id) {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second.get();
}

bool SessionTable::Close(const transport::SessionId& id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return false;
  reserved_tokens_ -= it->second->cache->capacity();
  sessions_.erase(it);
  return true;
}

std::vector<std::unique_ptr<Session>> SessionTable::ExpireIdle(
    std::chrono::steady_clock::time_point now) {
  std::vector<std::unique_ptr<Session>> expired;
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    const Session& session = *it->second;
    const auto limit = session.started ? limits_.idle_timeout
                                       : std::min(limits_.idle_timeout, limits_.unstarted_timeout);
    const bool idle = now - session.last_used > limit;
    if (idle) {
      reserved_tokens_ -= it->second->cache->capacity();
      expired.push_back(std::move(it->second));
      sessions_.erase(it++);
    } else {
      ++it;
    }
  }
  return expired;
}

std::vector<std::unique_ptr<Session>> SessionTable::CloseAll() {
  std::vector<std::unique_ptr<Session>> closed;
  closed.reserve(sessions_.size());
  for (auto& [id, session] : sessions_) closed.push_back(std::move(session));
  sessions_.clear();
  reserved_tokens_ = 0;
  return closed;
}

}  // namespace swarm::peer
