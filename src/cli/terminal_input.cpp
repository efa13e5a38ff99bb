// TerminalInput: stdin and a SIGINT signalfd, polled together.
#include "cli/terminal_input.h"

#include <poll.h>
#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace swarm::cli {

absl::StatusOr<std::unique_ptr<TerminalInput>> TerminalInput::Create() {
  sigset_t mask, old_mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  if (const int rc = pthread_sigmask(SIG_BLOCK, &mask, &old_mask); rc != 0) {
    return absl::InternalError(absl::StrCat("pthread_sigmask: ", std::strerror(rc)));
  }
  const int fd = ::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    return absl::InternalError(absl::StrCat("signalfd: ", std::strerror(error)));
  }
  return std::unique_ptr<TerminalInput>(new TerminalInput(fd, old_mask));
}

TerminalInput::~TerminalInput() {
  ::close(signal_fd_);
  pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
}

bool TerminalInput::DrainSignals() {
  bool any = false;
  signalfd_siginfo info;
  while (::read(signal_fd_, &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) any = true;
  return any;
}

bool TerminalInput::TakeInterrupt() { return DrainSignals(); }

TerminalInput::Event TerminalInput::ReadLine(std::string& line) {
  for (;;) {
    if (const size_t newline = buffer_.find('\n'); newline != std::string::npos) {
      line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      return Event::kLine;
    }
    if (end_) {
      if (buffer_.empty()) return Event::kEnd;
      line = std::move(buffer_);
      buffer_.clear();
      return Event::kLine;
    }
    pollfd fds[2] = {{signal_fd_, POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      end_ = true;
      continue;
    }
    if (fds[0].revents != 0 && DrainSignals()) return Event::kInterrupt;
    if (fds[1].revents != 0) {
      char chunk[4096];
      const ssize_t n = ::read(STDIN_FILENO, chunk, sizeof(chunk));
      if (n > 0) {
        buffer_.append(chunk, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        end_ = true;
      }
    }
  }
}

}  // namespace swarm::cli
