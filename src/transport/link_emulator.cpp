#include "transport/link_emulator.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "base/status_macros.h"

namespace swarm::transport {

using Clock = LinkSchedule::Clock;

LinkSchedule::Clock::time_point LinkSchedule::Deliver(Clock::time_point arrival, size_t bytes) {
  const auto latency = std::chrono::duration_cast<Clock::duration>(direction_.latency);
  const double bw = direction_.bandwidth_bytes_per_sec;
  if (bw <= 0) return arrival + latency;
  auto seconds = [](double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  // An idle link has saved up at most burst_bytes of transmission time.
  const Clock::time_point earliest = arrival - seconds(direction_.burst_bytes / bw);
  if (link_free_ < earliest) link_free_ = earliest;
  link_free_ += seconds(static_cast<double>(bytes) / bw);
  return std::max(link_free_, arrival) + latency;
}

size_t LinkSchedule::ChunkBytes() const {
  constexpr size_t kMin = 1024, kMax = 64 * 1024;
  const double bw = direction_.bandwidth_bytes_per_sec;
  if (bw <= 0) return kMax;
  return std::clamp(static_cast<size_t>(bw / 1000.0), kMin, kMax);
}

absl::StatusOr<TcpEndpoint> ParseTcpEndpoint(std::string_view endpoint) {
  constexpr std::string_view kPrefix = "tcp://";
  if (endpoint.substr(0, kPrefix.size()) != kPrefix) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected tcp://HOST:PORT, got '", std::string(endpoint), "'"));
  }
  std::string_view rest = endpoint.substr(kPrefix.size());
  const size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected tcp://HOST:PORT, got '", std::string(endpoint), "'"));
  }
  TcpEndpoint out;
  std::string_view host = rest.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  out.host = std::string(host);
  std::string_view port = rest.substr(colon + 1);
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || value > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad port in '", std::string(endpoint), "'"));
  }
  out.port = static_cast<uint16_t>(value);
  return out;
}

namespace {

absl::Status Errno(std::string_view what) {
  const int err = errno;
  const std::string message = absl::StrCat(ToAbsl(what), ": ", std::strerror(err));
  if (err == EADDRINUSE) return absl::AlreadyExistsError(message);
  if (err == ECONNREFUSED || err == ETIMEDOUT || err == EHOSTUNREACH || err == ENETUNREACH) {
    return absl::UnavailableError(message);
  }
  return absl::InternalError(message);
}

struct AddrInfoDeleter {
  void operator()(addrinfo* a) const { freeaddrinfo(a); }
};

absl::StatusOr<std::unique_ptr<addrinfo, AddrInfoDeleter>> Resolve(const TcpEndpoint& ep,
                                                                   bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  const std::string port = std::to_string(ep.port);
  const char* host = (ep.host == "*") ? nullptr : ep.host.c_str();
  addrinfo* result = nullptr;
  const int rc = getaddrinfo(host, port.c_str(), &hints, &result);
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve '", ep.host, "': ", gai_strerror(rc)));
  }
  return std::unique_ptr<addrinfo, AddrInfoDeleter>(result);
}

// Best effort: a thread that may not change its policy keeps the normal one.
void RaiseToRealtime() {
  sched_param param{};
  param.sched_priority = 1;  // the lowest real-time priority: above every normal thread
  (void)pthread_setschedparam(pthread_self(), SCHED_FIFO, &param);
}

void SetNoDelay(int fd) {
  const int on = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

// Connects with a bounded wait that the emulator's shutdown can interrupt.
int ConnectTarget(const addrinfo* ai, int wake_fd, std::chrono::milliseconds timeout) {
  for (; ai != nullptr; ai = ai->ai_next) {
    const int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      close(fd);
      continue;
    }
    pollfd fds[2] = {{fd, POLLOUT, 0}, {wake_fd, POLLIN, 0}};
    int rc;
    do {
      rc = poll(fds, 2, static_cast<int>(timeout.count()));
    } while (rc < 0 && errno == EINTR);
    int err = 0;
    socklen_t len = sizeof err;
    if (rc > 0 && !(fds[1].revents & POLLIN) && (fds[0].revents & POLLOUT) &&
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
      const int flags = fcntl(fd, F_GETFL);
      fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
      return fd;
    }
    close(fd);
  }
  return -1;
}

struct Chunk {
  std::vector<uint8_t> bytes;  // empty: end of stream
  Clock::time_point deliver_at;
};

// One direction of a connection: the reader stamps and queues chunks, the writer releases them.
struct Pipe {
  Pipe(int from_fd, int to_fd, const LinkDirection& direction, std::atomic<uint64_t>* counter)
      : from(from_fd), to(to_fd), schedule(direction), bytes_counter(counter) {}
  const int from;
  const int to;
  LinkSchedule schedule;  // used by the reader thread only
  std::atomic<uint64_t>* bytes_counter;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<Chunk> queue;  // guarded by mu
  size_t queued_bytes = 0;  // guarded by mu
  bool closed = false;      // guarded by mu: the connection is being torn down
};

}  // namespace

struct LinkEmulator::Connection {
  Connection(int client, int target, const LinkEmulatorOptions& o, int wake,
             std::atomic<uint64_t>* forward_bytes, std::atomic<uint64_t>* backward_bytes)
      : client_fd(client),
        target_fd(target),
        wake_fd(wake),
        max_in_flight(std::max<size_t>(o.max_in_flight_bytes, 64 * 1024)),
        realtime(o.realtime_threads),
        forward(client, target, o.forward, forward_bytes),
        backward(target, client, o.backward, backward_bytes) {}

  ~Connection() {
    Abort();
    for (auto& t : threads) {
      if (t.joinable()) t.join();
    }
    close(client_fd);
    close(target_fd);
  }

  void Start() {
    // Readers too: a late reader stamps a chunk's arrival late.
    auto run = [this](void (Connection::*loop)(Pipe&), Pipe& pipe) {
      return std::thread([this, loop, &pipe] {
        if (realtime) RaiseToRealtime();
        (this->*loop)(pipe);
      });
    };
    threads[0] = run(&Connection::ReadLoop, forward);
    threads[1] = run(&Connection::WriteLoop, forward);
    threads[2] = run(&Connection::ReadLoop, backward);
    threads[3] = run(&Connection::WriteLoop, backward);
  }

  bool finished() const { return running.load() == 0; }

  // Tears the connection down: wakes every thread of it (blocked reads and writes fail).
  void Abort() {
    for (Pipe* p : {&forward, &backward}) {
      std::lock_guard<std::mutex> lock(p->mu);
      p->closed = true;
      p->cv.notify_all();
    }
    shutdown(client_fd, SHUT_RDWR);
    shutdown(target_fd, SHUT_RDWR);
  }

  void ReadLoop(Pipe& p) {
    std::vector<uint8_t> buffer(p.schedule.ChunkBytes());
    while (true) {
      {
        std::unique_lock<std::mutex> lock(p.mu);
        p.cv.wait(lock, [&] { return p.closed || p.queued_bytes < max_in_flight; });
        if (p.closed) break;
      }
      pollfd fds[2] = {{p.from, POLLIN, 0}, {wake_fd, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        Abort();
        break;
      }
      if (fds[1].revents & POLLIN) break;  // the emulator is stopping
      const ssize_t n = read(p.from, buffer.data(), buffer.size());
      const Clock::time_point now = Clock::now();
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n < 0) {
        Abort();
        break;
      }
      Chunk chunk;
      chunk.deliver_at = p.schedule.Deliver(now, static_cast<size_t>(n));
      chunk.bytes.assign(buffer.begin(), buffer.begin() + n);
      {
        std::lock_guard<std::mutex> lock(p.mu);
        p.queued_bytes += chunk.bytes.size();
        p.queue.push_back(std::move(chunk));
        p.cv.notify_all();
      }
      if (n == 0) break;  // end of stream: queued so that it, too, arrives late
    }
    running.fetch_sub(1);
  }

  void WriteLoop(Pipe& p) {
    while (true) {
      Chunk chunk;
      {
        std::unique_lock<std::mutex> lock(p.mu);
        p.cv.wait(lock, [&] { return p.closed || !p.queue.empty(); });
        if (p.closed) break;
        const Clock::time_point due = p.queue.front().deliver_at;
        if (p.cv.wait_until(lock, due, [&] { return p.closed; })) break;
        chunk = std::move(p.queue.front());
        p.queue.pop_front();
        p.queued_bytes -= chunk.bytes.size();
        p.cv.notify_all();  // the reader may be waiting for room
      }
      if (chunk.bytes.empty()) {
        shutdown(p.to, SHUT_WR);  // pass the end of stream on
        break;
      }
      size_t done = 0;
      while (done < chunk.bytes.size()) {
        const ssize_t n =
            send(p.to, chunk.bytes.data() + done, chunk.bytes.size() - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += static_cast<size_t>(n);
      }
      if (done < chunk.bytes.size()) {
        Abort();
        break;
      }
      p.bytes_counter->fetch_add(done);
    }
    running.fetch_sub(1);
  }

  const int client_fd;
  const int target_fd;
  const int wake_fd;
  const size_t max_in_flight;
  const bool realtime;
  Pipe forward;
  Pipe backward;
  std::atomic<int> running{4};
  std::thread threads[4];
};

LinkEmulator::LinkEmulator(LinkEmulatorOptions options, int listen_fd, int wake_fd,
                           std::string endpoint)
    : options_(std::move(options)),
      listen_fd_(listen_fd),
      wake_fd_(wake_fd),
      endpoint_(std::move(endpoint)) {}

absl::StatusOr<std::unique_ptr<LinkEmulator>> LinkEmulator::Start(
    const LinkEmulatorOptions& options) {
  SWARM_ASSIGN_OR_RETURN(TcpEndpoint listen_ep, ParseTcpEndpoint(options.listen));
  SWARM_ASSIGN_OR_RETURN(TcpEndpoint target, ParseTcpEndpoint(options.target));
  if (target.port == 0 || target.host == "*") {
    return absl::InvalidArgumentError("the target needs a host and a port");
  }
  for (const LinkDirection* d : {&options.forward, &options.backward}) {
    if (d->latency.count() < 0 || !(d->bandwidth_bytes_per_sec >= 0)) {
      return absl::InvalidArgumentError("latency and bandwidth must not be negative");
    }
  }
  SWARM_ASSIGN_OR_RETURN(auto addresses, Resolve(listen_ep, /*passive=*/true));
  int fd = -1;
  absl::Status last = absl::InvalidArgumentError("no address to listen on");
  for (const addrinfo* ai = addresses.get(); ai != nullptr; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last = Errno("socket");
      continue;
    }
    const int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0) break;
    last = Errno(absl::StrCat("listen on ", options.listen));
    close(fd);
    fd = -1;
  }
  if (fd < 0) return last;
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  char host[INET6_ADDRSTRLEN] = "127.0.0.1";
  uint16_t port = 0;
  bool v6 = false;
  if (bound.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&bound);
    port = ntohs(a->sin_port);
    if (a->sin_addr.s_addr != htonl(INADDR_ANY))
      inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
  } else if (bound.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&bound);
    port = ntohs(a->sin6_port);
    v6 = true;
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    if (std::string_view(host) == "::") std::strcpy(host, "::1");
  }
  const int wake = eventfd(0, EFD_CLOEXEC);
  if (wake < 0) {
    absl::Status s = Errno("eventfd");
    close(fd);
    return s;
  }
  std::string endpoint =
      v6 ? absl::StrCat("tcp://[", host, "]:", port) : absl::StrCat("tcp://", host, ":", port);
  std::unique_ptr<LinkEmulator> emulator(new LinkEmulator(options, fd, wake, std::move(endpoint)));
  emulator->acceptor_ = std::thread(&LinkEmulator::AcceptLoop, emulator.get());
  return emulator;
}

LinkEmulator::~LinkEmulator() {
  stopping_.store(true);
  const uint64_t one = 1;
  // The eventfd stays readable from now on, so every poll() of every thread wakes up.
  [[maybe_unused]] ssize_t ignored = write(wake_fd_, &one, sizeof one);
  if (acceptor_.joinable()) acceptor_.join();
  std::list<std::unique_ptr<Connection>> connections;
  {
    absl::MutexLock lock(&mu_);
    connections.swap(connections_);
  }
  connections.clear();  // each destructor aborts and joins its threads
  close(listen_fd_);
  close(wake_fd_);
}

LinkStats LinkEmulator::stats() const {
  return LinkStats{connection_count_.load(), forward_bytes_.load(), backward_bytes_.load()};
}

void LinkEmulator::ReapFinished() {
  connections_.remove_if([](const std::unique_ptr<Connection>& c) { return c->finished(); });
}

void LinkEmulator::AcceptLoop() {
  auto target_ep = ParseTcpEndpoint(options_.target);
  if (!target_ep.ok()) return;  // checked in Start
  while (!stopping_.load()) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    // Wakes at least once a second to join connections that have ended.
    const int rc = poll(fds, 2, 1000);
    if (rc < 0 && errno != EINTR) return;
    if (fds[1].revents & POLLIN) return;
    {
      absl::MutexLock lock(&mu_);
      ReapFinished();
    }
    if (rc <= 0 || !(fds[0].revents & POLLIN)) continue;
    const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    // Resolved per connection so a target that comes up later is found.
    auto addresses = Resolve(*target_ep, /*passive=*/false);
    const int target =
        addresses.ok() ? ConnectTarget(addresses->get(), wake_fd_, std::chrono::seconds(5)) : -1;
    if (target < 0) {
      close(client);  // the client sees the connection drop, as with an unreachable host
      continue;
    }
    SetNoDelay(client);
    SetNoDelay(target);
    auto connection = std::make_unique<Connection>(client, target, options_, wake_fd_,
                                                   &forward_bytes_, &backward_bytes_);
    connection->Start();
    connection_count_.fetch_add(1);
    absl::MutexLock lock(&mu_);
    connections_.push_back(std::move(connection));
  }
}

}  // namespace swarm::transport
