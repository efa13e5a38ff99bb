// `swarm link-emulator` as a user runs it: a separate process between a ZeroMQ client and server.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <string>
#include <thread>

#include "base/subprocess.h"
#include "transport/protocol.h"
#include "transport/zmq_socket.h"

namespace swarm::transport {
namespace {

using namespace std::chrono_literals;

TEST(LinkEmulatorCliTest, AddsLatencyBetweenZeroMqPeers) {
  zmq::context_t context;
  auto server = RouterServer::Bind(context, "tcp://127.0.0.1:0").value();
  Subprocess::Options options;
  options.argv = {SWARM_BINARY, "link-emulator",    "--target", server->endpoint(), "--latency-ms",
                  "15",         "--bandwidth-mbit", "100"};
  auto proc = Subprocess::Start(options);
  ASSERT_TRUE(proc.ok()) << proc.status();
  // The first line names the endpoint to connect to.
  auto line = (*proc)->ReadLine(10s);
  ASSERT_TRUE(line.ok()) << line.status();
  const std::string endpoint = line->substr(0, line->find(' '));
  ASSERT_EQ(endpoint.rfind("tcp://127.0.0.1:", 0), 0u) << *line;

  auto client = DealerClient::Connect(context, endpoint).value();
  for (uint64_t i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(client->Send(EncodeMessage(i, Ping{i, 0}).value()).ok());
    auto routed = server->Receive(10s);
    ASSERT_TRUE(routed.ok()) << routed.status();
    ASSERT_TRUE(server->Send(routed->routing_id, EncodeMessage(i, Pong{i, 0}).value()).ok());
    auto reply = client->Receive(10s);
    ASSERT_TRUE(reply.ok()) << reply.status();
    const auto rtt = std::chrono::steady_clock::now() - start;
    EXPECT_GE(rtt, 30ms) << "ping " << i;
  }
  ASSERT_TRUE((*proc)->Signal(SIGTERM).ok());
  auto code = (*proc)->Wait(10s);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

TEST(LinkEmulatorCliTest, BadFlagsFail) {
  Subprocess::Options options;
  options.argv = {SWARM_BINARY, "link-emulator", "--target", "nonsense"};
  options.stderr_path = "/dev/null";
  auto proc = Subprocess::Start(options);
  ASSERT_TRUE(proc.ok());
  auto code = (*proc)->Wait(10s);
  ASSERT_TRUE(code.ok());
  EXPECT_NE(*code, 0);
}

}  // namespace
}  // namespace swarm::transport
