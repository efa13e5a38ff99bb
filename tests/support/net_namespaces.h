// Network namespaces for tests: a "public" network (a bridge) with public hosts and a client on
// it, and a "home" host behind a NAT router that masquerades its outbound traffic and accepts no
// inbound connections. A NatNetwork owns every namespace it creates and removes them (and ends
// the processes left in them) when it goes, also after a failed assertion. One thread uses it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "peer/local_swarm.h"
#include "support/files.h"

namespace swarm::test_support {

// One host: its namespace's name and its IPv4 address (for the router: its public address).
struct NetHost {
  std::string ns;
  std::string address;
};

struct NatNetworkOptions {
  int public_hosts = 4;
};

// The addresses are fixed: each network lives in its own namespaces, so tests running at the
// same time do not collide. Public network 198.51.100.0/24 (the router at .1, public host i at
// .11+i, the client at .100); home network 192.168.1.0/24 (the router at .1, home at .2). Public
// hosts and the client route 192.168.1.0/24 to the router, as if their provider did: the
// router's firewall, not a missing route, is what keeps them out.
class NatNetwork {
 public:
  // FailedPrecondition, saying why, where this machine does not permit it (not root, no
  // CAP_NET_ADMIN/CAP_SYS_ADMIN, no `ip` or `nft`, namespaces or nftables refused): the caller
  // skips (NAT_NETWORK_OR_SKIP). Any other error is a failure.
  static absl::StatusOr<std::unique_ptr<NatNetwork>> Create(const NatNetworkOptions& options = {});
  ~NatNetwork();
  NatNetwork(const NatNetwork&) = delete;
  NatNetwork& operator=(const NatNetwork&) = delete;

  const NetHost& public_host(size_t i) const { return public_.at(i); }
  size_t public_hosts() const { return public_.size(); }
  const NetHost& client() const { return client_; }
  const NetHost& home() const { return home_; }
  const NetHost& router() const { return router_; }

  // Checks that the NAT is real: home connects to a public host (and is seen there at the
  // router's address), while neither the client nor a public host can connect to a port home
  // listens on, at home's address or at the router's.
  absl::Status Verify() const;

  // Runs `fn` on a thread that has entered the host's namespace: the sockets it opens belong
  // there. Returns once fn has.
  absl::Status RunIn(const NetHost& host, const std::function<void()>& fn) const;
  // A TCP connection from `from` to address:port: OK once connected, DeadlineExceeded after
  // `timeout`, Unavailable when refused or unreachable.
  absl::Status TcpConnect(const NetHost& from, const std::string& address, uint16_t port,
                          std::chrono::milliseconds timeout) const;

  // argv that runs `argv` inside the host's namespace (ip netns exec; the process keeps its pid,
  // so signals reach it).
  std::vector<std::string> Command(const NetHost& host, const std::vector<std::string>& argv) const;
  // An executable script that runs `program` with its arguments inside the host's namespace:
  // what LocalSwarmOptions::binary takes. It lives as long as the NatNetwork.
  std::string Wrapper(const NetHost& host, const std::string& program);
  // `base` with its binary run inside the host's namespace and its DHT nodes reached at the
  // host's address.
  peer::LocalSwarmOptions SwarmIn(const NetHost& host, peer::LocalSwarmOptions base);

 private:
  NatNetwork() = default;
  // Runs `ip` (or another tool) with `args`: its output (stdout and stderr), or an error quoting
  // the command and its output.
  absl::StatusOr<std::string> Run(const std::string& program,
                                  const std::vector<std::string>& args) const;
  absl::Status Ip(const std::vector<std::string>& args) const { return Run(ip_, args).status(); }
  absl::Status AddNamespace(const std::string& role, NetHost& host);
  absl::Status Build(const NatNetworkOptions& options);

  std::string ip_;
  std::string nft_;
  std::string prefix_;                   // swarmtest-PID-N: every namespace's name starts with it
  ScratchDir scratch_;                   // wrappers and the router's ruleset
  std::vector<std::string> namespaces_;  // created, in order
  std::string hub_;                      // the namespace holding the public bridge
  std::vector<NetHost> public_;
  NetHost client_, router_, home_;
  int wrappers_ = 0;
};

}  // namespace swarm::test_support

// In a test body: `var` becomes the std::unique_ptr<NatNetwork>, or the test skips (saying why)
// where the machine does not permit namespaces, or fails on any other error.
#define NAT_NETWORK_OR_SKIP(var, options)                                  \
  auto var##_or = ::swarm::test_support::NatNetwork::Create(options);      \
  if (absl::IsFailedPrecondition(var##_or.status())) {                     \
    GTEST_SKIP() << "network namespaces: " << var##_or.status().message(); \
  }                                                                        \
  ASSERT_TRUE(var##_or.ok()) << var##_or.status();                         \
  std::unique_ptr<::swarm::test_support::NatNetwork> var = std::move(*var##_or)
