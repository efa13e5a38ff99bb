// Lines typed at an interactive command (`swarm chat`) and Ctrl-C as an event rather than a kill:
// SIGINT is blocked in the process and read from a signalfd, so a Ctrl-C can stop an answer (polled
// between tokens) or be seen at the prompt. Create it before any other thread starts (they inherit
// the blocked mask). Owned and used by one thread.
#pragma once

#include <signal.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace swarm::cli {

class TerminalInput {
 public:
  enum class Event { kLine, kInterrupt, kEnd };

  // Blocks SIGINT for the calling thread and the threads it starts later; reads stdin.
  static absl::StatusOr<std::unique_ptr<TerminalInput>> Create();
  ~TerminalInput();  // restores the signal mask
  TerminalInput(const TerminalInput&) = delete;
  TerminalInput& operator=(const TerminalInput&) = delete;

  // Waits for a whole line (without its newline), a Ctrl-C, or the end of input (Ctrl-D, a closed
  // pipe). A last line without a newline is still a line.
  Event ReadLine(std::string& line);
  // True when Ctrl-C was pressed since the last call (or ReadLine); does not wait.
  bool TakeInterrupt();

 private:
  TerminalInput(int signal_fd, sigset_t old_mask) : signal_fd_(signal_fd), old_mask_(old_mask) {}
  // Reads the pending signals; true when there were any.
  bool DrainSignals();

  int signal_fd_;
  sigset_t old_mask_;
  std::string buffer_;  // read from stdin, not yet returned
  bool end_ = false;
};

}  // namespace swarm::cli
