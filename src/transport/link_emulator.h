// A WAN link emulator for tests and benchmarks (this machine's kernel has no netem): a TCP proxy
// that accepts on a local port and forwards every connection to a target endpoint, delaying each
// direction by a one-way latency and limiting it to a bandwidth. It works for any TCP protocol
// (ZeroMQ's ZMTP included).
//
// Model, per direction: bytes are read in chunks, each stamped with its arrival time. A chunk
// occupies the link for bytes / bandwidth after the previous chunk has left (serialization delay,
// a token bucket of `burst_bytes` depth), then arrives at the far end `latency` later. Chunks
// pipeline: a stream pays the latency once, not once per chunk.
//
// Ownership and threads: LinkEmulator owns its listening socket, an acceptor thread and four
// threads per open connection (a reader and a writer per direction); the destructor closes
// everything and joins them. endpoint() and stats() may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace swarm::transport {

struct LinkDirection {
  std::chrono::microseconds latency{0};  // one way
  double bandwidth_bytes_per_sec = 0;    // 0: unlimited
  uint64_t burst_bytes = 0;              // bytes that may pass at once after the link was idle
};

struct LinkEmulatorOptions {
  std::string listen = "tcp://127.0.0.1:0";  // port 0: the OS picks; see endpoint()
  std::string target;                        // e.g. tcp://127.0.0.1:5555
  LinkDirection forward;                     // client -> target
  LinkDirection backward;                    // target -> client
  // Bytes in flight per direction before the proxy stops reading (TCP backpressure then slows
  // the sender, as a real bottleneck would).
  size_t max_in_flight_bytes = size_t{16} << 20;
  // Run the threads that move bytes at real-time priority (SCHED_FIFO) where the process may
  // (root or CAP_SYS_NICE; silently normal priority otherwise). On a busy machine a normal thread
  // can wake several milliseconds after its timer, and that delay would add to the latency being
  // emulated; a wire does not wait for a CPU. The threads only block in poll and in timed waits.
  bool realtime_threads = true;
};

// The timing model of one direction, separate from the sockets so it can be tested exactly.
class LinkSchedule {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LinkSchedule(const LinkDirection& direction) : direction_(direction) {}

  // When a chunk of `bytes` that arrived at `arrival` is fully delivered at the far end.
  Clock::time_point Deliver(Clock::time_point arrival, size_t bytes);

  // Largest chunk to read at once: about 1 ms of the link's bandwidth, so the model's
  // granularity stays finer than the latencies it emulates.
  size_t ChunkBytes() const;

 private:
  LinkDirection direction_;
  Clock::time_point link_free_{};  // when the link finishes serializing what it already has
};

struct LinkStats {
  uint64_t connections = 0;
  uint64_t forward_bytes = 0;
  uint64_t backward_bytes = 0;
};

class LinkEmulator {
 public:
  static absl::StatusOr<std::unique_ptr<LinkEmulator>> Start(const LinkEmulatorOptions& options);
  ~LinkEmulator();
  LinkEmulator(const LinkEmulator&) = delete;
  LinkEmulator& operator=(const LinkEmulator&) = delete;

  // The address clients connect to, e.g. "tcp://127.0.0.1:40123".
  const std::string& endpoint() const { return endpoint_; }
  LinkStats stats() const;

  struct Connection;  // one proxied TCP connection and its four threads

 private:
  LinkEmulator(LinkEmulatorOptions options, int listen_fd, int wake_fd, std::string endpoint);
  void AcceptLoop();
  void ReapFinished() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const LinkEmulatorOptions options_;
  const int listen_fd_;
  const int wake_fd_;  // eventfd: becomes readable once, on shutdown, and wakes every poll
  const std::string endpoint_;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;

  std::atomic<uint64_t> connection_count_{0};
  std::atomic<uint64_t> forward_bytes_{0};
  std::atomic<uint64_t> backward_bytes_{0};

  mutable absl::Mutex mu_;
  std::list<std::unique_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
};

// Parses "tcp://HOST:PORT" (HOST: an IPv4/IPv6 literal, a name, or * for any).
struct TcpEndpoint {
  std::string host;
  uint16_t port = 0;
};
absl::StatusOr<TcpEndpoint> ParseTcpEndpoint(std::string_view endpoint);

}  // namespace swarm::transport
