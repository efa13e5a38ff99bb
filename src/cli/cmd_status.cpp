// `swarm status`: the swarm's coverage map, read from the DHT: which peers serve which blocks,
// in what state, how fast, with how much KV cache left.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "cli/commands.h"
#include "cli/swarm_secret_flag.h"
#include "model/gguf.h"
#include "model/model_config.h"
#include "peer/block_placement.h"
#include "registry/dht_registry.h"

namespace swarm::cli {
namespace {

struct StatusFlags {
  std::vector<std::string> initial_peers;
  std::string model_path;
  std::string model_id;
  int64_t n_blocks = 0;
  std::string dht_bind = "0.0.0.0";
  bool json = false;
  std::string swarm_secret;
};

std::string Bar(const registry::BlockRange& range, int64_t n_blocks) {
  std::string bar;
  for (int64_t b = 0; b < n_blocks; ++b) bar += range.Contains(b) ? '#' : '.';
  return bar;
}

// "1a2b3c4d 0.4ms, 5e6f7a8b 12ms": the round trips a peer measured to the peers of its next
// blocks (at most a few shown; --json has them all).
std::string RttList(const registry::PeerRecord& p) {
  constexpr size_t kShown = 4;
  std::vector<std::string> parts;
  for (const auto& [id, ms] : p.rtt_ms) {
    if (parts.size() == kShown) {
      parts.push_back(absl::StrCat("+", p.rtt_ms.size() - kShown, " more"));
      break;
    }
    parts.push_back(absl::StrCat(id.ShortHex(), " ", absl::StrFormat("%.3g", ms), "ms"));
  }
  return parts.empty() ? "-" : absl::StrJoin(parts, ", ");
}

absl::Status ShowStatus(const StatusFlags& flags) {
  std::string model_id = flags.model_id;
  int64_t n_blocks = flags.n_blocks;
  if (!flags.model_path.empty()) {
    SWARM_ASSIGN_OR_RETURN(auto file, model::GgufFile::Open(flags.model_path));
    SWARM_ASSIGN_OR_RETURN(auto config, model::ReadModelConfig(*file));
    model_id = config.model_id;
    n_blocks = config.n_layer;
  }
  if (model_id.empty()) return absl::InvalidArgumentError("give -m MODEL.gguf or --model-id ID");
  SWARM_ASSIGN_OR_RETURN(auto swarm_secret, LoadSwarmSecretFlag(flags.swarm_secret));
  const std::string secret_name = swarm_secret ? swarm_secret->Fingerprint() : "";
  registry::DhtRegistryOptions dht;
  dht.bind_address = flags.dht_bind;
  dht.initial_peers = flags.initial_peers;
  dht.client_only = true;
  dht.swarm_secret = std::move(swarm_secret);
  SWARM_ASSIGN_OR_RETURN(auto registry, registry::DhtRegistry::Create(dht));
  SWARM_ASSIGN_OR_RETURN(auto snapshot, registry->Snapshot(model_id));
  for (const registry::PeerRecord& p : snapshot)
    n_blocks = std::max<int64_t>(n_blocks, p.blocks.last);

  std::vector<int> replicas(static_cast<size_t>(n_blocks), 0);
  for (const registry::PeerRecord& p : snapshot) {
    if (p.state != registry::PeerState::kOnline) continue;
    for (int64_t b = std::max(0, p.blocks.first); b < std::min<int64_t>(p.blocks.last, n_blocks);
         ++b) {
      ++replicas[b];
    }
  }
  std::vector<double> throughput = peer::SwarmThroughput(snapshot, n_blocks);

  if (flags.json) {
    nlohmann::json out;
    out["model_id"] = model_id;
    out["private"] = !secret_name.empty();
    if (!secret_name.empty()) out["secret_fingerprint"] = secret_name;
    out["n_blocks"] = n_blocks;
    out["replicas"] = replicas;
    out["block_throughput"] = throughput;
    out["peers"] = nlohmann::json::array();
    for (const registry::PeerRecord& p : snapshot) {
      nlohmann::json rtt = nlohmann::json::object();
      for (const auto& [id, ms] : p.rtt_ms) rtt[id.ToHex()] = ms;
      out["peers"].push_back({{"peer_id", p.peer_id.ToHex()},
                              {"address", p.address},
                              {"state", std::string(registry::PeerStateName(p.state))},
                              {"first_block", p.blocks.first},
                              {"last_block", p.blocks.last},
                              {"decode_tps_per_block", p.decode_tps_per_block},
                              {"prompt_tps_per_block", p.prompt_tps_per_block},
                              {"free_cache_tokens", p.free_cache_tokens},
                              {"total_cache_tokens", p.total_cache_tokens},
                              {"active_sessions", p.active_sessions},
                              {"rtt_ms", rtt}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return absl::OkStatus();
  }
  std::printf("model %s: %lld blocks, %zu peers%s\n\n", model_id.c_str(),
              static_cast<long long>(n_blocks), snapshot.size(),
              secret_name.empty()
                  ? ""
                  : absl::StrCat(", private swarm (secret ", secret_name, ")").c_str());
  std::printf("%-10s %-26s %-8s %-*s %10s %12s  %s\n", "peer", "address", "state",
              static_cast<int>(std::max<int64_t>(n_blocks, 6)), "blocks", "tok/s/blk", "cache free",
              "RTT to next peers");
  for (const registry::PeerRecord& p : snapshot) {
    std::printf("%-10s %-26s %-8s %-*s %10.0f %12lld  %s\n", p.peer_id.ShortHex().c_str(),
                p.address.c_str(), std::string(registry::PeerStateName(p.state)).c_str(),
                static_cast<int>(std::max<int64_t>(n_blocks, 6)), Bar(p.blocks, n_blocks).c_str(),
                p.decode_tps_per_block, static_cast<long long>(p.free_cache_tokens),
                RttList(p).c_str());
  }
  std::printf("\nreplicas per block: ");
  std::vector<int64_t> missing;
  for (int64_t b = 0; b < n_blocks; ++b) {
    std::printf("%d", std::min(replicas[b], 9));
    if (replicas[b] == 0) missing.push_back(b);
  }
  std::printf("\n");
  if (!missing.empty()) {
    std::printf("uncovered blocks:");
    for (int64_t b : missing) std::printf(" %lld", static_cast<long long>(b));
    std::printf("\n");
  }
  return absl::OkStatus();
}

}  // namespace

void AddStatusCommand(CLI::App& app, ExitCode& exit_code) {
  auto flags = std::make_shared<StatusFlags>();
  CLI::App* cmd = app.add_subcommand("status", "Show which peers serve which blocks");
  cmd->footer(
      "Examples:\n"
      "  swarm status -m stories260K.gguf --initial-peers 127.0.0.1:4000\n"
      "  swarm status --model-id 7af1465a4ea597f3 --initial-peers 10.0.0.5:4000 --json");
  cmd->add_option("--initial-peers", flags->initial_peers, "DHT nodes of the swarm (host:port)")
      ->delimiter(',')
      ->required();
  cmd->add_option("-m,--model", flags->model_path, "Model GGUF file (for its id and block count)");
  cmd->add_option("--model-id", flags->model_id, "Model id, instead of -m");
  cmd->add_option("--dht-bind", flags->dht_bind, "Address of this client's DHT node")
      ->capture_default_str();
  cmd->add_flag("--json", flags->json, "Print JSON");
  AddSwarmSecretFlag(*cmd, flags->swarm_secret);
  cmd->callback([flags, &exit_code] {
    absl::Status status = ShowStatus(*flags);
    if (!status.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
      exit_code.value = 1;
    }
  });
}

}  // namespace swarm::cli
