// peer::LocalSwarm against a stand-in for `swarm serve`: a shell script that prints a ready line
// made of its arguments (or something else) and then waits, so the launcher's own logic (starting,
// waiting, parsing, stopping, restarting, reporting failures) is tested without a model.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "peer/local_swarm.h"

namespace swarm::peer {
namespace {

// `FAKE serve --blocks A:B --dht PORT [--say LINE | --silent]`: prints the ready line (or LINE,
// or nothing), writes a line to stderr, then sleeps until it is signalled.
std::string FakeServe() {
  const std::string path = absl::StrCat(::testing::TempDir(), "fake-serve-", ::getpid(), ".sh");
  std::ofstream out(path);
  out << "#!/bin/sh\n"
         "shift\n"  // "serve"
         "blocks=0:1; dht=0; say=\"\"\n"
         "while [ $# -gt 0 ]; do\n"
         "  case \"$1\" in\n"
         "    --blocks) blocks=$2; shift 2 ;;\n"
         "    --dht) dht=$2; shift 2 ;;\n"
         "    --say) say=$2; shift 2 ;;\n"
         "    --silent) exec sleep 60 ;;\n"
         "    *) shift ;;\n"
         "  esac\n"
         "done\n"
         "echo \"fake peer starting\" >&2\n"
         "if [ -n \"$say\" ]; then echo \"$say\"; else\n"
         "  echo \"listening on tcp://127.0.0.1:1$dht blocks $blocks peer id$dht dht $dht\"; fi\n"
         "exec sleep 60\n";
  out.close();
  ::chmod(path.c_str(), 0755);
  return path;
}

LocalSwarmOptions Options(const std::string& binary) {
  LocalSwarmOptions options;
  options.binary = binary;
  options.log_dir = ::testing::TempDir();
  options.log_name = "fake-peer";
  options.remove_logs = true;
  options.ready_timeout = std::chrono::seconds(10);
  return options;
}

TEST(LocalSwarm, StartsPeersAndReadsTheirReadyLines) {
  LocalSwarm swarm(Options(FakeServe()));
  ASSERT_TRUE(
      swarm.StartAll({{"--blocks", "0:2", "--dht", "4001"}, {"--blocks", "2:5", "--dht", "4002"}})
          .ok());
  ASSERT_EQ(swarm.size(), 2u);
  EXPECT_EQ(swarm.peer(0).ready.address, "tcp://127.0.0.1:14001");
  EXPECT_EQ(swarm.peer(0).ready.Blocks(), "0:2");
  EXPECT_EQ(swarm.peer(1).ready.peer_id, "id4002");
  EXPECT_EQ(swarm.DhtNodes(), "127.0.0.1:4001,127.0.0.1:4002");
  EXPECT_EQ(swarm.AnyDhtNode(), "127.0.0.1:4002");
  EXPECT_EQ(swarm.ByAddress("tcp://127.0.0.1:14002"), &swarm.peer(1));
  EXPECT_EQ(swarm.ByAddress("tcp://127.0.0.1:9"), nullptr);
  EXPECT_TRUE(swarm.peer(0).alive());

  // SIGSTOP/SIGCONT through the handle; a stopped peer leaves the DHT node list.
  ASSERT_TRUE(swarm.peer(0).process->Signal(SIGSTOP).ok());
  ASSERT_TRUE(swarm.peer(0).process->Signal(SIGCONT).ok());
  auto code = swarm.Stop(swarm.peer(0), std::chrono::seconds(10));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 128 + SIGTERM);
  EXPECT_FALSE(swarm.peer(0).alive());
  EXPECT_EQ(swarm.DhtNodes(), "127.0.0.1:4002");

  // Restart: the same handle, new flags, a new ready line.
  ASSERT_TRUE(swarm.Restart(swarm.peer(0), {"--blocks", "0:3", "--dht", "4003"}).ok());
  EXPECT_TRUE(swarm.peer(0).alive());
  EXPECT_EQ(swarm.peer(0).ready.Blocks(), "0:3");
  EXPECT_EQ(swarm.DhtNodes(), "127.0.0.1:4003,127.0.0.1:4002");
}

TEST(LocalSwarm, LaunchThenWaitLetsTheCallerActInBetween) {
  LocalSwarm swarm(Options(FakeServe()));
  auto peer = swarm.Launch({"--blocks", "1:2", "--dht", "4005"});
  ASSERT_TRUE(peer.ok()) << peer.status();
  EXPECT_FALSE((*peer)->is_ready());
  EXPECT_EQ(swarm.DhtNodes(), "");
  ASSERT_TRUE(swarm.WaitReady(**peer).ok());
  EXPECT_TRUE((*peer)->is_ready());
  std::vector<LocalPeer> released = swarm.Release();
  EXPECT_EQ(swarm.size(), 0u);
  ASSERT_EQ(released.size(), 1u);
  EXPECT_TRUE(released[0].alive());
  const std::string log = released[0].log_path;
  EXPECT_EQ(::access(log.c_str(), F_OK), 0);
  released.clear();  // kills, reaps, removes the log
  EXPECT_NE(::access(log.c_str(), F_OK), 0);
}

TEST(LocalSwarm, APeerThatPrintsSomethingElseIsAFailureWithItsLog) {
  LocalSwarm swarm(Options(FakeServe()));
  const absl::Status status = swarm.StartAll({{"--say", "error: no such model"}});
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  const std::string message(status.message());
  EXPECT_NE(message.find("did not start"), std::string::npos) << message;
  EXPECT_NE(message.find("error: no such model"), std::string::npos) << message;
  EXPECT_NE(message.find("fake peer starting"), std::string::npos) << message;  // its log
}

TEST(LocalSwarm, APeerThatExitsOrStaysSilentIsAFailure) {
  LocalSwarm exits(Options("/bin/false"));
  const absl::Status exited = exits.Start({}).status();
  EXPECT_EQ(exited.code(), absl::StatusCode::kUnavailable) << exited;
  LocalSwarmOptions options = Options(FakeServe());
  options.ready_timeout = std::chrono::milliseconds(300);
  LocalSwarm silent(options);
  const absl::Status status = silent.Start({"--silent"}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_TRUE(silent.peer(0).alive());  // still there for the caller to inspect or kill
}

}  // namespace
}  // namespace swarm::peer
