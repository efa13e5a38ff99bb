// `swarm generate` as a user runs it: the real binary, the real model, stdout compared byte for
// byte with the reference continuation.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "cli_test_util.h"
#include "support/shared_model.h"

namespace swarm {
namespace {

using cli_test::kModel;
using cli_test::ReadFile;
using cli_test::Result;
using cli_test::RunSwarm;

TEST(GenerateCliTest, GreedyOutputEqualsTheReferenceByteForByte) {
  for (const char* backend : {"reference", "auto"}) {
    Result r = RunSwarm(
        {"generate", "-m", kModel, "-p", "", "-n", "200", "--temp", "0", "--backend", backend});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.stdout_text, ReadFile(test_support::kSharedReferenceText)) << "backend " << backend;
  }
}

TEST(GenerateCliTest, SeededSamplingIsReproducible) {
  std::vector<std::string> args = {"generate", "-m",     kModel, "-p",     "Once upon", "-n",
                                   "40",       "--temp", "0.9",  "--seed", "42"};
  Result a = RunSwarm(args), b = RunSwarm(args);
  EXPECT_EQ(a.exit_code, 0);
  EXPECT_EQ(a.stdout_text, b.stdout_text);
  EXPECT_GT(a.stdout_text.size(), 10u);
}

TEST(GenerateCliTest, BadInputGivesAnErrorNotACrash) {
  EXPECT_NE(RunSwarm({"generate", "-m", "/nonexistent.gguf", "-p", "x"}).exit_code, 0);
  EXPECT_NE(RunSwarm({"generate", "-m", kModel, "--temp", "-1"}).exit_code, 0);
  EXPECT_NE(RunSwarm({"generate", "-m", kModel, "-n", "abc"}).exit_code, 0);
  EXPECT_NE(RunSwarm({"generate", "-m", test_support::kSharedReferenceText}).exit_code, 0);
  const int code = RunSwarm({"generate", "-m", kModel, "--backend", "nope"}).exit_code;
  EXPECT_NE(code, 0);
  EXPECT_LT(code, 128) << "killed by a signal";
}

// A UDP port on loopback that was free a moment ago (for a DHT node started later).
int FreeUdpPort() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ADD_FAILURE() << "cannot reserve a UDP port";
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// A client whose bootstrap node is down (restarting) waits for it for --route-wait, as it waits
// for missing blocks, instead of failing once a fixed 10 s have passed.
TEST(GenerateCliTest, ClientWaitsForARestartingBootstrapNodeWithinRouteWait) {
  const std::string port = std::to_string(FreeUdpPort());
  Subprocess::Options client_options;
  client_options.argv = {SWARM_BINARY,
                         "generate",
                         "-m",
                         kModel,
                         "--initial-peers",
                         "127.0.0.1:" + port,
                         "--dht-bind",
                         "127.0.0.1",
                         "--route-wait",
                         "40",
                         "-p",
                         "",
                         "-n",
                         "24",
                         "--temp",
                         "0"};
  client_options.stderr_path =
      testing::TempDir() + "/swarm_generate_waits_" + std::to_string(::getpid());
  auto client = Subprocess::Start(client_options);
  ASSERT_TRUE(client.ok()) << client.status();
  // The bootstrap node comes back after longer than the DHT's own 10 s connect timeout.
  std::this_thread::sleep_for(std::chrono::seconds(12));
  ASSERT_TRUE((*client)->running()) << "the client gave up while the bootstrap node was down: "
                                    << ReadFile(client_options.stderr_path);
  Subprocess::Options peer_options;
  peer_options.argv = {SWARM_BINARY,
                       "serve",
                       "-m",
                       kModel,
                       "--listen",
                       "tcp://127.0.0.1:0",
                       "--dht-bind",
                       "127.0.0.1",
                       "--dht-port",
                       port,
                       "-t",
                       "1",
                       "--throughput-cache",
                       testing::TempDir()};
  peer_options.stderr_path = "/dev/null";
  auto peer = Subprocess::Start(peer_options);
  ASSERT_TRUE(peer.ok()) << peer.status();
  auto text = (*client)->ReadAll(std::chrono::seconds(90));
  ASSERT_TRUE(text.ok()) << text.status();
  auto code = (*client)->Wait(std::chrono::seconds(30));
  ASSERT_TRUE(code.ok()) << code.status();
  const std::string log = ReadFile(client_options.stderr_path);
  std::remove(client_options.stderr_path.c_str());
  EXPECT_EQ(*code, 0) << log;
  // Greedy from BOS: the first 24 tokens of the reference continuation, then a newline.
  ASSERT_FALSE(text->empty());
  EXPECT_EQ(
      ReadFile(test_support::kSharedReferenceText).rfind(text->substr(0, text->size() - 1), 0), 0u)
      << *text;
  (void)(*peer)->Signal(SIGKILL);
}

}  // namespace
}  // namespace swarm
