#include "peer/admission.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "base/checked_math.h"
#include "transport/codec.h"
#include "transport/protocol.h"

namespace swarm::peer {
namespace {

// A share of the budget, but at least one session of the longest length (or the whole budget
// when that is smaller).
int64_t ShareOf(double share, int64_t cache_tokens, int64_t max_session_length) {
  const auto part = static_cast<int64_t>(std::floor(std::clamp(share, 0.0, 1.0) * cache_tokens));
  return std::max(part, std::min(max_session_length, cache_tokens));
}

std::string MiB(int64_t bytes) {
  if (bytes < (1 << 20)) return absl::StrCat(bytes, " bytes");
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return text;
}

}  // namespace

std::string IdentityOf(std::string_view curve_user_id, std::string_view peer_address,
                       std::string_view connection) {
  if (!curve_user_id.empty()) return absl::StrCat("key:", ToAbsl(curve_user_id));
  const bool loopback = peer_address.starts_with("127.") || peer_address == "::1" ||
                        peer_address.starts_with("::ffff:127.");
  // No address at all: not TCP (ipc://, inproc://), so this machine too.
  if (peer_address.empty() || loopback) {
    return absl::StrCat("local:", absl::BytesToHexString(ToAbsl(connection)));
  }
  return absl::StrCat("ip:", ToAbsl(peer_address));
}

int64_t MaxMessageBytes(int64_t n_embd, int64_t max_tokens) {
  constexpr uint64_t kHuge = uint64_t{1} << 62;  // as good as no limit, and fits int64_t
  const transport::Codec widest{.dtype = transport::Dtype::kF32, .zstd = true};
  const auto values = CheckedMul(static_cast<uint64_t>(std::max<int64_t>(n_embd, 1)),
                                 static_cast<uint64_t>(std::max<int64_t>(max_tokens, 1)));
  if (!values) return static_cast<int64_t>(kHuge);
  auto tensor = transport::MaxEncodedSize(widest, *values);
  if (!tensor.ok()) return static_cast<int64_t>(kHuge);
  // Frames are limited one by one: the larger of a tensor and a header, with a header's slack.
  const auto limit = CheckedAdd(std::max<uint64_t>(*tensor, transport::kMaxHeaderBytes),
                                transport::kMaxHeaderBytes);
  return static_cast<int64_t>(limit ? std::min(*limit, kHuge) : kHuge);
}

Admission::Admission(const QuotaLimits& limits, int64_t cache_tokens, int64_t max_session_length)
    : limits_(limits),
      connection_tokens_(
          ShareOf(limits.cache_share_per_connection, cache_tokens, max_session_length)),
      identity_tokens_(ShareOf(limits.cache_share_per_identity, cache_tokens, max_session_length)) {
}

Admission::Ticket& Admission::Ticket::operator=(Ticket&& other) noexcept {
  if (this != &other) {
    Release();
    admission_ = std::exchange(other.admission_, nullptr);
    holder_ = std::move(other.holder_);
    charge_ = std::exchange(other.charge_, QuotaUsage{});
  }
  return *this;
}

void Admission::Ticket::Release() {
  if (admission_ == nullptr) return;
  admission_->Add(holder_, charge_, -1);
  admission_ = nullptr;
  charge_ = {};
}

void Admission::Ticket::Transfer(Requester to) {
  if (admission_ == nullptr || to == holder_) return;
  admission_->Add(holder_, charge_, -1);
  holder_ = std::move(to);
  admission_->Add(holder_, charge_, +1);
}

void Admission::Add(const Requester& who, const QuotaUsage& charge, int sign) {
  auto apply = [&](absl::flat_hash_map<std::string, QuotaUsage>& map, const std::string& key) {
    QuotaUsage& usage = map[key];
    usage.sessions += sign * charge.sessions;
    usage.cache_tokens += sign * charge.cache_tokens;
    usage.queued_steps += sign * charge.queued_steps;
    usage.queued_bytes += sign * charge.queued_bytes;
    if (usage.empty()) map.erase(key);
  };
  apply(connections_, who.connection);
  apply(identities_, who.identity);
}

Admission::Ticket Admission::Charge(const Requester& who, const QuotaUsage& charge) {
  Add(who, charge, +1);
  Ticket ticket;
  ticket.admission_ = this;
  ticket.holder_ = who;
  ticket.charge_ = charge;
  return ticket;
}

absl::StatusOr<Admission::Ticket> Admission::AdmitSession(const Requester& who, int64_t tokens) {
  const QuotaUsage conn = connection(who.connection);
  const QuotaUsage ident = identity(who.identity);
  if (conn.sessions >= limits_.sessions_per_connection) {
    return absl::ResourceExhaustedError(
        absl::StrCat("quota: sessions per connection: ", conn.sessions, " open, at most ",
                     limits_.sessions_per_connection, "; close one or try another peer"));
  }
  if (ident.sessions >= limits_.sessions_per_identity) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "quota: sessions per identity (", who.identity, "): ", ident.sessions, " open, at most ",
        limits_.sessions_per_identity, "; close one or try another peer"));
  }
  if (conn.cache_tokens + tokens > connection_tokens_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "quota: KV-cache positions per connection: ", conn.cache_tokens, " reserved + ", tokens,
        " asked > ", connection_tokens_, "; close a session or try another peer"));
  }
  if (ident.cache_tokens + tokens > identity_tokens_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("quota: KV-cache positions per identity (", who.identity,
                     "): ", ident.cache_tokens, " reserved + ", tokens, " asked > ",
                     identity_tokens_, "; close a session or try another peer"));
  }
  return Charge(who, QuotaUsage{.sessions = 1, .cache_tokens = tokens});
}

absl::StatusOr<Admission::Ticket> Admission::AdmitStep(const Requester& who, int64_t bytes) {
  const QuotaUsage conn = connection(who.connection);
  const QuotaUsage ident = identity(who.identity);
  // Nothing waiting: the step is taken whatever its size (the message size limit bounds it).
  if (conn.queued_steps > 0) {
    if (conn.queued_steps >= limits_.queued_steps_per_connection) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "quota: queued steps per connection: ", conn.queued_steps, " waiting, at most ",
          limits_.queued_steps_per_connection, "; wait for outputs before sending more"));
    }
    if (conn.queued_bytes + bytes > limits_.queued_bytes_per_connection) {
      return absl::ResourceExhaustedError(
          absl::StrCat("quota: queued bytes per connection: ", MiB(conn.queued_bytes),
                       " waiting + ", MiB(bytes), " > ", MiB(limits_.queued_bytes_per_connection),
                       " (decoded); wait for outputs before sending more"));
    }
  }
  if (ident.queued_steps > 0) {
    if (ident.queued_steps >= limits_.queued_steps_per_identity) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "quota: queued steps per identity (", who.identity, "): ", ident.queued_steps,
          " waiting, at most ", limits_.queued_steps_per_identity,
          "; wait for outputs before sending more"));
    }
    if (ident.queued_bytes + bytes > limits_.queued_bytes_per_identity) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "quota: queued bytes per identity (", who.identity, "): ", MiB(ident.queued_bytes),
          " waiting + ", MiB(bytes), " > ", MiB(limits_.queued_bytes_per_identity),
          " (decoded); wait for outputs before sending more"));
    }
  }
  return Charge(who, QuotaUsage{.queued_steps = 1, .queued_bytes = bytes});
}

QuotaUsage Admission::connection(const std::string& connection) const {
  auto it = connections_.find(connection);
  return it == connections_.end() ? QuotaUsage{} : it->second;
}

QuotaUsage Admission::identity(const std::string& identity) const {
  auto it = identities_.find(identity);
  return it == identities_.end() ? QuotaUsage{} : it->second;
}

}  // namespace swarm::peer
