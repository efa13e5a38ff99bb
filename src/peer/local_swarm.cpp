#include "peer/local_swarm.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"

namespace swarm::peer {
namespace {

// Log names are unique across every LocalSwarm of this process.
std::atomic<int> log_counter{0};

}  // namespace

LocalPeer::LocalPeer(LocalPeer&& other) noexcept
    : args(std::move(other.args)),
      log_path(std::move(other.log_path)),
      remove_log(std::exchange(other.remove_log, false)),
      process(std::move(other.process)),
      ready(std::move(other.ready)) {}

LocalPeer::~LocalPeer() {
  process.reset();  // SIGKILL and reap before the log goes
  if (remove_log && !log_path.empty()) std::remove(log_path.c_str());
}

absl::Status LocalSwarm::LaunchInto(LocalPeer& peer) {
  Subprocess::Options options;
  options.argv = {options_.binary, "serve"};
  options.argv.insert(options.argv.end(), options_.serve_args.begin(), options_.serve_args.end());
  options.argv.insert(options.argv.end(), peer.args.begin(), peer.args.end());
  if (peer.log_path.empty()) {
    peer.log_path = options_.log_dir.empty()
                        ? "/dev/null"
                        : absl::StrCat(options_.log_dir, "/", options_.log_name, "-", ::getpid(),
                                       "-", log_counter++, ".log");
    peer.remove_log = options_.remove_logs && !options_.log_dir.empty();
  }
  options.stderr_path = peer.log_path;
  peer.ready = ReadyLine{};
  SWARM_ASSIGN_OR_RETURN(peer.process, Subprocess::Start(options));
  return absl::OkStatus();
}

absl::StatusOr<LocalPeer*> LocalSwarm::Launch(std::vector<std::string> args) {
  LocalPeer& peer = peers_.emplace_back();
  peer.args = std::move(args);
  SWARM_RETURN_IF_ERROR(LaunchInto(peer));
  return &peer;
}

absl::Status LocalSwarm::WaitReady(LocalPeer& peer) {
  const std::string who = absl::StrCat("swarm serve ", absl::StrJoin(peer.args, " "));
  if (peer.process == nullptr) return absl::FailedPreconditionError(who + ": not started");
  auto line = peer.process->ReadLine(options_.ready_timeout);
  if (!line.ok()) {
    return absl::UnavailableError(
        absl::StrCat(who, " did not start: ", line.status().message(), "\n", LogTail(peer)));
  }
  auto ready = ReadyLine::Parse(*line);
  if (!ready.ok()) {
    return absl::UnavailableError(
        absl::StrCat(who, " did not start: ", ready.status().message(), "\n", LogTail(peer)));
  }
  peer.ready = std::move(*ready);
  return absl::OkStatus();
}

absl::StatusOr<LocalPeer*> LocalSwarm::Start(std::vector<std::string> args) {
  SWARM_ASSIGN_OR_RETURN(LocalPeer * peer, Launch(std::move(args)));
  SWARM_RETURN_IF_ERROR(WaitReady(*peer));
  return peer;
}

absl::Status LocalSwarm::StartAll(const std::vector<std::vector<std::string>>& args) {
  std::vector<LocalPeer*> started;
  for (const std::vector<std::string>& a : args) {
    SWARM_ASSIGN_OR_RETURN(LocalPeer * peer, Launch(a));
    started.push_back(peer);
  }
  for (LocalPeer* peer : started) SWARM_RETURN_IF_ERROR(WaitReady(*peer));
  return absl::OkStatus();
}

absl::Status LocalSwarm::Relaunch(LocalPeer& peer, std::vector<std::string> args) {
  if (peer.process != nullptr) {
    (void)peer.process->Signal(SIGKILL);
    peer.process.reset();  // reaps
  }
  peer.args = std::move(args);
  return LaunchInto(peer);
}

absl::Status LocalSwarm::Restart(LocalPeer& peer, std::vector<std::string> args) {
  SWARM_RETURN_IF_ERROR(Relaunch(peer, std::move(args)));
  return WaitReady(peer);
}

absl::StatusOr<int> LocalSwarm::Stop(LocalPeer& peer, std::chrono::milliseconds timeout) {
  if (peer.process == nullptr) return absl::FailedPreconditionError("the peer is not running");
  (void)peer.process->Signal(SIGTERM);
  auto code = peer.process->Wait(timeout);
  if (!code.ok()) {
    (void)peer.process->Signal(SIGKILL);
    (void)peer.process->Wait(std::chrono::seconds(10));
    return absl::DeadlineExceededError(
        absl::StrCat("the peer did not stop within ", timeout.count(), " ms; killed it"));
  }
  return code;
}

void LocalSwarm::StopAll(std::chrono::milliseconds timeout) {
  for (LocalPeer& peer : peers_) {
    if (peer.alive()) (void)peer.process->Signal(SIGTERM);
  }
  for (LocalPeer& peer : peers_) {
    if (peer.process == nullptr) continue;
    if (!peer.process->Wait(timeout).ok()) {
      (void)peer.process->Signal(SIGKILL);
      (void)peer.process->Wait(std::chrono::seconds(10));
    }
  }
}

LocalPeer* LocalSwarm::ByAddress(const std::string& address) {
  for (LocalPeer& peer : peers_) {
    if (peer.is_ready() && peer.ready.address == address && peer.alive()) return &peer;
  }
  return nullptr;
}

std::vector<LocalPeer> LocalSwarm::Release() {
  std::vector<LocalPeer> out;
  out.reserve(peers_.size());
  for (LocalPeer& peer : peers_) out.push_back(std::move(peer));
  peers_.clear();
  return out;
}

std::string LocalSwarm::DhtNode(const LocalPeer& peer) const {
  if (!peer.is_ready() || peer.ready.dht_port == 0) return "";
  return absl::StrCat(options_.dht_host, ":", peer.ready.dht_port);
}

std::string LocalSwarm::DhtNodes() const {
  std::vector<std::string> nodes;
  for (const LocalPeer& peer : peers_) {
    if (peer.alive() && !DhtNode(peer).empty()) nodes.push_back(DhtNode(peer));
  }
  return absl::StrJoin(nodes, ",");
}

std::string LocalSwarm::AnyDhtNode() const {
  for (auto it = peers_.rbegin(); it != peers_.rend(); ++it) {
    if (it->alive() && !DhtNode(*it).empty()) return DhtNode(*it);
  }
  return "";
}

std::string LocalSwarm::LogTail(const LocalPeer& peer, size_t max_bytes) {
  if (peer.log_path.empty() || peer.log_path == "/dev/null") return "";
  std::ifstream in(peer.log_path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  return text.size() > max_bytes ? "..." + text.substr(text.size() - max_bytes) : text;
}

}  // namespace swarm::peer
