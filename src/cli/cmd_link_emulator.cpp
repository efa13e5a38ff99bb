// `swarm link-emulator`: a TCP proxy that adds WAN latency and a bandwidth limit between a client
// and a peer on this machine (whose kernel has no netem). Runs until Ctrl-C or --duration-s.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "transport/link_emulator.h"

namespace swarm::cli {
namespace {

struct LinkEmulatorFlags {
  std::string listen = "tcp://127.0.0.1:0";
  std::string target;
  double latency_ms = 0;
  double reverse_latency_ms = -1;  // < 0: same as --latency-ms
  double bandwidth_mbit = 0;
  double reverse_bandwidth_mbit = -1;  // < 0: same as --bandwidth-mbit
  double burst_kb = 0;
  double duration_s = 0;
};

transport::LinkDirection Direction(double latency_ms, double bandwidth_mbit, double burst_kb) {
  transport::LinkDirection d;
  d.latency = std::chrono::microseconds(static_cast<int64_t>(std::llround(latency_ms * 1000)));
  d.bandwidth_bytes_per_sec = bandwidth_mbit * 1e6 / 8;
  d.burst_bytes = static_cast<uint64_t>(burst_kb * 1024);
  return d;
}

int RunLinkEmulator(const LinkEmulatorFlags& flags) {
  for (double v : {flags.latency_ms, flags.bandwidth_mbit, flags.burst_kb, flags.duration_s}) {
    if (!(v >= 0) || !std::isfinite(v)) {
      std::fprintf(stderr, "error: latency, bandwidth, burst and duration must be >= 0\n");
      return 2;
    }
  }
  const double reverse_latency =
      flags.reverse_latency_ms >= 0 ? flags.reverse_latency_ms : flags.latency_ms;
  const double reverse_bandwidth =
      flags.reverse_bandwidth_mbit >= 0 ? flags.reverse_bandwidth_mbit : flags.bandwidth_mbit;
  transport::LinkEmulatorOptions options;
  options.listen = flags.listen;
  options.target = flags.target;
  options.forward = Direction(flags.latency_ms, flags.bandwidth_mbit, flags.burst_kb);
  options.backward = Direction(reverse_latency, reverse_bandwidth, flags.burst_kb);

  // Block the stop signals before any thread starts, so every thread inherits the mask and
  // this one receives them synchronously.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto emulator = transport::LinkEmulator::Start(options);
  if (!emulator.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(emulator.status().message()).c_str());
    return 1;
  }
  auto mbit = [](double v) {
    if (v <= 0) return std::string("unlimited");
    char text[64];
    std::snprintf(text, sizeof text, "%g Mbit/s", v);
    return std::string(text);
  };
  std::printf("%s -> %s (forward: %g ms, %s; backward: %g ms, %s)\n",
              (*emulator)->endpoint().c_str(), flags.target.c_str(), flags.latency_ms,
              mbit(flags.bandwidth_mbit).c_str(), reverse_latency, mbit(reverse_bandwidth).c_str());
  std::fflush(stdout);

  if (flags.duration_s > 0) {
    timespec timeout;
    timeout.tv_sec = static_cast<time_t>(flags.duration_s);
    timeout.tv_nsec = static_cast<long>((flags.duration_s - timeout.tv_sec) * 1e9);
    while (sigtimedwait(&stop_signals, nullptr, &timeout) < 0 && errno == EINTR) {
    }
  } else {
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
  }
  const transport::LinkStats stats = (*emulator)->stats();
  emulator->reset();
  std::fprintf(stderr, "link-emulator: %llu connections, %llu bytes forward, %llu backward\n",
               static_cast<unsigned long long>(stats.connections),
               static_cast<unsigned long long>(stats.forward_bytes),
               static_cast<unsigned long long>(stats.backward_bytes));
  return 0;
}

}  // namespace

void AddLinkEmulatorCommand(CLI::App& app, ExitCode& exit_code) {
  auto flags = std::make_shared<LinkEmulatorFlags>();
  CLI::App* cmd = app.add_subcommand(
      "link-emulator",
      "TCP proxy that adds one-way latency and a bandwidth limit per direction (WAN emulation)");
  cmd->footer(
      "Prints the endpoint it listens on, then forwards every connection to the target until\n"
      "Ctrl-C (or --duration-s). Bandwidth is modeled as serialization delay; latency is\n"
      "added per chunk from its arrival time, so a pipelined stream pays it once.\n"
      "Examples:\n"
      "  swarm link-emulator --target tcp://127.0.0.1:31337 --latency-ms 10 --bandwidth-mbit 100\n"
      "  swarm link-emulator --listen tcp://127.0.0.1:40000 --target tcp://127.0.0.1:31337 \\\n"
      "      --latency-ms 40 --reverse-latency-ms 5 --duration-s 60\n");
  cmd->add_option("--listen", flags->listen, "Endpoint to accept on; port 0 lets the OS choose")
      ->capture_default_str();
  cmd->add_option("--target", flags->target, "Endpoint every connection is forwarded to")
      ->required();
  cmd->add_option("--latency-ms", flags->latency_ms,
                  "One-way latency added client -> target (and back, unless overridden)")
      ->capture_default_str();
  cmd->add_option("--reverse-latency-ms", flags->reverse_latency_ms,
                  "One-way latency target -> client (default: --latency-ms)");
  cmd->add_option("--bandwidth-mbit", flags->bandwidth_mbit,
                  "Bandwidth per direction in Mbit/s; 0 = unlimited")
      ->capture_default_str();
  cmd->add_option("--reverse-bandwidth-mbit", flags->reverse_bandwidth_mbit,
                  "Bandwidth target -> client (default: --bandwidth-mbit)");
  cmd->add_option("--burst-kb", flags->burst_kb,
                  "Token-bucket depth: KiB an idle link passes without delay")
      ->capture_default_str();
  cmd->add_option("--duration-s", flags->duration_s, "Stop after this many seconds; 0 = never")
      ->capture_default_str();
  cmd->callback([flags, &exit_code] { exit_code.value = RunLinkEmulator(*flags); });
}

}  // namespace swarm::cli
