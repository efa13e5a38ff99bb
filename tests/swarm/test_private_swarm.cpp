// A private swarm as real processes on loopback: `swarm secret` makes the secret, two
// `swarm serve` peers (SWARM_BINARY) hold it and meet over their DHT, and `swarm generate` with
// it routes through them and prints exactly the in-process text. Without the secret, or with
// another one, every way in is refused with a clear error and a non-zero exit: the DHT (no node
// answers), the peers' sockets addressed directly (the handshake is refused), `swarm status`
// (shows nothing), and a peer trying to join (never appears).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/subprocess.h"
#include "peer/local_swarm.h"
#include "support/files.h"
#include "support/shared_model.h"
#include "transport/swarm_secret.h"

namespace swarm::private_swarm_test {
namespace {

const std::string& kModel = test_support::kSharedModel;
using test_support::ReadFile;

std::string TempPath(const std::string& name) {
  static std::atomic<int> counter{0};
  return absl::StrCat(::testing::TempDir(), "private-swarm-", ::getpid(), "-", ++counter, "-",
                      name);
}

// One `swarm ...` run, started now and collected later, so that the slow refusals (a DHT node
// waits out its connect timeout) run side by side.
class SwarmRun {
 public:
  explicit SwarmRun(std::vector<std::string> args) : err_path_(TempPath("run.err")) {
    args.insert(args.begin(), SWARM_BINARY);
    for (const std::string& a : args) absl::StrAppend(&command_, a, " ");
    Subprocess::Options options;
    options.argv = std::move(args);
    options.stderr_path = err_path_;
    auto process = Subprocess::Start(options);
    EXPECT_TRUE(process.ok()) << process.status();
    if (process.ok()) process_ = std::move(*process);
  }
  ~SwarmRun() { std::filesystem::remove(err_path_); }

  // Waits for the exit; then code(), out() and err() hold what it did.
  void Finish() {
    if (process_ == nullptr || finished_) return;
    finished_ = true;
    auto out = process_->ReadAll(std::chrono::seconds(120));
    EXPECT_TRUE(out.ok()) << command_ << out.status();
    out_ = out.ok() ? *out : "";
    auto code = process_->Wait(std::chrono::seconds(30));
    EXPECT_TRUE(code.ok()) << command_ << code.status();
    code_ = code.ok() ? *code : -1;
    err_ = ReadFile(err_path_);
  }
  int code() const { return code_; }
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }
  std::string Describe() const {
    return absl::StrCat(command_, "\nexit ", code_, "\nstdout: ", out_, "\nstderr: ", err_);
  }

 private:
  std::string err_path_;
  std::string command_;
  std::unique_ptr<Subprocess> process_;
  bool finished_ = false;
  int code_ = -1;
  std::string out_;
  std::string err_;
};

std::string MakeSecret(const std::string& name) {
  const std::string path = TempPath(name);
  SwarmRun run({"secret", "-o", path});
  run.Finish();
  EXPECT_EQ(run.code(), 0) << run.Describe();
  return path;
}

std::vector<std::string> Generate(std::vector<std::string> extra, int n_tokens = 200) {
  std::vector<std::string> args = {"generate",
                                   "-m",
                                   kModel,
                                   "--backend",
                                   "reference",
                                   "--dht-bind",
                                   "127.0.0.1",
                                   "-p",
                                   "",
                                   "-n",
                                   std::to_string(n_tokens),
                                   "--temp",
                                   "0",
                                   "--route-wait",
                                   "10"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

std::vector<std::string> Status(std::vector<std::string> extra) {
  std::vector<std::string> args = {"status", "-m", kModel, "--dht-bind", "127.0.0.1"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// The number of peer lines `swarm status` printed (each shows the peer's tcp:// address).
size_t PeerLines(const std::string& out) {
  size_t n = 0;
  for (size_t at = out.find("tcp://"); at != std::string::npos; at = out.find("tcp://", at + 1)) {
    ++n;
  }
  return n;
}

TEST(PrivateSwarmTest, SecretCommandWritesAnOwnerOnlyFileAndNeverOverwritesByAccident) {
  const std::string path = TempPath("swarm.secret");
  SwarmRun first({"secret", "-o", path});
  first.Finish();
  ASSERT_EQ(first.code(), 0) << first.Describe();
  EXPECT_NE(first.err().find("--swarm-secret"), std::string::npos) << first.err();
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto secret = transport::SwarmSecret::Load(path);
  ASSERT_TRUE(secret.ok()) << secret.status();

  SwarmRun again({"secret", "-o", path});
  again.Finish();
  EXPECT_EQ(again.code(), 1) << again.Describe();
  EXPECT_NE(again.err().find("--force"), std::string::npos) << again.err();
  EXPECT_TRUE(transport::SwarmSecret::Load(path).value() == *secret);

  SwarmRun forced({"secret", "-o", path, "--force"});
  forced.Finish();
  EXPECT_EQ(forced.code(), 0) << forced.Describe();
  EXPECT_FALSE(transport::SwarmSecret::Load(path).value() == *secret);

  // A file that is not a secret is a clear error before anything runs.
  const std::string wrong = TempPath("not-a-secret");
  const std::string pem = "-----BEGIN PRIVATE KEY-----\n";
  ASSERT_TRUE(test_support::WriteFile(wrong, pem.data(), pem.size()));
  SwarmRun bad(Generate({"--peers", "tcp://127.0.0.1:1", "--swarm-secret", wrong}));
  bad.Finish();
  EXPECT_EQ(bad.code(), 1) << bad.Describe();
  EXPECT_NE(bad.err().find("is not a usable swarm secret file"), std::string::npos) << bad.err();
  EXPECT_NE(bad.err().find("swarm secret -o"), std::string::npos) << bad.err();
  std::filesystem::remove(path);
  std::filesystem::remove(wrong);
}

TEST(PrivateSwarmTest, MembersGenerateTheReferenceAndOutsidersAreRefused) {
  const std::string secret = MakeSecret("a.secret");
  const std::string other = MakeSecret("b.secret");
  peer::LocalSwarm swarm(
      {.binary = SWARM_BINARY,
       .serve_args = {"-m", kModel, "--listen", "tcp://127.0.0.1:0", "--dht-bind", "127.0.0.1",
                      "--backend", "reference", "--announce-interval", "0.2", "--record-ttl", "5",
                      "--swarm-secret", secret},
       .log_dir = ::testing::TempDir(),
       .log_name = "private-peer",
       .ready_timeout = std::chrono::seconds(120)});
  auto head = swarm.Start({"--blocks", "0:3"});
  ASSERT_TRUE(head.ok()) << head.status();
  const std::string bootstrap = swarm.DhtNode(**head);
  auto tail = swarm.Start({"--blocks", "3:5", "--initial-peers", bootstrap});
  ASSERT_TRUE(tail.ok()) << tail.status();
  const std::string peers = absl::StrCat((*head)->ready.address, ",", (*tail)->ready.address);

  // The members see exactly their two peers, and that the swarm is private. One DHT read may
  // miss a record that is being re-published, so a few reads are allowed.
  std::unique_ptr<SwarmRun> status;
  for (int attempt = 0; attempt < 10; ++attempt) {
    status = std::make_unique<SwarmRun>(
        Status({"--initial-peers", bootstrap, "--swarm-secret", secret}));
    status->Finish();
    if (status->code() == 0 && PeerLines(status->out()) >= 2) break;
  }
  EXPECT_EQ(status->code(), 0) << status->Describe();
  EXPECT_EQ(PeerLines(status->out()), 2u) << status->Describe();
  EXPECT_NE(status->out().find("private swarm"), std::string::npos) << status->Describe();
  EXPECT_NE(status->out().find((*head)->ready.address), std::string::npos) << status->Describe();
  EXPECT_NE(status->out().find((*tail)->ready.address), std::string::npos) << status->Describe();

  // Everything at once; the members' generation is checked against the outsiders'.
  SwarmRun member(Generate({"--initial-peers", bootstrap, "--swarm-secret", secret}));
  SwarmRun member_direct(Generate({"--peers", peers, "--swarm-secret", secret}, 20));
  SwarmRun plain_dht(Generate({"--initial-peers", bootstrap}));
  SwarmRun other_dht(Generate({"--initial-peers", bootstrap, "--swarm-secret", other}));
  SwarmRun plain_direct(Generate({"--peers", peers}));
  SwarmRun other_direct(Generate({"--peers", peers, "--swarm-secret", other}));
  SwarmRun plain_status(Status({"--initial-peers", bootstrap}));
  SwarmRun other_status(Status({"--initial-peers", bootstrap, "--swarm-secret", other}));
  // A volunteer with another secret tries to join the swarm's DHT.
  SwarmRun intruder({"serve", "-m", kModel, "--blocks", "0:5", "--listen", "tcp://127.0.0.1:0",
                     "--dht-bind", "127.0.0.1", "--backend", "reference", "--initial-peers",
                     bootstrap, "--swarm-secret", other});

  member.Finish();
  ASSERT_EQ(member.code(), 0) << member.Describe() << "\n" << peer::LocalSwarm::LogTail(**head);
  EXPECT_EQ(member.out(), ReadFile(test_support::kSharedReferenceText));
  member_direct.Finish();
  EXPECT_EQ(member_direct.code(), 0) << member_direct.Describe();
  // 20 tokens: the reference's beginning, then the final newline.
  std::string prefix = member_direct.out();
  ASSERT_FALSE(prefix.empty());
  prefix.pop_back();
  EXPECT_TRUE(absl::StartsWith(ReadFile(test_support::kSharedReferenceText), prefix)) << prefix;

  // Through the DHT: no node of the swarm answers an outsider, and it says to check the secret.
  for (SwarmRun* run : {&plain_dht, &other_dht, &plain_status, &other_status}) {
    run->Finish();
    EXPECT_EQ(run->code(), 1) << run->Describe();
    EXPECT_NE(run->err().find("no initial peer answered"), std::string::npos) << run->Describe();
    EXPECT_NE(run->err().find("--swarm-secret"), std::string::npos) << run->Describe();
    EXPECT_EQ(PeerLines(run->out()), 0u) << run->Describe();
  }
  // Straight at a peer: the handshake is refused at once, and the error says what to do.
  for (SwarmRun* run : {&plain_direct, &other_direct}) {
    run->Finish();
    EXPECT_EQ(run->code(), 1) << run->Describe();
    EXPECT_NE(run->err().find("handshake was refused"), std::string::npos) << run->Describe();
    EXPECT_NE(run->err().find("--swarm-secret"), std::string::npos) << run->Describe();
    EXPECT_TRUE(run->out().empty()) << run->Describe();
  }
  EXPECT_NE(plain_direct.err().find("requires CurveZMQ encryption"), std::string::npos)
      << plain_direct.Describe();
  // The intruder never joins: it gives up on the DHT without serving.
  intruder.Finish();
  EXPECT_EQ(intruder.code(), 1) << intruder.Describe();
  EXPECT_EQ(intruder.out().find("listening on"), std::string::npos) << intruder.Describe();
  EXPECT_NE(intruder.err().find("--swarm-secret"), std::string::npos) << intruder.Describe();

  // After all of it, the members' view holds no peer but theirs: the intruder never appears.
  SwarmRun after(Status({"--initial-peers", bootstrap, "--swarm-secret", secret}));
  after.Finish();
  EXPECT_EQ(after.code(), 0) << after.Describe();
  EXPECT_EQ(PeerLines(after.out()),
            (after.out().find((*head)->ready.address) != std::string::npos) +
                (after.out().find((*tail)->ready.address) != std::string::npos))
      << after.Describe();

  // The peers kept serving through all of it.
  EXPECT_TRUE((*head)->alive());
  EXPECT_TRUE((*tail)->alive());
  swarm.StopAll(std::chrono::seconds(10));
  std::filesystem::remove(secret);
  std::filesystem::remove(other);
}

}  // namespace
}  // namespace swarm::private_swarm_test
