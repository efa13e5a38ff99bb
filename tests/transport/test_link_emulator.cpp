// The WAN link emulator: its timing model exactly (pure LinkSchedule), then real traffic through
// the proxy. Timing asserts are lower bounds only (the emulator must add at least what it is
// configured to add), so a slow machine cannot make them flake.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <thread>
#include <vector>

#include "transport/link_emulator.h"
#include "transport/protocol.h"
#include "transport/zmq_socket.h"

namespace swarm::transport {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// The model

TEST(LinkScheduleTest, LatencyOnlyPipelines) {
  LinkSchedule s(LinkDirection{10ms, 0, 0});
  const Clock::time_point t0{};
  // Chunks 1 ms apart arrive 10 ms after each was sent, not 10 ms after the previous one.
  EXPECT_EQ(s.Deliver(t0, 1000), t0 + 10ms);
  EXPECT_EQ(s.Deliver(t0 + 1ms, 1000), t0 + 11ms);
  EXPECT_EQ(s.Deliver(t0 + 2ms, 1000), t0 + 12ms);
  EXPECT_EQ(s.ChunkBytes(), 64u * 1024);
}

TEST(LinkScheduleTest, BandwidthIsSerializationDelay) {
  // 1 MB/s: 1000 bytes take 1 ms on the wire.
  LinkSchedule s(LinkDirection{5ms, 1e6, 0});
  const Clock::time_point t0{};
  // Three chunks at once queue behind each other on the wire; the latency is paid once each,
  // in parallel.
  EXPECT_EQ(s.Deliver(t0, 1000), t0 + 6ms);
  EXPECT_EQ(s.Deliver(t0, 1000), t0 + 7ms);
  EXPECT_EQ(s.Deliver(t0, 1000), t0 + 8ms);
  // After the link has been idle, a chunk pays only its own serialization.
  EXPECT_EQ(s.Deliver(t0 + 100ms, 2000), t0 + 107ms);
  EXPECT_EQ(s.ChunkBytes(), 1024u);  // about 1 ms worth, at least 1 KiB
}

TEST(LinkScheduleTest, BurstLetsAnIdleLinkSendAtOnce) {
  LinkSchedule s(LinkDirection{0ms, 1e6, 3000});
  const Clock::time_point t0 = Clock::time_point{} + 1s;
  EXPECT_EQ(s.Deliver(t0, 1000), t0);  // within the burst
  EXPECT_EQ(s.Deliver(t0, 1000), t0);
  EXPECT_EQ(s.Deliver(t0, 1000), t0);
  EXPECT_EQ(s.Deliver(t0, 1000), t0 + 1ms);  // burst used up: back to 1 MB/s
}

TEST(LinkEndpointTest, Parse) {
  auto ep = ParseTcpEndpoint("tcp://127.0.0.1:5555");
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->host, "127.0.0.1");
  EXPECT_EQ(ep->port, 5555);
  ep = ParseTcpEndpoint("tcp://[::1]:0");
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->host, "::1");
  for (const char* bad : {"", "127.0.0.1:5", "udp://a:1", "tcp://a", "tcp://:5", "tcp://a:x",
                          "tcp://a:70000", "tcp://a:"}) {
    EXPECT_FALSE(ParseTcpEndpoint(bad).ok()) << bad;
  }
}

TEST(LinkEmulatorTest, StartValidatesOptions) {
  LinkEmulatorOptions o;
  o.target = "tcp://127.0.0.1:0";
  EXPECT_FALSE(LinkEmulator::Start(o).ok());  // no target port
  o.target = "tcp://127.0.0.1:1";
  o.forward.latency = -1ms;
  EXPECT_FALSE(LinkEmulator::Start(o).ok());
  o.forward.latency = 0ms;
  o.listen = "bogus";
  EXPECT_FALSE(LinkEmulator::Start(o).ok());
}

// ---------------------------------------------------------------------------------------------
// Real traffic

// A TCP echo server on an OS-chosen loopback port; echoes every connection until it closes.
class EchoServer {
 public:
  EchoServer() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(listen(fd_, 8), 0);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~EchoServer() {
    shutdown(fd_, SHUT_RDWR);  // wakes accept()
    thread_.join();
    close(fd_);
  }
  std::string endpoint() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

 private:
  void Serve() {
    std::vector<std::thread> connections;
    while (true) {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) break;
      connections.emplace_back([c] {
        const int on = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        char buf[65536];
        ssize_t n;
        while ((n = read(c, buf, sizeof buf)) > 0) {
          for (ssize_t done = 0; done < n;) {
            const ssize_t w = send(c, buf + done, n - done, MSG_NOSIGNAL);
            if (w <= 0) break;
            done += w;
          }
        }
        close(c);
      });
    }
    for (auto& t : connections) t.join();
  }
  int fd_;
  uint16_t port_ = 0;
  std::thread thread_;
};

int ConnectTo(const std::string& endpoint) {
  auto ep = ParseTcpEndpoint(endpoint).value();
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(ep.port);
  inet_pton(AF_INET, ep.host.c_str(), &addr.sin_addr);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const int on = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  timeval tv{10, 0};  // a broken emulator fails the test instead of hanging it
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

bool ReadExactly(int fd, uint8_t* out, size_t n) {
  size_t got = 0;
  while (got < n) {
    const ssize_t r = read(fd, out + got, n - got);
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return true;
}

// One echo round trip of `bytes` bytes, in seconds.
double EchoRoundTrip(int fd, size_t bytes) {
  std::vector<uint8_t> out(bytes), in(bytes);
  for (size_t i = 0; i < bytes; ++i) out[i] = static_cast<uint8_t>(i * 7);
  const auto start = Clock::now();
  std::thread writer([&] {
    for (size_t done = 0; done < bytes;) {
      const ssize_t w = send(fd, out.data() + done, bytes - done, MSG_NOSIGNAL);
      if (w <= 0) return;
      done += static_cast<size_t>(w);
    }
  });
  const bool ok = ReadExactly(fd, in.data(), bytes);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  writer.join();
  EXPECT_TRUE(ok);
  EXPECT_EQ(in, out);
  return seconds;
}

std::unique_ptr<LinkEmulator> StartEmulator(const std::string& target, LinkDirection forward,
                                            LinkDirection backward) {
  LinkEmulatorOptions o;
  o.target = target;
  o.forward = forward;
  o.backward = backward;
  auto emulator = LinkEmulator::Start(o);
  EXPECT_TRUE(emulator.ok()) << emulator.status();
  return emulator.ok() ? std::move(*emulator) : nullptr;
}

TEST(LinkEmulatorTest, EchoRoundTripPaysBothLatencies) {
  EchoServer echo;
  auto emulator = StartEmulator(echo.endpoint(), {20ms, 0, 0}, {15ms, 0, 0});
  ASSERT_NE(emulator, nullptr);
  EXPECT_NE(emulator->endpoint(), "tcp://127.0.0.1:0");
  const int fd = ConnectTo(emulator->endpoint());
  EchoRoundTrip(fd, 1);  // the connection to the target is set up now
  for (int i = 0; i < 3; ++i) {
    const double rtt = EchoRoundTrip(fd, 1);
    EXPECT_GE(rtt, 0.035) << "round trip " << rtt * 1e3 << " ms";
    std::cout << "echo round trip through 20 ms + 15 ms: " << rtt * 1e3 << " ms\n";
  }
  close(fd);
  EXPECT_EQ(emulator->stats().connections, 1u);
}

TEST(LinkEmulatorTest, BandwidthLimitsThroughput) {
  EchoServer echo;
  // 4 MB/s one way: 400 KB take at least 100 ms to get through.
  auto emulator = StartEmulator(echo.endpoint(), {0ms, 4e6, 0}, {0ms, 0, 0});
  ASSERT_NE(emulator, nullptr);
  const int fd = ConnectTo(emulator->endpoint());
  const double seconds = EchoRoundTrip(fd, 400000);
  EXPECT_GE(seconds, 0.1);
  std::cout << "400 KB echoed through a 4 MB/s link in " << seconds * 1e3 << " ms\n";
  close(fd);
  // Byte counters see the whole exchange.
  EXPECT_EQ(emulator->stats().forward_bytes, 400000u);
}

TEST(LinkEmulatorTest, EndOfStreamPassesThrough) {
  EchoServer echo;
  auto emulator = StartEmulator(echo.endpoint(), {5ms, 0, 0}, {5ms, 0, 0});
  ASSERT_NE(emulator, nullptr);
  const int fd = ConnectTo(emulator->endpoint());
  ASSERT_EQ(send(fd, "hello", 5, MSG_NOSIGNAL), 5);
  shutdown(fd, SHUT_WR);
  // The echo server sees EOF after "hello", echoes it and closes; the close comes back too.
  char buf[16];
  ASSERT_TRUE(ReadExactly(fd, reinterpret_cast<uint8_t*>(buf), 5));
  EXPECT_EQ(std::string(buf, 5), "hello");
  EXPECT_EQ(read(fd, buf, sizeof buf), 0);
  close(fd);
}

TEST(LinkEmulatorTest, UnreachableTargetClosesTheClient) {
  // A port nobody listens on: bind one, learn it, close it.
  const int probe = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(probe, reinterpret_cast<sockaddr*>(&addr), &len);
  close(probe);
  auto emulator = StartEmulator("tcp://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)),
                                {1ms, 0, 0}, {1ms, 0, 0});
  ASSERT_NE(emulator, nullptr);
  const int fd = ConnectTo(emulator->endpoint());
  char buf[4];
  EXPECT_LE(read(fd, buf, sizeof buf), 0);
  close(fd);
}

TEST(LinkEmulatorTest, ZeroMqPingThroughTheLink) {
  zmq::context_t context;
  auto server = RouterServer::Bind(context, "tcp://127.0.0.1:0").value();
  auto emulator = StartEmulator(server->endpoint(), {10ms, 12.5e6, 0}, {10ms, 12.5e6, 0});
  ASSERT_NE(emulator, nullptr);
  auto client = DealerClient::Connect(context, emulator->endpoint()).value();
  std::thread serve([&] {
    for (int i = 0; i < 4; ++i) {
      auto routed = server->Receive(10s);
      if (!routed.ok() || !routed->message.ok()) return;
      auto ping = DecodeMessage(*routed->message);
      if (!ping.ok()) return;
      auto pong = std::get<Ping>(ping->body);
      (void)server->Send(
          routed->routing_id,
          EncodeMessage(ping->request_id, Pong{pong.nonce, pong.send_time_ns}).value());
    }
  });
  for (uint64_t i = 0; i < 4; ++i) {
    const auto start = Clock::now();
    ASSERT_TRUE(client->Send(EncodeMessage(i, Ping{i, 0}).value()).ok());
    auto reply = client->Receive(10000ms);
    ASSERT_TRUE(reply.ok()) << reply.status();
    const double rtt = std::chrono::duration<double>(Clock::now() - start).count();
    EXPECT_EQ(DecodeMessage(*reply).value().request_id, i);
    EXPECT_GE(rtt, 0.020) << "ping " << i;
    std::cout << "ZeroMQ ping through 10 ms each way: " << rtt * 1e3 << " ms\n";
  }
  serve.join();
}

TEST(LinkEmulatorTest, StopsWithOpenConnections) {
  EchoServer echo;
  auto emulator = StartEmulator(echo.endpoint(), {50ms, 1e5, 0}, {50ms, 1e5, 0});
  ASSERT_NE(emulator, nullptr);
  const int fd = ConnectTo(emulator->endpoint());
  std::vector<uint8_t> data(200000, 1);
  ASSERT_GT(send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT), 0);
  emulator.reset();  // must not hang with bytes in flight
  close(fd);
}

}  // namespace
}  // namespace swarm::transport
