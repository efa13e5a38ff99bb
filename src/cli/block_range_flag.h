// Parses "A:B" (blocks A inclusive to B exclusive) as given to --blocks.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace swarm::cli {

inline absl::StatusOr<std::pair<int64_t, int64_t>> ParseBlockRange(const std::string& text,
                                                                   int64_t n_layer) {
  std::pair<std::string, std::string> parts = absl::StrSplit(text, absl::MaxSplits(':', 1));
  int64_t first = 0, last = 0;
  if (!absl::SimpleAtoi(parts.first, &first) || !absl::SimpleAtoi(parts.second, &last) ||
      first < 0 || last <= first || last > n_layer) {
    return absl::InvalidArgumentError(
        absl::StrCat("--blocks '", text, "' must be A:B with 0 <= A < B <= ", n_layer));
  }
  return std::make_pair(first, last);
}

}  // namespace swarm::cli
