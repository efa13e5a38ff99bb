// `swarm status`: the swarm's coverage map, read from the DHT: which peers serve which blocks,
// in what state, how fast they claim to be, with how much KV cache left; whether the peer at each
// record's address is the record's peer (asked for its Info), and which spans of blocks more than
// one distinct peer serves (their work can be checked against each other: verifiable) or only one
// (unverifiable).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <map>
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
#include "router/ban_list.h"
#include "router/chain_session.h"
#include "transport/swarm_secret.h"
#include "transport/zmq_socket.h"

namespace swarm::cli {
namespace {

struct StatusFlags {
  std::vector<std::string> initial_peers;
  std::string model_path;
  std::string model_id;
  int64_t n_blocks = 0;
  std::string dht_bind = "0.0.0.0";
  bool json = false;
  bool no_probe = false;
  double probe_timeout_s = 2;
  std::string swarm_secret;
};

// What asking the peer at a record's address for its Info found.
struct Identity {
  enum Kind { kNotChecked, kOk, kMismatch, kNoAnswer } kind = kNotChecked;
  std::string detail;  // the id it answered with, or why no answer came

  std::string_view Name() const {
    switch (kind) {
      case kOk:
        return "ok";
      case kMismatch:
        return "mismatch";
      case kNoAnswer:
        return "no answer";
      case kNotChecked:
        break;
    }
    return "not checked";
  }
  // For the table: "ok", "answers as 1a2b3c4d", "no answer", "-".
  std::string Short() const {
    switch (kind) {
      case kOk:
        return "ok";
      case kMismatch:
        return absl::StrCat("answers as ", detail.substr(0, 8));
      case kNoAnswer:
        return "no answer";
      case kNotChecked:
        break;
    }
    return "-";
  }
};

// Asks every online peer, in parallel, who it is.
std::vector<Identity> ProbeIdentities(const registry::RegistrySnapshot& snapshot,
                                      std::chrono::milliseconds timeout,
                                      const transport::ClientOptions& socket) {
  zmq::context_t context(1);
  std::vector<std::future<Identity>> pending;
  for (const registry::PeerRecord& p : snapshot) {
    if (p.state != registry::PeerState::kOnline) {
      pending.push_back(std::async(std::launch::deferred, [] { return Identity{}; }));
      continue;
    }
    pending.push_back(std::async(std::launch::async, [&context, &p, timeout, &socket] {
      auto info = router::QueryInfo(context, p.address, timeout, socket);
      if (!info.ok()) return Identity{Identity::kNoAnswer, std::string(info.status().message())};
      auto id = registry::PeerId::FromHex(info->peer_id);
      if (id.ok() && *id == p.peer_id) return Identity{Identity::kOk, info->peer_id};
      return Identity{Identity::kMismatch, info->peer_id};
    }));
  }
  std::vector<Identity> out;
  for (auto& f : pending) out.push_back(f.get());
  return out;
}

// A run of consecutive blocks served by the same distinct peers.
struct Span {
  int64_t first = 0, last = 0;        // [first, last)
  std::vector<std::string> peer_ids;  // one per distinct peer (address), the first id seen there
  bool verifiable() const { return peer_ids.size() >= 2; }
};

// Online records that passed their identity check (all online ones when not probed), counted
// once per address: one process announcing several ids is one peer.
std::vector<Span> Spans(const registry::RegistrySnapshot& snapshot,
                        const std::vector<Identity>& identities, int64_t n_blocks) {
  std::vector<std::map<std::string, std::string>> serving(static_cast<size_t>(n_blocks));
  for (size_t k = 0; k < snapshot.size(); ++k) {
    const registry::PeerRecord& p = snapshot[k];
    if (p.state != registry::PeerState::kOnline) continue;
    if (identities[k].kind != Identity::kOk && identities[k].kind != Identity::kNotChecked) {
      continue;
    }
    const std::string address = router::AddressKey(p.address);
    for (int64_t b = std::max(0, p.blocks.first); b < std::min<int64_t>(p.blocks.last, n_blocks);
         ++b) {
      serving[b].try_emplace(address, p.peer_id.ToHex());
    }
  }
  std::vector<Span> spans;
  for (int64_t b = 0; b < n_blocks; ++b) {
    std::vector<std::string> ids;
    for (const auto& [address, id] : serving[b]) ids.push_back(id);
    if (!spans.empty() && spans.back().last == b &&
        std::equal(serving[b].begin(), serving[b].end(), serving[b - 1].begin(),
                   serving[b - 1].end())) {
      spans.back().last = b + 1;
    } else {
      spans.push_back(Span{b, b + 1, std::move(ids)});
    }
  }
  return spans;
}

std::string SpanVerdict(const Span& span) {
  const size_t n = span.peer_ids.size();
  if (n == 0) return "0 peers: uncovered";
  if (n == 1) return "1 peer: unverifiable";
  return absl::StrCat(n, " peers: verifiable");
}

std::string Bar(const registry::BlockRange& range, int64_t n_blocks) {
  std::string bar;
  for (int64_t b = 0; b < n_blocks; ++b) bar += range.Contains(b) ? '#' : '.';
  return bar;
}

// "3.0 MiB / 2048 tok": the free cache in bytes (a version 1 record has none) and in positions of
// the peer's cache types.
std::string CacheFreeText(const registry::PeerRecord& p) {
  const std::string tokens = absl::StrCat(p.free_cache_tokens, " tok");
  if (p.total_cache_bytes <= 0) return tokens;
  return absl::StrCat(
      absl::StrFormat("%.1f MiB", static_cast<double>(p.free_cache_bytes) / (1 << 20)), " / ",
      tokens);
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
  transport::ClientOptions socket;  // CurveZMQ with the swarm's keys in a private swarm
  if (swarm_secret) {
    SWARM_ASSIGN_OR_RETURN(auto keys, transport::DeriveCurveKeys(*swarm_secret));
    socket.curve = transport::SwarmCurveClient(keys);
  }
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
  std::vector<Identity> identities(snapshot.size());
  if (!flags.no_probe) {
    identities = ProbeIdentities(
        snapshot, std::chrono::milliseconds(static_cast<int64_t>(flags.probe_timeout_s * 1e3)),
        socket);
  }
  const std::vector<Span> spans = Spans(snapshot, identities, n_blocks);

  if (flags.json) {
    nlohmann::json out;
    out["model_id"] = model_id;
    out["private"] = !secret_name.empty();
    if (!secret_name.empty()) out["secret_fingerprint"] = secret_name;
    out["n_blocks"] = n_blocks;
    out["replicas"] = replicas;
    out["block_throughput"] = throughput;
    out["spans"] = nlohmann::json::array();
    for (const Span& span : spans) {
      out["spans"].push_back({{"first_block", span.first},
                              {"last_block", span.last},
                              {"peers", span.peer_ids.size()},
                              {"peer_ids", span.peer_ids},
                              {"verifiable", span.verifiable()}});
    }
    out["peers"] = nlohmann::json::array();
    for (size_t k = 0; k < snapshot.size(); ++k) {
      const registry::PeerRecord& p = snapshot[k];
      nlohmann::json rtt = nlohmann::json::object();
      for (const auto& [id, ms] : p.rtt_ms) rtt[id.ToHex()] = ms;
      out["peers"].push_back(
          {{"peer_id", p.peer_id.ToHex()},
           {"address", p.address},
           {"state", std::string(registry::PeerStateName(p.state))},
           {"first_block", p.blocks.first},
           {"last_block", p.blocks.last},
           {"decode_tps_per_block", p.decode_tps_per_block},
           {"prompt_tps_per_block", p.prompt_tps_per_block},
           {"free_cache_tokens", p.free_cache_tokens},
           {"total_cache_tokens", p.total_cache_tokens},
           {"free_cache_bytes", p.free_cache_bytes},
           {"total_cache_bytes", p.total_cache_bytes},
           {"active_sessions", p.active_sessions},
           {"rtt_ms", rtt},
           {"relayed", p.relayed},
           {"relay_peer", p.relayed ? p.relay_peer.ToHex() : ""},
           {"relay_address", p.relay_address},
           {"relay_mbit", p.relay_mbit},
           {"relayed_peers", p.relayed_peers},
           {"identity", std::string(identities[k].Name())},
           {"answered_as", identities[k].kind == Identity::kMismatch ? identities[k].detail : ""}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return absl::OkStatus();
  }
  std::printf("model %s: %lld blocks, %zu peers%s\n\n", model_id.c_str(),
              static_cast<long long>(n_blocks), snapshot.size(),
              secret_name.empty()
                  ? ""
                  : absl::StrCat(", private swarm (secret ", secret_name, ")").c_str());
  // Throughput is what each peer claims in its record: routing trusts only what a client
  // measures (router::PeerPerformance).
  std::printf("%-10s %-26s %-8s %-*s %11s %22s  %-20s %s\n", "peer", "address", "state",
              static_cast<int>(std::max<int64_t>(n_blocks, 6)), "blocks", "claimed t/s",
              "cache free", "identity", "RTT to next peers");
  for (size_t k = 0; k < snapshot.size(); ++k) {
    const registry::PeerRecord& p = snapshot[k];
    std::printf("%-10s %-26s %-8s %-*s %11.4g %22s  %-20s %s\n", p.peer_id.ShortHex().c_str(),
                p.address.c_str(), std::string(registry::PeerStateName(p.state)).c_str(),
                static_cast<int>(std::max<int64_t>(n_blocks, 6)), Bar(p.blocks, n_blocks).c_str(),
                p.decode_tps_per_block, CacheFreeText(p).c_str(), identities[k].Short().c_str(),
                RttList(p).c_str());
  }
  // Peers behind NAT: reached through the relay that opened their address.
  for (const registry::PeerRecord& p : snapshot) {
    if (p.relayed) {
      std::printf("%s is relayed by %s\n", p.peer_id.ShortHex().c_str(),
                  p.relay_peer.ShortHex().c_str());
    }
  }
  std::printf(
      "\nspans (distinct peers whose identity checked out; a span one peer serves has no other\n"
      "peer to check its work against):\n");
  for (const Span& span : spans) {
    const std::string blocks = span.last - span.first == 1
                                   ? absl::StrCat(span.first)
                                   : absl::StrCat(span.first, "..", span.last - 1);
    std::printf("  blocks %-10s %s\n", blocks.c_str(), SpanVerdict(span).c_str());
  }
  std::printf("\nonline records per block: ");
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
  cmd->add_flag("--no-probe", flags->no_probe,
                "Do not ask each peer who it is (identity shows '-', every online record counts)");
  cmd->add_option("--probe-timeout", flags->probe_timeout_s,
                  "Seconds to wait for each peer's Info answer")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
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
