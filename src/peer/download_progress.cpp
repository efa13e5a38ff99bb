#include "peer/download_progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_format.h"

namespace swarm::peer {

DownloadProgress::DownloadProgress(std::string label, uint64_t total_bytes, bool enabled)
    : label_(std::move(label)),
      total_(total_bytes),
      enabled_(enabled),
      terminal_(isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

DownloadProgress::~DownloadProgress() { Finish(); }

std::string DownloadProgress::Bytes(double bytes) {
  if (bytes < 1024) return absl::StrFormat("%.0f B", bytes);
  if (bytes < 1024.0 * 1024) return absl::StrFormat("%.1f KiB", bytes / 1024);
  if (bytes < 1024.0 * 1024 * 1024) return absl::StrFormat("%.1f MiB", bytes / (1024.0 * 1024));
  return absl::StrFormat("%.2f GiB", bytes / (1024.0 * 1024 * 1024));
}

void DownloadProgress::Add(uint64_t bytes) {
  done_ += bytes;
  const auto now = std::chrono::steady_clock::now();
  const auto every = terminal_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(2000);
  if (now - last_print_ >= every) {
    last_print_ = now;
    Print(false);
  }
}

void DownloadProgress::Finish() {
  if (finished_) return;
  finished_ = true;
  Print(true);
}

void DownloadProgress::Print(bool final) {
  if (!enabled_) return;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = seconds > 0 ? done_ / seconds : 0;
  const double fraction = total_ > 0 ? std::min(1.0, static_cast<double>(done_) / total_) : 1.0;
  std::string eta = "--";
  if (final) {
    eta = absl::StrFormat("%.1fs", seconds);
  } else if (rate > 0 && total_ > done_) {
    eta = absl::StrFormat("%.0fs", (total_ - done_) / rate);
  }
  const std::string text =
      absl::StrFormat("%s %5.1f%% %s / %s, %s/s, %s %s", label_, 100 * fraction, Bytes(done_),
                      Bytes(total_), Bytes(rate), final ? "in" : "ETA", eta);
  if (terminal_) {
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(fraction * kWidth);
    std::fprintf(stderr, "\r[%s%s] %s\033[K%s", std::string(filled, '#').c_str(),
                 std::string(kWidth - filled, ' ').c_str(), text.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", text.c_str());
  }
  std::fflush(stderr);
}

}  // namespace swarm::peer
