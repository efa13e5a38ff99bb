// Debian's Abseil (20220623) is built with its own absl::string_view, distinct from
// std::string_view. Convert explicitly at the boundary.
#pragma once

#include <string_view>

#include "absl/strings/string_view.h"

namespace swarm {

inline absl::string_view ToAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}
inline std::string_view FromAbsl(absl::string_view s) {
  return std::string_view(s.data(), s.size());
}

}  // namespace swarm
