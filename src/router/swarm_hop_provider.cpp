#include "router/swarm_hop_provider.h"

#include <chrono>
#include <future>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace swarm::router {

// A hop whose identity was checked is the peer at that address: its failure bans the address
// too (ids are free to make). Unchecked, the record may have named someone else's address.
// A checked relayed peer's address is its relay's endpoint for it: when the relay dies, that
// endpoint goes while the peer lives on and announces another relay's endpoint within seconds.
// Only the endpoint is banned then, so that the new record is routed to as soon as it is read
// (a peer id ban, growing with each retry of the dead record, outlasted the re-announcement);
// a relayed peer that is dead itself announces no new endpoint, and its old one stays banned.
void SwarmHopProvider::ReportFailure(const ChainHop& hop) {
  auto id = registry::PeerId::FromHex(hop.peer_id);
  if (!id.ok()) return;
  auto owner = owner_.find(hop.address);
  const bool checked = owner != owner_.end() && owner->second == *id;
  if (checked && RelayedAt(*id, hop.address)) {
    bans_.ReportAddressFailure(hop.address);
    return;
  }
  bans_.ReportFailure(*id, checked ? std::string_view(hop.address) : std::string_view());
}

bool SwarmHopProvider::RelayedAt(const registry::PeerId& id, const std::string& address) const {
  const std::string key = AddressKey(address);
  for (const registry::PeerRecord& r : snapshot_) {
    if (r.peer_id == id && r.relayed && AddressKey(r.address) == key) return true;
  }
  return false;
}

void SwarmHopProvider::ReportSuccess(const ChainHop& hop) {
  auto id = registry::PeerId::FromHex(hop.peer_id);
  if (id.ok()) bans_.ReportSuccess(*id, hop.address);
}

void SwarmHopProvider::StepTimed(std::span<const ChainHop> hops, std::span<const double> seconds,
                                 int64_t n_tokens) {
  if (options_.performance == nullptr) return;
  for (size_t k = 0; k < hops.size() && k < seconds.size(); ++k) {
    auto id = registry::PeerId::FromHex(hops[k].peer_id);
    if (!id.ok()) continue;
    options_.performance->ObserveStep(
        *id, static_cast<int64_t>(hops[k].last_block) - hops[k].first_block, n_tokens, seconds[k]);
  }
}

absl::Status SwarmHopProvider::VerifyIdentity(const registry::PeerId& id,
                                              const std::string& address,
                                              absl::StatusOr<transport::InfoReply> answer) {
  if (auto it = owner_.find(address); it != owner_.end()) {
    if (it->second == id) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat("peer ", address, " answers as ", it->second.ShortHex()));
  }
  SWARM_ASSIGN_OR_RETURN(transport::InfoReply info, std::move(answer));
  auto reported = registry::PeerId::FromHex(info.peer_id);
  if (!reported.ok() || reported->IsZero()) {
    return absl::FailedPreconditionError(
        absl::StrCat("peer ", address, " does not say which peer it is"));
  }
  owner_[address] = *reported;
  if (*reported == id) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("peer ", address, " answers as ", reported->ShortHex()));
}

void SwarmHopProvider::ReportLie(const ChainHop& hop) {
  auto id = registry::PeerId::FromHex(hop.peer_id);
  bans_.ReportLie(id.ok() ? &*id : nullptr, hop.address);
}

absl::StatusOr<ChainHop> SwarmHopProvider::Replica(uint32_t first, uint32_t last,
                                                   std::span<const ChainHop> exclude) {
  CollectRefresh();
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  const auto banned = bans_.Banned();
  const registry::PeerRecord* best = nullptr;
  double best_load = 0;
  for (const registry::PeerRecord& r : snapshot_) {
    if (r.state != registry::PeerState::kOnline || r.expiry_unix_ms <= now_ms) continue;
    if (r.blocks.first > static_cast<int32_t>(first) ||
        r.blocks.last < static_cast<int32_t>(last)) {
      continue;
    }
    if (banned.contains(r.peer_id) || bans_.IsAddressBanned(r.address)) continue;
    const std::string id = r.peer_id.ToHex();
    bool excluded = false;
    for (const ChainHop& e : exclude) excluded |= e.address == r.address || e.peer_id == id;
    if (excluded) continue;
    auto it = load_.find(r.peer_id);
    const double load = it == load_.end() ? 0 : it->second;
    if (best == nullptr || load < best_load || (load == best_load && r.peer_id < best->peer_id)) {
      best = &r;
      best_load = load;
    }
  }
  if (best == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("no other online peer serves blocks ", first, "..", last - 1));
  }
  load_[best->peer_id] += 1;
  return ChainHop{best->address, first, last, best->peer_id.ToHex()};
}

absl::StatusOr<std::vector<ChainHop>> SwarmHopProvider::RouteThrough(
    const registry::RegistrySnapshot& snapshot, int64_t first, int64_t last) {
  RouteOptions route_options;
  route_options.start_block = first;
  route_options.end_block = last;
  route_options.load = load_;
  route_options.cache_tokens_needed = options_.cache_tokens_needed;
  if (options_.performance != nullptr) {
    route_options.measured_tps_per_block = options_.performance->MeasuredTps();
  }
  const bool verify = options_.verify_identity && options_.context != nullptr;
  // Each round either returns or excludes one more record (an impostor, or a peer that did not
  // answer), so it ends; the bound only caps the Info queries one call may make.
  constexpr int kMaxRounds = 64;
  // Records that failed their check in this call stay out of it whatever their ban's length: a
  // dead record (a killed peer's, until it expires) would otherwise cost another identity_timeout
  // each time its short first ban ends.
  absl::flat_hash_set<registry::PeerId> failed;
  for (int round = 0;; ++round) {
    route_options.banned = bans_.Banned();
    route_options.banned.insert(failed.begin(), failed.end());
    route_options.banned_addresses = bans_.BannedAddresses();
    SWARM_ASSIGN_OR_RETURN(router::Route route,
                           BuildRoute(snapshot, options_.n_blocks, route_options));
    bool verified = true;
    if (verify) {
      for (const RouteHop& hop : route.hops) {
        absl::StatusOr<transport::InfoReply> answer =
            owner_.contains(hop.address)
                ? absl::StatusOr<transport::InfoReply>(absl::UnknownError("known"))
                : QueryInfo(*options_.context, hop.address,
                            absl::ToChronoMilliseconds(options_.identity_timeout), options_.socket);
        const absl::Status identity = VerifyIdentity(hop.peer_id, hop.address, std::move(answer));
        if (identity.ok()) continue;
        verified = false;
        failed.insert(hop.peer_id);
        // Only the record's id is banned, never the address: on a mismatch the address is the
        // answering peer's; without an answer nothing says whose it is. Except a relayed peer's
        // silent endpoint (its relay died): that endpoint alone, as in ReportFailure.
        if (!absl::IsFailedPrecondition(identity) && RelayedAt(hop.peer_id, hop.address)) {
          bans_.ReportAddressFailure(hop.address);
        } else {
          bans_.ReportFailure(hop.peer_id);
        }
      }
    }
    if (!verified && round + 1 < kMaxRounds) continue;
    if (!verified) return absl::UnavailableError("route: too many records failed their check");
    std::vector<ChainHop> hops;
    for (const RouteHop& hop : route.hops) {
      hops.push_back({hop.address, static_cast<uint32_t>(hop.blocks.first),
                      static_cast<uint32_t>(hop.blocks.last), hop.peer_id.ToHex()});
      load_[hop.peer_id] += 1;
    }
    return hops;
  }
}

void SwarmHopProvider::CollectRefresh() {
  if (!refresh_.valid()) return;
  if (refresh_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return;
  auto snapshot = refresh_.get();
  // A read started before the last synchronous one (Route) is older: drop it.
  if (snapshot.ok() && !snapshot->empty() && refresh_started_ >= snapshot_time_) {
    snapshot_ = std::move(*snapshot);
    snapshot_time_ = refresh_started_;
  }
}

void SwarmHopProvider::StepDone() {
  CollectRefresh();
  if (refresh_.valid() || options_.refresh_interval <= absl::ZeroDuration()) return;
  const absl::Time now = absl::Now();
  if (now - refresh_started_ < options_.min_refresh_gap) return;
  bool due = now - snapshot_time_ >= options_.refresh_interval;
  const int64_t soon = absl::ToUnixMillis(now + options_.min_refresh_gap);
  for (const registry::PeerRecord& r : snapshot_) due |= r.expiry_unix_ms <= soon;
  if (!due) return;
  refresh_started_ = now;
  refresh_ = std::async(std::launch::async, [registry = &registry_, model_id = options_.model_id] {
    return registry->Snapshot(model_id);
  });
}

absl::StatusOr<std::vector<ChainHop>> SwarmHopProvider::Replace(uint32_t first, uint32_t last) {
  CollectRefresh();
  const absl::Time now = absl::Now();
  if (!snapshot_.empty() && now - snapshot_time_ <= options_.cached_snapshot_age) {
    registry::RegistrySnapshot unexpired;
    for (const registry::PeerRecord& r : snapshot_) {
      if (r.expiry_unix_ms > absl::ToUnixMillis(now)) unexpired.push_back(r);
    }
    auto hops = RouteThrough(unexpired, first, last);
    if (hops.ok()) return hops;
  }
  return Route(first, last);
}

absl::StatusOr<std::vector<ChainHop>> SwarmHopProvider::Route(int64_t first, int64_t last) {
  const absl::Time deadline = absl::Now() + options_.route_wait;
  absl::Status last_error = absl::UnavailableError("no registry snapshot read");
  while (true) {
    auto snapshot = registry_.Snapshot(options_.model_id);
    if (snapshot.ok()) {
      snapshot_ = std::move(*snapshot);
      snapshot_time_ = absl::Now();
      auto hops = RouteThrough(snapshot_, first, last);
      if (hops.ok()) return hops;
      last_error = hops.status();
    } else {
      last_error = snapshot.status();
    }
    // The DHT has no change notification that covers every way a route can appear (a peer
    // joining, a ban ending), so poll at a modest rate until the deadline.
    if (absl::Now() + options_.poll_interval > deadline) break;
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(options_.poll_interval));
  }
  return absl::UnavailableError(
      absl::StrCat("no route over blocks ", first, "..", last, " after waiting ",
                   absl::FormatDuration(options_.route_wait), ": ", last_error.message()));
}

}  // namespace swarm::router
