// `swarm demo` as a user runs it (the README's first command): the real binary, the repository's
// layout file, real peer processes. It must work with no arguments, stream the reference text
// for a greedy BOS-only run, report per peer where the time went, and leave no peer behind.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <regex>

#include "chain_test_util.h"

namespace swarm::chain_test {
namespace {

struct DemoResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

DemoResult RunDemo(std::vector<std::string> args) {
  args.insert(args.begin(), {SWARM_BINARY, "demo"});
  const std::string err_path =
      absl::StrCat(::testing::TempDir(), "demo-", ::getpid(), "-", args.size(), ".err");
  std::filesystem::remove(err_path);
  Subprocess::Options options;
  options.argv = args;
  options.stderr_path = err_path;
  DemoResult result;
  auto process = Subprocess::Start(options);
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return result;
  auto out = (*process)->ReadAll(std::chrono::seconds(300));
  EXPECT_TRUE(out.ok()) << out.status();
  result.out = out.ok() ? *out : "";
  auto code = (*process)->Wait(std::chrono::seconds(60));
  EXPECT_TRUE(code.ok()) << code.status();
  result.exit_code = code.ok() ? *code : -1;
  result.err = ReadFile(err_path);
  std::filesystem::remove(err_path);
  return result;
}

// The peers' pids the demo reported ("peer 0: blocks 0:2 at tcp://... (pid 123)").
std::vector<pid_t> PeerPids(const std::string& err) {
  std::vector<pid_t> pids;
  std::regex pattern(R"(\(pid (\d+)\))");
  for (auto it = std::sregex_iterator(err.begin(), err.end(), pattern);
       it != std::sregex_iterator(); ++it) {
    pids.push_back(std::stoi((*it)[1].str()));
  }
  return pids;
}

void ExpectNoPeerLeft(const std::string& err, size_t n_peers) {
  const std::vector<pid_t> pids = PeerPids(err);
  EXPECT_EQ(pids.size(), n_peers) << err;
  for (pid_t pid : pids) {
    // Reaped by the demo: the pid no longer exists (it is not our child, so kill is the probe).
    EXPECT_TRUE(::kill(pid, 0) != 0 && errno == ESRCH) << "peer " << pid << " still exists";
  }
}

TEST(DemoCliTest, WorksWithNoArguments) {
  DemoResult r = RunDemo({});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out, "Once upon a time")) << r.out;
  EXPECT_GT(r.out.size(), 200u) << r.out;
  EXPECT_NE(r.err.find("where the time went"), std::string::npos) << r.err;
  // One report line per peer of configs/demo-stories260k.json, with the peer's compute time.
  for (const char* blocks : {"0:2", "2:4", "4:5"}) {
    std::regex line(
        absl::StrCat(R"(\n\s+\d+\s+)", blocks,
                     R"(\s+tcp://127\.0\.0\.1:\d+\s+\d+\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+)"));
    EXPECT_TRUE(std::regex_search(r.err, line)) << blocks << "\n" << r.err;
  }
  ExpectNoPeerLeft(r.err, 3);
}

TEST(DemoCliTest, GreedyFromBosStreamsTheReferenceText) {
  DemoResult r = RunDemo({"--prompt", "", "-n", "200", "--temp", "0", "--peers", "5"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, ReadFile(kReferenceText));
  ExpectNoPeerLeft(r.err, 5);
}

TEST(DemoCliTest, LossyCodecAndExplicitModel) {
  DemoResult r = RunDemo({"-m", kModel, "--codec", "int8+zstd", "--peers", "2", "-n", "20"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out, "Once upon a time")) << r.out;
  EXPECT_NE(r.err.find("codec int8+zstd"), std::string::npos) << r.err;
  ExpectNoPeerLeft(r.err, 2);
}

// --private: a fresh secret in the scratch folder, the peers and the chain behind it (CurveZMQ),
// the same text, and the demo says so; the secret goes with the scratch folder.
TEST(DemoCliTest, PrivateSwarmStreamsTheReferenceText) {
  DemoResult r = RunDemo({"--private", "--prompt", "", "-n", "200", "--temp", "0", "--peers", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, ReadFile(kReferenceText));
  EXPECT_NE(r.err.find("demo: private swarm, secret "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("made for this demo"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("private swarm (CurveZMQ on every link)"), std::string::npos) << r.err;
  std::smatch secret;
  ASSERT_TRUE(std::regex_search(r.err, secret, std::regex(R"(private swarm, secret (\S+) )")));
  EXPECT_FALSE(std::filesystem::exists(secret[1].str())) << secret[1].str();
  ExpectNoPeerLeft(r.err, 2);
}

TEST(DemoCliTest, BadLayoutsAreClearErrors) {
  const std::string path = absl::StrCat(::testing::TempDir(), "demo-layout-", ::getpid(), ".json");
  const std::pair<const char*, const char*> cases[] = {
      {"{", "not valid JSON"},
      {"[]", "top level"},
      {R"({"peers": [{"blocks": "0:2"}, {"blocks": "2:5"}], "colour": 1})", "unknown key"},
      {R"({"peers": []})", "peers"},
      {R"({"peers": [{"blocks": "0:2"}, {"blocks": "3:5"}]})", "do not start at block 2"},
      {R"({"peers": [{"blocks": "0:2"}]})", "end at block 2 of 5"},
      {R"({"peers": [{"blocks": "0:9"}]})", "0 <= A < B <= 5"},
      {R"({"peers": [{"blocks": "0:5"}], "n_predict": "many"})", "n_predict"},
      {R"({"peers": [{"blocks": "0:5"}], "sampling": {"temperature": -1}})", "temperature"},
      {R"({"peers": [{"blocks": "0:5"}], "sampling": {"tmperature": 1}})", "sampling.tmperature"},
      {R"({"peers": [{"blocks": "0:5"}], "codec": "f8"})", "f8"},
      {R"({"peers": [{"blocks": "0:5"}], "model": "../../etc/passwd"})", "file name"},
  };
  for (const auto& [layout, expected] : cases) {
    std::ofstream(path) << layout;
    DemoResult r = RunDemo({"--config", path, "-m", kModel});
    EXPECT_NE(r.exit_code, 0) << layout;
    EXPECT_LT(r.exit_code, 128) << layout << ": killed by a signal";
    EXPECT_NE(r.err.find(expected), std::string::npos) << layout << "\n" << r.err;
  }
  std::filesystem::remove(path);
  DemoResult r = RunDemo({"--config", "/nonexistent/layout.json"});
  EXPECT_NE(r.exit_code, 0);
  r = RunDemo({"--peers", "6", "-m", kModel});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("only 5 blocks"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace swarm::chain_test
