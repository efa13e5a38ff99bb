// Routes a client's session through the swarm: reads the model's peer records from the DHT,
// builds the cheapest chain (route_builder.h) avoiding banned peers and addresses, and finds
// replacements for failed hops. Spreads this client's sessions over replicas by counting the
// sessions it placed on each peer, feeds the hops' measured step times to the client's
// PeerPerformance (which the next routes use instead of claims), and checks that the peer
// answering at a record's address is the record's peer before routing to it.
// Owned by the client; one thread at a time (the session's).
#pragma once

#include <cstdint>
#include <future>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "registry/dht_registry.h"
#include "router/ban_list.h"
#include "router/chain_session.h"
#include "router/peer_performance.h"
#include "router/route_builder.h"

namespace swarm::router {

struct SwarmHopProviderOptions {
  std::string model_id;
  int64_t n_blocks = 0;
  int64_t cache_tokens_needed = 0;
  // How long to keep looking (re-reading the registry) when no route covers the blocks.
  absl::Duration route_wait = absl::Seconds(20);
  absl::Duration poll_interval = absl::Milliseconds(250);
  // A replacement is first looked for in the last snapshot read, if it is at most this old
  // (records past their expiry are skipped): failover then costs no DHT round trip. The DHT is
  // read when the cached records offer no route.
  absl::Duration cached_snapshot_age = absl::Seconds(10);
  // The snapshot is re-read in the background (StepDone(): one read at a time, never blocking a
  // step) when it is this old, or when one of its records expires within min_refresh_gap; at
  // most once per min_refresh_gap. So during a long session a failure finds a usable snapshot
  // instead of paying a DHT read. Zero: no background reads.
  absl::Duration refresh_interval = absl::Seconds(4);
  absl::Duration min_refresh_gap = absl::Seconds(1);
  BanOptions bans;
  // The client's measurements of peers (shared by its sessions; outlives the provider). Null: the
  // claims alone, capped against each other.
  PeerPerformance* performance = nullptr;
  // Before a route uses a record, the peer at its address is asked for its Info; a peer that
  // answers with another id is not the record's: the record is skipped and its id banned (the
  // address belongs to the peer that answered). No answer within identity_timeout is a failure of
  // the record's peer. A check holds for the provider's life. Needs `context`.
  bool verify_identity = true;
  zmq::context_t* context = nullptr;
  absl::Duration identity_timeout = absl::Seconds(2);
  transport::ClientOptions socket;  // for the identity checks (keys of a private swarm)
  // Bans shared with other providers (the gateway's requests: a liar one request caught stays out
  // of the next); null: this provider's own, with `bans`. Must outlive the provider.
  BanList* shared_bans = nullptr;
};

class SwarmHopProvider : public HopProvider {
 public:
  SwarmHopProvider(registry::DhtRegistry& registry, const SwarmHopProviderOptions& options)
      : registry_(registry),
        options_(options),
        own_bans_(options.bans),
        bans_(options.shared_bans != nullptr ? *options.shared_bans : own_bans_) {}
  // Waits for a background read in flight (at most the registry's op_timeout).
  ~SwarmHopProvider() override = default;

  // A chain over every block.
  absl::StatusOr<std::vector<ChainHop>> InitialRoute() { return Route(0, options_.n_blocks); }

  void ReportFailure(const ChainHop& hop) override;
  void ReportSuccess(const ChainHop& hop) override;
  absl::StatusOr<std::vector<ChainHop>> Replace(uint32_t first, uint32_t last) override;
  void StepDone() override;
  void StepTimed(std::span<const ChainHop> hops, std::span<const double> seconds,
                 int64_t n_tokens) override;
  // Bans the peer's id and address for BanOptions::lie.
  void ReportLie(const ChainHop& hop) override;
  // From the last snapshot: the online, unbanned peer serving [first, last) that this client
  // loads least (ties: lowest id), none of `exclude`'s ids or addresses.
  absl::StatusOr<ChainHop> Replica(uint32_t first, uint32_t last,
                                   std::span<const ChainHop> exclude) override;

  // The last snapshot read (for status displays and the gateway's dashboard).
  const registry::RegistrySnapshot& last_snapshot() const { return snapshot_; }
  const BanList& bans() const { return bans_; }

 private:
  absl::StatusOr<std::vector<ChainHop>> Route(int64_t first, int64_t last);
  // The route over [first, last) through `snapshot` avoiding banned peers, counted in load_.
  absl::StatusOr<std::vector<ChainHop>> RouteThrough(const registry::RegistrySnapshot& snapshot,
                                                     int64_t first, int64_t last);

  // Asks the peer at `address` who it is: OK when it is `id`; FailedPrecondition naming the id
  // it reported otherwise (remembered in owner_); the query's error when it did not answer.
  // `answer`: what the peer at `address` answered to an Info query (unused when the address's
  // owner is already known).
  // Whether the last snapshot has `id` relayed at `address` (a relay's endpoint for it).
  bool RelayedAt(const registry::PeerId& id, const std::string& address) const;

  absl::Status VerifyIdentity(const registry::PeerId& id, const std::string& address,
                              absl::StatusOr<transport::InfoReply> answer);

  registry::DhtRegistry& registry_;
  SwarmHopProviderOptions options_;
  BanList own_bans_;
  BanList& bans_;  // own_bans_ or options.shared_bans
  absl::flat_hash_map<registry::PeerId, double> load_;
  // Who answered at each address asked (the record's id or another): records announcing an
  // address that answered as someone else are skipped without asking again.
  absl::flat_hash_map<std::string, registry::PeerId> owner_;
  registry::RegistrySnapshot snapshot_;
  absl::Time snapshot_time_ = absl::InfinitePast();
  // A background read of the registry, and when it was started.
  std::future<absl::StatusOr<registry::RegistrySnapshot>> refresh_;
  absl::Time refresh_started_ = absl::InfinitePast();
  // Takes the background read's result if it is ready.
  void CollectRefresh();
};

}  // namespace swarm::router
