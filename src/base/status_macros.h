// Status helpers: the two macros Debian's Abseil (20220623) lacks.
// Usage: SWARM_RETURN_IF_ERROR(DoThing());  SWARM_ASSIGN_OR_RETURN(auto x, MakeThing());
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SWARM_STATUS_CONCAT_INNER(a, b) a##b
#define SWARM_STATUS_CONCAT(a, b) SWARM_STATUS_CONCAT_INNER(a, b)

#define SWARM_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::absl::Status swarm_status_ = (expr);         \
    if (!swarm_status_.ok()) return swarm_status_; \
  } while (0)

#define SWARM_ASSIGN_OR_RETURN(lhs, expr) \
  SWARM_ASSIGN_OR_RETURN_IMPL(SWARM_STATUS_CONCAT(swarm_statusor_, __LINE__), lhs, expr)

#define SWARM_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return std::move(tmp).status();    \
  lhs = std::move(tmp).value()
