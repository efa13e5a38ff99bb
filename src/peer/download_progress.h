// A download's progress on stderr: bytes done of the total, rate and time left. On a terminal one
// line redrawn in place (at most 10 times a second); otherwise a plain line at most every 2 s and
// at the end, so logs stay readable. Owned and called by the one downloading thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace swarm::peer {

class DownloadProgress {
 public:
  // `enabled` false prints nothing (for callers that report otherwise).
  DownloadProgress(std::string label, uint64_t total_bytes, bool enabled);
  ~DownloadProgress();  // finishes the line
  void Add(uint64_t bytes);
  void Finish();

  // "12.3 MiB" and friends; public for the tests of the line's format.
  static std::string Bytes(double bytes);

 private:
  void Print(bool final);

  std::string label_;
  uint64_t total_;
  uint64_t done_ = 0;
  bool enabled_;
  bool terminal_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_print_;
};

}  // namespace swarm::peer
