// A child process (RAII): started with an argument vector, optionally with its stdout captured
// through a pipe and its stderr sent to a file. Destroying a running Subprocess kills it (SIGKILL)
// and reaps it. Used by `swarm demo` to run peers and by tests to run real peer processes.
// One thread uses a Subprocess at a time.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace swarm {

class Subprocess {
 public:
  struct Options {
    std::vector<std::string> argv;  // argv[0] is the program path
    bool capture_stdout = true;
    std::string stderr_path;  // empty: inherit the parent's stderr; "/dev/null" to drop it
    std::vector<std::string> extra_env;  // "NAME=value" entries added to the environment
  };

  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(const Options& options);
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  absl::Status Signal(int signal);

  // The next line of stdout (without '\n'); DeadlineExceeded after `timeout`, OutOfRange at EOF.
  absl::StatusOr<std::string> ReadLine(std::chrono::milliseconds timeout);
  // Everything left on stdout until EOF; DeadlineExceeded after `timeout` (what was read stays
  // buffered for a later call).
  absl::StatusOr<std::string> ReadAll(std::chrono::milliseconds timeout);

  // Waits for exit: the exit code, or 128 + signal number if killed by a signal.
  absl::StatusOr<int> Wait(std::chrono::milliseconds timeout);

 private:
  Subprocess(pid_t pid, int stdout_fd) : pid_(pid), stdout_fd_(stdout_fd) {}
  // Reads what is available into buffer_; false at EOF. DeadlineExceeded on timeout.
  absl::StatusOr<bool> Fill(std::chrono::steady_clock::time_point deadline);

  pid_t pid_;
  int stdout_fd_;
  std::string buffer_;
  bool eof_ = false;
  std::optional<int> exit_code_;
};

}  // namespace swarm
