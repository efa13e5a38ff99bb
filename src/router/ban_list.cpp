#include "router/ban_list.h"

#include <algorithm>

namespace swarm::router {

BanList::BanList(BanOptions options, Clock clock) : options_(options), clock_(std::move(clock)) {}

absl::Time BanList::ReportFailure(const registry::PeerId& peer) {
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = entries_.try_emplace(peer, Entry{options_.initial, absl::InfinitePast()});
  Entry& e = it->second;
  // A peer that stayed quiet for a long while after its ban starts over.
  if (!inserted && now - e.until > options_.max) e.next_ban = options_.initial;
  const absl::Duration ban = std::min(e.next_ban, options_.max);
  // A failure reported while already banned (e.g. several in-flight requests failing at once)
  // extends from now; it still counts as one more failure for the backoff.
  e.until = std::max(e.until, now + ban);
  e.next_ban = std::min(ban * options_.multiplier, options_.max);
  return e.until;
}

void BanList::ReportSuccess(const registry::PeerId& peer) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(peer);
  if (it != entries_.end() && !it->second.liar) entries_.erase(it);
}

void BanList::ReportLie(const registry::PeerId* peer, const std::string& address) {
  const absl::Time until = clock_() + options_.lie;
  absl::MutexLock lock(&mu_);
  if (peer != nullptr) {
    Entry& e =
        entries_.try_emplace(*peer, Entry{options_.initial, absl::InfinitePast()}).first->second;
    e.until = std::max(e.until, until);
    e.next_ban = options_.max;
    e.liar = true;
  }
  if (!address.empty()) {
    absl::Time& end = addresses_[address];
    end = std::max(end, until);
  }
}

bool BanList::IsAddressBanned(const std::string& address) const {
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  auto it = addresses_.find(address);
  return it != addresses_.end() && it->second > now;
}

bool BanList::IsBanned(const registry::PeerId& peer) const { return BannedUntil(peer) > clock_(); }

absl::Time BanList::BannedUntil(const registry::PeerId& peer) const {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(peer);
  return it == entries_.end() ? absl::InfinitePast() : it->second.until;
}

absl::flat_hash_set<registry::PeerId> BanList::Banned() const {
  const absl::Time now = clock_();
  absl::flat_hash_set<registry::PeerId> out;
  absl::MutexLock lock(&mu_);
  for (const auto& [peer, e] : entries_) {
    if (e.until > now) out.insert(peer);
  }
  return out;
}

}  // namespace swarm::router
