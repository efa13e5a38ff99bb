// A swarm of `swarm serve` processes on this machine: the one launcher behind `swarm demo`, the
// process tests and the benchmarks. It starts peers with the flags it is given, waits for each
// one's ready line (peer::ReadyLine), and keeps their process handles so that callers can kill,
// freeze (SIGSTOP/SIGCONT), stop and restart them. A LocalSwarm owns its peers: destroying it
// kills (SIGKILL) and reaps whichever still run. One thread uses a LocalSwarm at a time.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/subprocess.h"
#include "peer/ready_line.h"

namespace swarm::peer {

// One `swarm serve` process and what its ready line said. Moving keeps the process running; the
// destructor kills (SIGKILL) and reaps it, then removes its log when remove_log is set.
struct LocalPeer {
  std::vector<std::string> args;  // its flags after `serve` and the swarm's common flags
  std::string log_path;           // its stderr ("/dev/null" when logs are not kept)
  bool remove_log = false;
  std::unique_ptr<Subprocess> process;
  ReadyLine ready;  // empty (address "") until its ready line is read

  LocalPeer() = default;
  LocalPeer(LocalPeer&& other) noexcept;
  LocalPeer& operator=(LocalPeer&&) = delete;
  ~LocalPeer();

  bool alive() const { return process != nullptr && process->running(); }
  bool is_ready() const { return !ready.address.empty(); }
};

struct LocalSwarmOptions {
  std::string binary = {};                   // the `swarm` executable
  std::vector<std::string> serve_args = {};  // flags every peer gets, right after `serve`
  std::string log_dir = {};                  // each peer's stderr goes to a file here; "": dropped
  std::string log_name = "swarm-peer";       // file name prefix: LOG_DIR/NAME-PID-N.log
  bool remove_logs = false;                  // delete a peer's log with the peer
  std::chrono::milliseconds ready_timeout = std::chrono::seconds(120);
  std::string dht_host = "127.0.0.1";  // where the peers' DHT nodes are reached (--dht-bind)
};

class LocalSwarm {
 public:
  explicit LocalSwarm(LocalSwarmOptions options) : options_(std::move(options)) {}
  LocalSwarm(const LocalSwarm&) = delete;
  LocalSwarm& operator=(const LocalSwarm&) = delete;

  // Starts one more peer with `args` after the common flags and returns it without waiting for
  // it; the reference stays valid as long as the swarm. A peer that could not be spawned stays in
  // the swarm without a process (peers().back()), so that Relaunch can try again.
  absl::StatusOr<LocalPeer*> Launch(std::vector<std::string> args);
  // Reads the peer's ready line (within options.ready_timeout). On failure the status quotes
  // what the peer printed instead, or why nothing came, and the tail of its log.
  absl::Status WaitReady(LocalPeer& peer);
  // Launch, then WaitReady.
  absl::StatusOr<LocalPeer*> Start(std::vector<std::string> args);
  // Launches one peer per entry at once (they load in parallel), then waits for each in order.
  absl::Status StartAll(const std::vector<std::vector<std::string>>& args);
  // Kills the peer's process (SIGKILL, which ends a frozen one too) and reaps it, then starts it
  // again with `args` (its log goes on) without waiting for it.
  absl::Status Relaunch(LocalPeer& peer, std::vector<std::string> args);
  // Relaunch, then WaitReady.
  absl::Status Restart(LocalPeer& peer, std::vector<std::string> args);
  // SIGTERM, then waits for the exit: its code (128 + signal number when killed by one). After
  // `timeout` the peer is killed and the status says so. The handle stays for its log.
  absl::StatusOr<int> Stop(LocalPeer& peer, std::chrono::milliseconds timeout);
  // SIGTERM to every running peer at once, then waits for each (killing those past `timeout`).
  void StopAll(std::chrono::milliseconds timeout);

  std::deque<LocalPeer>& peers() { return peers_; }
  const std::deque<LocalPeer>& peers() const { return peers_; }
  LocalPeer& peer(size_t i) { return peers_.at(i); }
  size_t size() const { return peers_.size(); }
  // The live, ready peer listening at `address`; null when there is none.
  LocalPeer* ByAddress(const std::string& address);
  // Hands the peers over to the caller (the swarm is empty afterwards).
  std::vector<LocalPeer> Release();

  // A peer's DHT node as --initial-peers takes it, "HOST:PORT"; "" before it is ready or with no
  // DHT node.
  std::string DhtNode(const LocalPeer& peer) const;
  // Every live, ready peer's DHT node, comma-separated: newcomers join through all of them.
  std::string DhtNodes() const;
  // One live, ready peer's DHT node (the last started); "" when there is none.
  std::string AnyDhtNode() const;

  // The last `max_bytes` of a peer's log, for error messages.
  static std::string LogTail(const LocalPeer& peer, size_t max_bytes = 4000);

 private:
  absl::Status LaunchInto(LocalPeer& peer);

  LocalSwarmOptions options_;
  std::deque<LocalPeer> peers_;  // a deque: references stay valid as peers are added
};

}  // namespace swarm::peer
