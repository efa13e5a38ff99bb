#include "router/ban_list.h"

#include <arpa/inet.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace swarm::router {

std::string AddressKey(std::string_view address) {
  auto hp = registry::ParseTcpAddress(address);
  if (!hp.ok()) return std::string(address);
  std::string host = absl::AsciiStrToLower(hp->host);
  unsigned char raw[sizeof(in6_addr)];
  char text[INET6_ADDRSTRLEN];
  if (inet_pton(AF_INET, host.c_str(), raw) == 1 &&
      inet_ntop(AF_INET, raw, text, sizeof(text)) != nullptr) {
    host = text;
  } else if (inet_pton(AF_INET6, host.c_str(), raw) == 1 &&
             inet_ntop(AF_INET6, raw, text, sizeof(text)) != nullptr) {
    host = absl::StrCat("[", text, "]");
  }
  return absl::StrCat(host, ":", hp->port);
}

BanList::BanList(BanOptions options, Clock clock) : options_(options), clock_(std::move(clock)) {}

template <typename Key>
absl::Time BanList::Ban(absl::flat_hash_map<Key, Entry>& entries, const Key& key, absl::Time now,
                        absl::Duration at_least) {
  auto [it, inserted] = entries.try_emplace(key, Entry{options_.initial, absl::InfinitePast()});
  Entry& e = it->second;
  // A peer that stayed quiet for a long while after its ban starts over.
  if (!inserted && now - e.until > options_.max) e.next_ban = options_.initial;
  const absl::Duration ban = std::max(std::min(e.next_ban, options_.max), at_least);
  // A failure reported while already banned (e.g. several in-flight requests failing at once)
  // extends from now; it still counts as one more failure for the backoff.
  e.until = std::max(e.until, now + ban);
  e.next_ban = std::min(ban * options_.multiplier, options_.max);
  return e.until;
}

absl::Time BanList::ReportFailure(const registry::PeerId& peer, std::string_view address) {
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  if (!address.empty()) Ban(addresses_, AddressKey(address), now);
  return Ban(entries_, peer, now);
}

absl::Time BanList::ReportAddressFailure(std::string_view address) {
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  return Ban(addresses_, AddressKey(address), now, options_.relay_endpoint);
}

void BanList::ReportSuccess(const registry::PeerId& peer, std::string_view address) {
  absl::MutexLock lock(&mu_);
  if (auto it = entries_.find(peer); it != entries_.end() && !it->second.liar) entries_.erase(it);
  if (!address.empty()) {
    auto it = addresses_.find(AddressKey(address));
    if (it != addresses_.end() && !it->second.liar) addresses_.erase(it);
  }
}

void BanList::ReportLie(const registry::PeerId* peer, std::string_view address) {
  const absl::Time until = clock_() + options_.lie;
  absl::MutexLock lock(&mu_);
  auto ban = [&](Entry& e) {
    e.until = std::max(e.until, until);
    e.next_ban = options_.max;
    e.liar = true;
  };
  if (peer != nullptr) {
    ban(entries_.try_emplace(*peer, Entry{options_.initial, absl::InfinitePast()}).first->second);
  }
  if (!address.empty()) {
    ban(addresses_.try_emplace(AddressKey(address), Entry{options_.initial, absl::InfinitePast()})
            .first->second);
  }
}

bool BanList::IsBanned(const registry::PeerId& peer) const { return BannedUntil(peer) > clock_(); }

bool BanList::IsAddressBanned(std::string_view address) const {
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  auto it = addresses_.find(AddressKey(address));
  return it != addresses_.end() && it->second.until > now;
}

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

absl::flat_hash_set<std::string> BanList::BannedAddresses() const {
  const absl::Time now = clock_();
  absl::flat_hash_set<std::string> out;
  absl::MutexLock lock(&mu_);
  for (const auto& [address, e] : addresses_) {
    if (e.until > now) out.insert(address);
  }
  return out;
}

}  // namespace swarm::router
