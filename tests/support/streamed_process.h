// A child process whose stdout a test reads as it comes, a byte count at a time (a streamed
// generation: act once the first tokens are out), with its stderr in a file. Destroying it kills
// (SIGKILL) and reaps the process. One thread uses it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace swarm::test_support {

class StreamedProcess {
 public:
  // argv[0] is the program's path; stderr goes to stderr_path (appended).
  static absl::StatusOr<std::unique_ptr<StreamedProcess>> Start(
      const std::vector<std::string>& argv, const std::string& stderr_path);
  ~StreamedProcess();
  StreamedProcess(const StreamedProcess&) = delete;
  StreamedProcess& operator=(const StreamedProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Reads until stdout holds at least `bytes` bytes: OK then; OutOfRange when the process closed
  // stdout first; DeadlineExceeded after `timeout`.
  absl::Status WaitForOutput(size_t bytes, std::chrono::milliseconds timeout);
  // Reads until EOF and waits for the exit: its code (128 + signal when killed by one).
  absl::StatusOr<int> Finish(std::chrono::milliseconds timeout);
  // Everything read from stdout so far.
  const std::string& output() const { return output_; }

 private:
  StreamedProcess(pid_t pid, int fd) : pid_(pid), fd_(fd) {}
  // One read (waiting until the deadline): false at EOF.
  absl::StatusOr<bool> ReadSome(std::chrono::steady_clock::time_point deadline);

  pid_t pid_;
  int fd_;
  bool eof_ = false;
  bool reaped_ = false;
  std::string output_;
};

}  // namespace swarm::test_support
