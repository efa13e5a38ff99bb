// Test support for the gateway over a real swarm: three `swarm serve` peers of stories260K
// (blocks 0:2, 2:4, 4:5) on one DHT and a `swarm api` gateway in front of them, all processes of
// SWARM_BINARY on loopback with ports the OS picks (the HTTP client and the reference text are in
// http_test_client.h). The peers are a peer::LocalSwarm; LocalSwarm owns them and the gateway
// (killed when it is destroyed). One thread.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/subprocess.h"
#include "boost/asio.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "gateway/api_ready_line.h"
#include "gtest/gtest.h"
#include "http_test_client.h"
#include "nlohmann/json.hpp"
#include "peer/local_swarm.h"
#include "support/shared_model.h"

namespace swarm::gateway::swarm_test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using nlohmann::json;
using test_http::Client;
using test_http::kReferencePath;
using test_http::ReadFile;
using test_http::ReferenceText;
using test_http::Response;
using test_http::SseData;

inline const std::string& kModel = test_support::kSharedModel;
inline constexpr auto kStartTimeout = std::chrono::seconds(60);

// A program on PATH, as an absolute path (posix_spawn does not search PATH); "" if absent.
inline std::string FindProgram(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return "";
  for (const std::string& dir : std::vector<std::string>(absl::StrSplit(path, ':'))) {
    if (dir.empty()) continue;
    const std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// One `swarm serve` peer and what its ready line said.
using PeerProcess = peer::LocalPeer;

struct LocalSwarmOptions {
  std::vector<std::string> spans = {"0:2", "2:4", "4:5"};
  std::vector<std::string> serve_args;  // extra `swarm serve` flags, for every peer
  std::vector<std::string> api_args;    // extra `swarm api` flags
};

class LocalSwarm {
 public:
  // Starts the peers one after the other, each joining the DHT through the ones before (records
  // live 30 s and are announced every 0.2 s, so a loaded machine does not let them lapse), then
  // the gateway, and waits until the gateway's /api/swarm lists every peer online. On failure
  // the status names what failed, with the processes' logs.
  absl::Status Start(const LocalSwarmOptions& options = {}) {
    std::vector<std::string> serve_args = {
        "-m",           kModel,      "--listen",  "tcp://127.0.0.1:0",   "--dht-bind",
        "127.0.0.1",    "--backend", "reference", "--announce-interval", "0.2",
        "--record-ttl", "30"};
    for (const std::string& a : options.serve_args) serve_args.push_back(a);
    peers_ = std::make_unique<peer::LocalSwarm>(
        peer::LocalSwarmOptions{.binary = SWARM_BINARY,
                                .serve_args = std::move(serve_args),
                                .log_dir = ::testing::TempDir(),
                                .log_name = "swarm-gw-peer",
                                .ready_timeout = kStartTimeout});
    for (const std::string& span : options.spans) {
      std::vector<std::string> args = {"--blocks", span};
      if (peers_->size() > 0) {
        args.push_back("--initial-peers");
        args.push_back(DhtNodes());
      }
      auto started = peers_->Start(std::move(args));
      if (!started.ok()) {
        return Failed(absl::StrCat("peer ", span, ": ", started.status().message()));
      }
    }

    std::vector<std::string> args = {SWARM_BINARY,      "api",       "-m",        kModel,
                                     "--initial-peers", DhtNodes(),  "--listen",  "127.0.0.1:0",
                                     "--dht-bind",      "127.0.0.1", "--backend", "reference"};
    for (const std::string& a : options.api_args) args.push_back(a);
    api_log_path_ = NewLogPath("api");
    auto process = Launch(args, api_log_path_);
    if (!process.ok()) return process.status();
    api_ = std::move(*process);
    auto line = api_->ReadLine(kStartTimeout);
    if (!line.ok()) {
      return Failed(absl::StrCat("swarm api did not start: ", line.status().ToString()));
    }
    auto ready = ApiReadyLine::Parse(*line);
    if (!ready.ok())
      return Failed(absl::StrCat("swarm api did not start: ", ready.status().message()));
    api_port_ = ready->port;
    return WaitForPeersOnline();
  }

  uint16_t api_port() const { return api_port_; }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", api_port_); }
  const std::deque<PeerProcess>& peers() const { return peers_->peers(); }
  Subprocess& api() { return *api_; }
  // Every peer's DHT node, "127.0.0.1:A,127.0.0.1:B,...": newcomers join through all of them.
  std::string DhtNodes() const { return peers_->DhtNodes(); }

  // GET /api/swarm on a fresh connection.
  json SwarmJson() {
    Client c(api_port_);
    return json::parse(c.Get("/api/swarm").body(), nullptr, false);
  }

  // Polls /api/swarm until `done(it)` or the deadline (the DHT has no event to wait on); the last
  // answer.
  template <typename Done>
  json WaitForSwarm(Done done, std::chrono::seconds timeout = std::chrono::seconds(30)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    json last;
    while (true) {
      last = SwarmJson();
      if (last.is_object() && done(last)) return last;
      if (std::chrono::steady_clock::now() > deadline) return last;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  // Every process's stderr, for failure messages.
  std::string Logs() const {
    std::string out;
    if (peers_ != nullptr) {
      for (const PeerProcess& p : peers_->peers()) {
        absl::StrAppend(&out, "--- peer ", absl::StrJoin(p.args, " "), " ---\n",
                        Tail(ReadFile(p.log_path)));
      }
    }
    if (!api_log_path_.empty()) {
      absl::StrAppend(&out, "--- swarm api ---\n", Tail(ReadFile(api_log_path_)));
    }
    return out;
  }

 private:
  static std::string Tail(const std::string& s) {
    return s.size() > 4000 ? "..." + s.substr(s.size() - 4000) : s;
  }

  static std::string NewLogPath(const char* what) {
    static int counter = 0;
    return absl::StrCat(::testing::TempDir(), "swarm-gw-", what, "-", ::getpid(), "-", counter++,
                        ".log");
  }

  static absl::StatusOr<std::unique_ptr<Subprocess>> Launch(const std::vector<std::string>& argv,
                                                            const std::string& log_path) {
    Subprocess::Options options;
    options.argv = argv;
    options.stderr_path = log_path;
    return Subprocess::Start(options);
  }

  absl::Status Failed(const std::string& what) const {
    return absl::InternalError(absl::StrCat(what, "\n", Logs()));
  }

  absl::Status WaitForPeersOnline() {
    const size_t n = peers_->size();
    json last = WaitForSwarm([n](const json& s) {
      size_t online = 0;
      for (const json& p : s["peers"]) online += p["state"] == "online";
      return online == n;
    });
    size_t online = 0;
    if (last.is_object()) {
      for (const json& p : last["peers"]) online += p["state"] == "online";
    }
    if (online != n) {
      return Failed(
          absl::StrCat("the gateway sees ", online, " of ", n, " peers online: ", last.dump()));
    }
    return absl::OkStatus();
  }

  std::unique_ptr<peer::LocalSwarm> peers_;
  std::unique_ptr<Subprocess> api_;
  std::string api_log_path_;
  uint16_t api_port_ = 0;
};

}  // namespace swarm::gateway::swarm_test
