#include "support/net_namespaces.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/subprocess.h"

namespace swarm::test_support {
namespace {

constexpr char kPrefix[] = "swarmtest-";
constexpr char kPublicNet[] = "198.51.100.";
constexpr char kHomeNet[] = "192.168.1.";

// Namespace names are unique across every NatNetwork of this process, and the pid in them across
// processes.
std::atomic<int> network_counter{0};

// The router: masquerade what leaves through "wan"; forward only what home started (and its
// replies); answer nothing on its own public address.
constexpr char kRouterRules[] = R"(table ip swarm_nat {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "lan" oifname "wan" accept
  }
  chain input {
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    iifname { "lo", "lan" } accept
  }
  chain postrouting {
    type nat hook postrouting priority 100;
    oifname "wan" masquerade
  }
}
)";

std::string Errno(const char* what) { return absl::StrCat(what, ": ", std::strerror(errno)); }

// The tool's path: PATH first, then the sbin folders a non-login root shell may lack.
std::string FindTool(const std::string& name) {
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    dirs = absl::StrSplit(path, ':', absl::SkipEmpty());
  }
  for (const char* d : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) dirs.emplace_back(d);
  for (const std::string& dir : dirs) {
    const std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// Whether the effective capability set holds bit `cap` (/proc/self/status, CapEff).
bool HasCapability(int cap) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (!absl::StartsWith(line, "CapEff:")) continue;
    const std::string hex(absl::StripAsciiWhitespace(line.substr(7)));
    uint64_t bits = 0;
    if (!absl::SimpleHexAtoi(hex, &bits)) return false;
    return (bits >> cap) & 1;
  }
  return false;
}

std::string NetnsPath(const std::string& ns) {
  const std::string run = "/run/netns/" + ns;
  if (::access(run.c_str(), F_OK) == 0) return run;
  return "/var/run/netns/" + ns;
}

// A TCP socket listening on address:0; its fd and port, or an error.
absl::StatusOr<std::pair<int, uint16_t>> Listen(const std::string& address) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(Errno("socket"));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  ::inet_pton(AF_INET, address.c_str(), &addr.sin_addr);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 4) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string why = Errno(("listen on " + address).c_str());
    ::close(fd);
    return absl::InternalError(why);
  }
  return std::make_pair(fd, ntohs(addr.sin_port));
}

}  // namespace

absl::StatusOr<std::string> NatNetwork::Run(const std::string& program,
                                            const std::vector<std::string>& args) const {
  Subprocess::Options options;
  // The shell merges stderr into the captured stdout, so that an error quotes the tool.
  options.argv = {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1", program};
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  const std::string command = absl::StrCat(program, " ", absl::StrJoin(args, " "));
  auto process = Subprocess::Start(options);
  if (!process.ok()) return process.status();
  auto output = (*process)->ReadAll(std::chrono::seconds(20));
  auto code = (*process)->Wait(std::chrono::seconds(20));
  if (!output.ok())
    return absl::InternalError(absl::StrCat(command, ": ", output.status().message()));
  if (!code.ok()) return absl::InternalError(absl::StrCat(command, ": ", code.status().message()));
  if (*code != 0) {
    return absl::InternalError(absl::StrCat(command, " failed (exit ", *code, "): ", *output));
  }
  return *output;
}

absl::StatusOr<std::unique_ptr<NatNetwork>> NatNetwork::Create(const NatNetworkOptions& options) {
  constexpr int kCapNetAdmin = 12, kCapSysAdmin = 21;
  if (::geteuid() != 0 && !(HasCapability(kCapNetAdmin) && HasCapability(kCapSysAdmin))) {
    return absl::FailedPreconditionError(
        "needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) to create namespaces");
  }
  std::unique_ptr<NatNetwork> net(new NatNetwork());
  net->ip_ = FindTool("ip");
  net->nft_ = FindTool("nft");
  if (net->ip_.empty()) {
    return absl::FailedPreconditionError("`ip` (iproute2) is not installed");
  }
  if (net->nft_.empty()) {
    return absl::FailedPreconditionError("`nft` is not installed (Debian package nftables)");
  }
  if (net->scratch_.path().empty()) return absl::InternalError("no scratch folder");
  net->prefix_ = absl::StrCat(kPrefix, ::getpid(), "-", network_counter++);

  // Names left by test processes that died before removing them (SIGKILL, a timeout).
  if (auto list = net->Run(net->ip_, {"netns", "list"}); list.ok()) {
    for (absl::string_view line : absl::StrSplit(*list, '\n', absl::SkipEmpty())) {
      const std::string name(line.substr(0, line.find(' ')));
      if (!absl::StartsWith(name, kPrefix)) continue;
      std::vector<std::string> parts = absl::StrSplit(name.substr(sizeof kPrefix - 1), '-');
      int pid = 0;
      if (parts.empty() || !absl::SimpleAtoi(parts[0], &pid) || pid <= 0) continue;
      if (::kill(pid, 0) != 0 && errno == ESRCH) (void)net->Ip({"netns", "del", name});
    }
  }
  absl::Status built = net->Build(options);
  if (!built.ok()) return built;  // the destructor removes what was made
  return net;
}

absl::Status NatNetwork::AddNamespace(const std::string& role, NetHost& host) {
  host.ns = absl::StrCat(prefix_, "-", role);
  absl::Status added = Ip({"netns", "add", host.ns});
  if (!added.ok()) {
    // The first namespace tells whether this machine permits them at all.
    if (namespaces_.empty()) return absl::FailedPreconditionError(added.message());
    return added;
  }
  namespaces_.push_back(host.ns);
  return Ip({"-n", host.ns, "link", "set", "lo", "up"});
}

absl::Status NatNetwork::Build(const NatNetworkOptions& options) {
  NetHost hub;
  if (absl::Status s = AddNamespace("hub", hub); !s.ok()) return s;
  hub_ = hub.ns;
  if (absl::Status s = Ip({"-n", hub_, "link", "add", "br0", "type", "bridge"}); !s.ok()) return s;
  if (absl::Status s = Ip({"-n", hub_, "link", "set", "br0", "up"}); !s.ok()) return s;

  // A host on the public bridge: "eth0" in its namespace, `port` on the bridge.
  auto attach = [&](NetHost& host, const std::string& port, const std::string& ifname,
                    const std::string& address) -> absl::Status {
    for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
             {"-n", hub_, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns",
              host.ns},
             {"-n", hub_, "link", "set", port, "master", "br0", "up"},
             {"-n", host.ns, "addr", "add", address + "/24", "dev", ifname},
             {"-n", host.ns, "link", "set", ifname, "up"}}) {
      if (absl::Status s = Ip(args); !s.ok()) return s;
    }
    host.address = address;
    return absl::OkStatus();
  };
  auto route_home = [&](const NetHost& host) {
    return Ip({"-n", host.ns, "route", "add", absl::StrCat(kHomeNet, "0/24"), "via",
               absl::StrCat(kPublicNet, "1")});
  };

  public_.resize(static_cast<size_t>(options.public_hosts));
  for (size_t i = 0; i < public_.size(); ++i) {
    if (absl::Status s = AddNamespace(absl::StrCat("pub", i), public_[i]); !s.ok()) return s;
    if (absl::Status s =
            attach(public_[i], absl::StrCat("pub", i), "eth0", absl::StrCat(kPublicNet, 11 + i));
        !s.ok()) {
      return s;
    }
    if (absl::Status s = route_home(public_[i]); !s.ok()) return s;
  }
  if (absl::Status s = AddNamespace("client", client_); !s.ok()) return s;
  if (absl::Status s = attach(client_, "client", "eth0", absl::StrCat(kPublicNet, 100)); !s.ok()) {
    return s;
  }
  if (absl::Status s = route_home(client_); !s.ok()) return s;

  if (absl::Status s = AddNamespace("router", router_); !s.ok()) return s;
  if (absl::Status s = attach(router_, "router", "wan", absl::StrCat(kPublicNet, 1)); !s.ok()) {
    return s;
  }
  if (absl::Status s = AddNamespace("home", home_); !s.ok()) return s;
  home_.address = absl::StrCat(kHomeNet, 2);
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"-n", router_.ns, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns",
            home_.ns},
           {"-n", router_.ns, "addr", "add", absl::StrCat(kHomeNet, "1/24"), "dev", "lan"},
           {"-n", router_.ns, "link", "set", "lan", "up"},
           {"-n", home_.ns, "addr", "add", home_.address + "/24", "dev", "eth0"},
           {"-n", home_.ns, "link", "set", "eth0", "up"},
           {"-n", home_.ns, "route", "add", "default", "via", absl::StrCat(kHomeNet, "1")}}) {
    if (absl::Status s = Ip(args); !s.ok()) return s;
  }
  if (absl::Status s = Ip(
          {"netns", "exec", router_.ns, "/bin/sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"});
      !s.ok()) {
    return s;
  }
  const std::string rules = scratch_.File("router.nft");
  if (!WriteFile(rules, kRouterRules, sizeof kRouterRules - 1)) {
    return absl::InternalError("cannot write " + rules);
  }
  if (absl::Status s = Ip({"netns", "exec", router_.ns, nft_, "-f", rules}); !s.ok()) {
    // nftables missing from the kernel, or refused in this container.
    return absl::FailedPreconditionError(s.message());
  }
  return absl::OkStatus();
}

NatNetwork::~NatNetwork() {
  for (auto it = namespaces_.rbegin(); it != namespaces_.rend(); ++it) {
    // Whatever still runs in it (a peer the test left) goes first: the namespace lives as long as
    // a process in it.
    if (auto pids = Run(ip_, {"netns", "pids", *it}); pids.ok()) {
      for (absl::string_view word : absl::StrSplit(*pids, '\n', absl::SkipEmpty())) {
        int pid = 0;
        if (absl::SimpleAtoi(word, &pid) && pid > 0) ::kill(pid, SIGKILL);
      }
    }
    (void)Ip({"netns", "del", *it});
  }
}

absl::Status NatNetwork::RunIn(const NetHost& host, const std::function<void()>& fn) const {
  absl::Status status;
  // setns moves only the calling thread: a thread of its own, so this one stays where it is.
  std::thread thread([&] {
    const int fd = ::open(NetnsPath(host.ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      status = absl::InternalError(Errno(("open " + NetnsPath(host.ns)).c_str()));
      return;
    }
    if (::setns(fd, CLONE_NEWNET) != 0) {
      status = absl::InternalError(Errno(("setns " + host.ns).c_str()));
      ::close(fd);
      return;
    }
    ::close(fd);
    fn();
  });
  thread.join();
  return status;
}

absl::Status NatNetwork::TcpConnect(const NetHost& from, const std::string& address, uint16_t port,
                                    std::chrono::milliseconds timeout) const {
  absl::Status result;
  absl::Status ran = RunIn(from, [&] {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
      result = absl::InternalError(Errno("socket"));
      return;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    ::inet_pton(AF_INET, address.c_str(), &addr.sin_addr);
    const std::string what = absl::StrCat(from.ns, " -> ", address, ":", port);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      result = absl::OkStatus();
    } else if (errno != EINPROGRESS) {
      result = absl::UnavailableError(Errno(what.c_str()));
    } else {
      pollfd pfd{fd, POLLOUT, 0};
      const int ready = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
      int error = 0;
      socklen_t len = sizeof error;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
      if (ready == 0) {
        result = absl::DeadlineExceededError(what + ": no answer");
      } else if (error != 0) {
        result = absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(error)));
      } else {
        result = absl::OkStatus();
      }
    }
    ::close(fd);
  });
  return ran.ok() ? result : ran;
}

absl::Status NatNetwork::Verify() const {
  if (public_.empty()) return absl::FailedPreconditionError("no public host to check against");
  const NetHost& outside = public_[0];
  // Home -> public: connects, and the public host sees the router's address.
  absl::StatusOr<std::pair<int, uint16_t>> listener = absl::InternalError("not run");
  absl::Status ran = RunIn(outside, [&] { listener = Listen(outside.address); });
  if (!ran.ok()) return ran;
  if (!listener.ok()) return listener.status();
  absl::Status out = TcpConnect(home_, outside.address, listener->second, std::chrono::seconds(2));
  std::string seen_as;
  if (out.ok()) {
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    const int conn = ::accept(listener->first, reinterpret_cast<sockaddr*>(&peer), &len);
    if (conn >= 0) {
      char text[INET_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET, &peer.sin_addr, text, sizeof text);
      seen_as = text;
      ::close(conn);
    }
  }
  ::close(listener->first);
  if (!out.ok()) return absl::InternalError(absl::StrCat("home cannot reach out: ", out.message()));
  if (seen_as != router_.address) {
    return absl::InternalError(absl::StrCat("home's connection arrived from ", seen_as,
                                            ", not masqueraded as ", router_.address));
  }
  // Public -> home: a port home listens on answers neither at home's address nor the router's.
  ran = RunIn(home_, [&] { listener = Listen("0.0.0.0"); });
  if (!ran.ok()) return ran;
  if (!listener.ok()) return listener.status();
  absl::Status verdict = absl::OkStatus();
  for (const NetHost* from : {&client_, &outside}) {
    for (const std::string& to : {home_.address, router_.address}) {
      absl::Status in = TcpConnect(*from, to, listener->second, std::chrono::milliseconds(300));
      if (in.ok()) {
        verdict = absl::InternalError(absl::StrCat(from->ns, " connected to home's port at ", to,
                                                   ": the NAT lets inbound connections in"));
      }
    }
  }
  ::close(listener->first);
  return verdict;
}

std::vector<std::string> NatNetwork::Command(const NetHost& host,
                                             const std::vector<std::string>& argv) const {
  std::vector<std::string> out = {ip_, "netns", "exec", host.ns};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

std::string NatNetwork::Wrapper(const NetHost& host, const std::string& program) {
  const std::string path = scratch_.File(absl::StrCat("in-", host.ns, "-", wrappers_++));
  // exec all the way down: the process started through the wrapper is the program itself.
  const std::string script = absl::StrCat("#!/bin/sh\nexec '", ip_, "' netns exec '", host.ns,
                                          "' '", program, "' \"$@\"\n");
  if (!WriteFile(path, script.data(), script.size())) return "";
  ::chmod(path.c_str(), 0755);
  return path;
}

peer::LocalSwarmOptions NatNetwork::SwarmIn(const NetHost& host, peer::LocalSwarmOptions base) {
  base.binary = Wrapper(host, base.binary);
  base.dht_host = host.address;
  return base;
}

}  // namespace swarm::test_support
