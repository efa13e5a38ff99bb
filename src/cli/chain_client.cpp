// Opening the blocks of `swarm generate` and `swarm chat`: in-process, a fixed chain, or a route
// through the swarm.
#include "cli/chain_client.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "cli/swarm_secret_flag.h"
#include "shard/local_pipeline.h"
#include "transport/codec.h"

namespace swarm::cli {
namespace {

absl::StatusOr<router::ChainOptions> MakeChainOptions(
    const ChainFlags& flags, int64_t max_length,
    const std::optional<transport::SwarmSecret>& swarm_secret) {
  router::ChainOptions options;
  SWARM_ASSIGN_OR_RETURN(options.codec, transport::ParseCodec(flags.codec));
  options.max_length = max_length;
  options.min_step_timeout = std::chrono::milliseconds(flags.min_step_timeout_ms);
  options.max_step_timeout = std::chrono::milliseconds(flags.max_step_timeout_ms);
  if (swarm_secret) {
    // A member of a private swarm: every connection to a peer is CurveZMQ with the swarm's keys.
    SWARM_ASSIGN_OR_RETURN(auto keys, transport::DeriveCurveKeys(*swarm_secret));
    options.socket.curve = transport::SwarmCurveClient(keys);
  }
  options.verify.share = flags.verify_share;
  options.verify.cross_backend_tolerance = flags.verify_tolerance;
  return options;
}

// The blocks run through a chain the router builds from the swarm's DHT records, with failover.
absl::StatusOr<std::unique_ptr<router::ChainSession>> OpenSwarmChain(
    zmq::context_t& context, const ChainFlags& flags, const model::ModelConfig& config,
    int64_t max_length, const std::optional<transport::SwarmSecret>& swarm_secret,
    SwarmClient& client) {
  SWARM_ASSIGN_OR_RETURN(auto options, MakeChainOptions(flags, max_length, swarm_secret));
  if (client.registry == nullptr) {
    registry::DhtRegistryOptions dht;
    dht.bind_address = flags.dht_bind;
    dht.initial_peers = flags.initial_peers;
    dht.client_only = true;
    dht.swarm_secret = swarm_secret;
    // Reaching the DHT is part of finding peers: a bootstrap node that is restarting (or briefly
    // unreachable) is waited for as long as missing blocks are, not failed after a fixed 10 s.
    dht.connect_timeout = std::max(absl::Seconds(1), absl::Seconds(flags.route_wait_s));
    SWARM_ASSIGN_OR_RETURN(client.registry, registry::DhtRegistry::Create(dht));
  }
  if (client.provider == nullptr) {
    router::SwarmHopProviderOptions provider_options;
    provider_options.model_id = config.model_id;
    provider_options.n_blocks = config.n_layer;
    provider_options.cache_tokens_needed = max_length;
    provider_options.route_wait =
        absl::Milliseconds(static_cast<int64_t>(flags.route_wait_s * 1e3));
    provider_options.performance = &client.performance;
    provider_options.context = &context;
    provider_options.socket = options.socket;
    client.provider =
        std::make_unique<router::SwarmHopProvider>(*client.registry, provider_options);
  }
  SWARM_ASSIGN_OR_RETURN(auto hops, client.provider->InitialRoute());
  return router::ChainSession::Open(context, std::move(hops), config.n_layer, config.n_embd,
                                    options, client.provider.get());
}

// The blocks run through a fixed chain of peers: each peer's whole span, in the given order.
absl::StatusOr<std::unique_ptr<router::ChainSession>> OpenFixedChain(
    zmq::context_t& context, const ChainFlags& flags, const model::ModelConfig& config,
    int64_t max_length, const std::optional<transport::SwarmSecret>& swarm_secret) {
  SWARM_ASSIGN_OR_RETURN(auto options, MakeChainOptions(flags, max_length, swarm_secret));
  std::vector<router::ChainHop> hops;
  for (const std::string& address : flags.peers) {
    SWARM_ASSIGN_OR_RETURN(
        auto info, router::QueryInfo(context, address, options.open_timeout, options.socket));
    if (info.model_id != config.model_id) {
      return absl::FailedPreconditionError(absl::StrCat("peer ", address, " serves model ",
                                                        info.model_id, ", not ", config.model_id));
    }
    hops.push_back({address, info.first_block, info.last_block, info.peer_id});
  }
  return router::ChainSession::Open(context, std::move(hops), config.n_layer, config.n_embd,
                                    options);
}

}  // namespace

void AddChainFlags(CLI::App& cmd, ChainFlags& flags) {
  cmd.add_option("--peers", flags.peers,
                 "A fixed chain of peers (ZeroMQ endpoints, comma-separated, in block order)")
      ->delimiter(',');
  cmd.add_option("--initial-peers", flags.initial_peers,
                 "DHT nodes of the swarm (host:port, comma-separated): route automatically")
      ->delimiter(',');
  cmd.add_option("--dht-bind", flags.dht_bind, "Address of this client's DHT node")
      ->capture_default_str();
  cmd.add_option("--route-wait", flags.route_wait_s,
                 "Seconds to wait for the swarm's DHT to answer, and for peers covering every "
                 "block, before giving up")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  cmd.add_option("--min-step-timeout-ms", flags.min_step_timeout_ms,
                 "A peer silent this long (or 20x its usual step time) is replaced")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{10}, int64_t{3600000}));
  cmd.add_option("--max-step-timeout-ms", flags.max_step_timeout_ms,
                 "However long the prompt, a step not answered within this long fails its peer")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{10}, int64_t{86400000}));
  cmd.add_option("--codec", flags.codec,
                 "Activation codec on the wire: f32, f16, bf16, int8; +zstd to compress")
      ->capture_default_str();
  cmd.add_option("--verify-share", flags.verify_share,
                 "Share of steps also run on another peer serving the same blocks and compared "
                 "(a new peer's first steps and, after a mismatch, every step are checked too; "
                 "0: off). Outputs are always checked for NaN, zeros and absurd norms")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd.add_option("--verify-tolerance", flags.verify_tolerance,
                 "Relative error allowed between peers of different backends (-1: the measured "
                 "table of docs/VERIFICATION.md); the same CPU backend must match bit for bit")
      ->capture_default_str()
      ->check(CLI::Range(-1.0, 1e3));
  AddSwarmSecretFlag(cmd, flags.swarm_secret);
}

absl::StatusOr<std::optional<transport::SwarmSecret>> LoadChainSecret(const ChainFlags& flags) {
  if (flags.in_process() && !flags.swarm_secret.empty()) {
    return absl::InvalidArgumentError(
        "--swarm-secret is for a swarm: give --initial-peers or --peers");
  }
  return LoadSwarmSecretFlag(flags.swarm_secret);
}

absl::StatusOr<OpenedBlocks> OpenBlocks(zmq::context_t& context, const ChainFlags& flags,
                                        shard::LocalModel& m, int64_t max_length,
                                        const std::optional<transport::SwarmSecret>& swarm_secret,
                                        SwarmClient& client) {
  OpenedBlocks opened;
  if (flags.in_process()) {
    SWARM_ASSIGN_OR_RETURN(opened.pipeline, shard::LocalPipeline::Create(*m.blocks, max_length));
    return opened;
  }
  std::unique_ptr<router::ChainSession> chain;
  if (flags.peers.empty()) {
    SWARM_ASSIGN_OR_RETURN(
        chain, OpenSwarmChain(context, flags, m.config, max_length, swarm_secret, client));
  } else {
    SWARM_ASSIGN_OR_RETURN(chain,
                           OpenFixedChain(context, flags, m.config, max_length, swarm_secret));
  }
  opened.chain = chain.get();
  opened.pipeline = std::move(chain);
  return opened;
}

std::string ChainSpeculationSummary(const router::ChainSession& chain) {
  return absl::StrCat(", chain: ", chain.rollbacks(), " rollbacks (", chain.rolled_back_positions(),
                      " positions dropped), up to ", chain.max_in_flight(), " steps in flight");
}

void PrintChainReport(const router::ChainSession& chain) {
  if (chain.failovers() > 0) {
    std::fprintf(stderr, "failovers: %d, %.3f s replacing peers and replaying history\n",
                 chain.failovers(), chain.failover_seconds());
    // Where each one's time went: noticing the loss, finding a route, opening, replaying.
    for (const router::FailoverEvent& e : chain.failover_events()) {
      std::fprintf(stderr,
                   "  hop %d (%s): detected after %.3f s; route %.3f s, open %.3f s, replay %.3f s "
                   "(%lld positions), %d attempts\n",
                   e.hop, e.reason.c_str(), e.detect_seconds, e.route_seconds, e.open_seconds,
                   e.replay_seconds, static_cast<long long>(e.replayed_positions), e.attempts);
    }
  }
  std::fprintf(stderr, "%s\n", chain.verification().Summary().c_str());
  for (size_t i = 0; i < chain.hops().size(); ++i) {
    const router::ChainHop& hop = chain.hops()[i];
    const router::HopTiming& t = chain.timings()[i];
    std::fprintf(stderr, "hop %zu: %s blocks %u..%u: %lld steps, %.2f ms/step\n", i,
                 hop.address.c_str(), hop.first_block, hop.last_block,
                 static_cast<long long>(t.steps), t.steps ? 1e3 * t.seconds / t.steps : 0.0);
  }
}

}  // namespace swarm::cli
