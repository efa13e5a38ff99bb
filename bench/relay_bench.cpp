// Relay cost: the per-token latency of `swarm generate` through a chain of three `swarm serve`
// processes (blocks 0:2, 2:4, 4:5 of stories260K by default) whose middle peer sits behind a NAT
// router and is reached through a public peer's relay, against the same chain with the middle
// peer on the public network. Both networks live in namespaces (tests/support/net_namespaces.h;
// needs root and nftables) and exist at once; the rounds alternate between them. Prints one JSON
// line per generation and a summary line.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "peer/local_swarm.h"
#include "support/files.h"
#include "support/net_namespaces.h"
#include "support/shared_model.h"
#include "support/streamed_process.h"

namespace {

using swarm::test_support::NatNetwork;
using swarm::test_support::NetHost;

struct Flags {
  std::string swarm;
  std::string model = swarm::test_support::kSharedModel;
  int tokens = 64;
  int rounds = 5;
  std::string backend = "cpu";
  int threads = 1;
};

// One setup: its network, its three peers, the client's command.
struct Setup {
  std::string name;  // "direct" or "relayed"
  std::unique_ptr<NatNetwork> net;
  std::vector<std::unique_ptr<swarm::peer::LocalSwarm>> sites;
  std::string bootstrap;
  std::vector<double> ms_per_token;
};

swarm::peer::LocalSwarm& AddSite(Setup& s, const Flags& flags, const NetHost& host,
                                 const std::string& log_dir) {
  swarm::peer::LocalSwarmOptions options{
      .binary = flags.swarm,
      .serve_args = {"-m", flags.model, "--backend", flags.backend, "-t",
                     absl::StrCat(flags.threads), "--listen",
                     absl::StrCat("tcp://", host.address, ":0"), "--dht-bind", host.address},
      .log_dir = log_dir,
      .log_name = "relay-bench-" + s.name};
  s.sites.push_back(std::make_unique<swarm::peer::LocalSwarm>(s.net->SwarmIn(host, options)));
  return *s.sites.back();
}

absl::Status StartSetup(Setup& s, const Flags& flags, const std::string& log_dir) {
  auto net = NatNetwork::Create({.public_hosts = 3});
  if (!net.ok()) return net.status();
  s.net = std::move(*net);
  if (absl::Status verified = s.net->Verify(); !verified.ok()) return verified;
  swarm::peer::LocalSwarm& first = AddSite(s, flags, s.net->public_host(0), log_dir);
  auto head = first.Start({"--blocks", "0:2"});
  if (!head.ok()) return head.status();
  s.bootstrap = first.DhtNode(**head);
  const NetHost& middle = s.name == "relayed" ? s.net->home() : s.net->public_host(2);
  swarm::peer::LocalSwarm& mid = AddSite(s, flags, middle, log_dir);
  swarm::peer::LocalSwarm& tail = AddSite(s, flags, s.net->public_host(1), log_dir);
  auto m = mid.Launch({"--blocks", "2:4", "--initial-peers", s.bootstrap});
  auto t = tail.Launch({"--blocks", "4:5", "--initial-peers", s.bootstrap});
  if (!m.ok()) return m.status();
  if (!t.ok()) return t.status();
  if (absl::Status ready = mid.WaitReady(**m); !ready.ok()) return ready;
  return tail.WaitReady(**t);
}

struct Run {
  bool ok = false;
  double ms_per_token = 0;
  std::string middle_hop;  // the address of the hop that ran blocks 2..4
  std::string err;
};

Run Generate(Setup& s, const Flags& flags, const std::string& err_path) {
  std::vector<std::string> argv = {flags.swarm,
                                   "generate",
                                   "-m",
                                   flags.model,
                                   "-p",
                                   "",
                                   "-n",
                                   absl::StrCat(flags.tokens),
                                   "--temp",
                                   "0",
                                   "--ignore-eos",
                                   "--backend",
                                   flags.backend,
                                   "-t",
                                   absl::StrCat(flags.threads),
                                   "--initial-peers",
                                   s.bootstrap,
                                   "--dht-bind",
                                   s.net->client().address,
                                   "--route-wait",
                                   "30",
                                   "--verify-share",
                                   "0"};
  std::remove(err_path.c_str());
  Run run;
  auto process =
      swarm::test_support::StreamedProcess::Start(s.net->Command(s.net->client(), argv), err_path);
  if (!process.ok()) {
    run.err = std::string(process.status().message());
    return run;
  }
  auto code = (*process)->Finish(std::chrono::seconds(300));
  run.err = swarm::test_support::ReadFile(err_path);
  if (!code.ok() || *code != 0) return run;
  // "generation: N tokens, X tokens/s" and "hop I: ADDRESS blocks 2..4: ..."
  const size_t at = run.err.find("generation: ");
  long long n = 0;
  double tps = 0;
  if (at == std::string::npos ||
      std::sscanf(run.err.c_str() + at, "generation: %lld tokens, %lf tokens/s", &n, &tps) != 2 ||
      tps <= 0) {
    return run;
  }
  run.ms_per_token = 1e3 / tps;
  const size_t hop = run.err.find(" blocks 2..4");
  if (hop != std::string::npos) {
    const size_t start = run.err.rfind(": ", hop);
    if (start != std::string::npos) run.middle_hop = run.err.substr(start + 2, hop - start - 2);
  }
  run.ok = true;
  return run;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  CLI::App app{"Relay cost: per-token latency through a relayed peer against a direct one"};
  app.add_option("--swarm", flags.swarm, "The swarm executable")->required();
  app.add_option("-m,--model", flags.model, "Model GGUF file (5 or more blocks)");
  app.add_option("-n", flags.tokens, "Tokens per generation");
  app.add_option("--rounds", flags.rounds, "Generations per setup, alternating");
  app.add_option("--backend", flags.backend, "Backend of the peers and the client");
  app.add_option("-t,--threads", flags.threads, "Threads per process");
  CLI11_PARSE(app, argc, argv);

  swarm::test_support::ScratchDir scratch;
  std::vector<Setup> setups(2);
  setups[0].name = "direct";
  setups[1].name = "relayed";
  for (Setup& s : setups) {
    if (absl::Status started = StartSetup(s, flags, scratch.path()); !started.ok()) {
      std::fprintf(stderr, "relay_bench: %s: %s\n", s.name.c_str(),
                   std::string(started.message()).c_str());
      return 1;
    }
    // The first generation routes (and waits for the relay); it is not measured.
    Run warm = Generate(s, flags, scratch.File("warm.err"));
    if (!warm.ok) {
      std::fprintf(stderr, "relay_bench: %s: the warm-up generation failed:\n%s\n", s.name.c_str(),
                   warm.err.c_str());
      return 1;
    }
  }
  for (int round = 0; round < flags.rounds; ++round) {
    for (int k = 0; k < 2; ++k) {
      Setup& s = setups[(round + k) % 2];
      Run run = Generate(s, flags, scratch.File("run.err"));
      if (!run.ok) {
        std::fprintf(stderr, "relay_bench: %s: generation failed:\n%s\n", s.name.c_str(),
                     run.err.c_str());
        return 1;
      }
      s.ms_per_token.push_back(run.ms_per_token);
      std::printf("%s\n", nlohmann::json({{"bench", "relay"},
                                          {"setup", s.name},
                                          {"round", round},
                                          {"tokens", flags.tokens},
                                          {"ms_per_token", run.ms_per_token},
                                          {"middle_hop", run.middle_hop}})
                              .dump()
                              .c_str());
      std::fflush(stdout);
    }
  }
  const double direct = Median(setups[0].ms_per_token);
  const double relayed = Median(setups[1].ms_per_token);
  std::printf("%s\n", nlohmann::json({{"bench", "relay"},
                                      {"summary", true},
                                      {"model", flags.model},
                                      {"backend", flags.backend},
                                      {"rounds", flags.rounds},
                                      {"tokens", flags.tokens},
                                      {"direct_median_ms_per_token", direct},
                                      {"relayed_median_ms_per_token", relayed},
                                      {"relay_cost_ms_per_token", relayed - direct}})
                          .dump()
                          .c_str());
  std::fprintf(stderr,
               "per token, median of %d generations of %d tokens: direct %.3f ms, relayed "
               "%.3f ms, relay cost %+.3f ms\n",
               flags.rounds, flags.tokens, direct, relayed, relayed - direct);
  return 0;
}
