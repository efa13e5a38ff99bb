#include "registry/peer_record.h"

#include <opendht/infohash.h>

#include <bit>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/absl_compat.h"
#include "base/status_macros.h"

namespace swarm::registry {
namespace {

constexpr char kMagic[4] = {'S', 'W', 'P', 'R'};
constexpr uint8_t kVersion = 3;
constexpr uint8_t kOldestVersion = 1;  // without the cache bytes

// Fixed-size part of an RTT entry: peer id + f64.
constexpr size_t kRttEntrySize = PeerId::kSize + 8;

class Writer {
 public:
  void Bytes(const void* data, size_t size) { out_.append(static_cast<const char*>(data), size); }
  template <typename T>
  void Int(T v) {
    static_assert(std::is_integral_v<T>);
    using U = std::make_unsigned_t<T>;
    U u = static_cast<U>(v);
    for (size_t i = 0; i < sizeof(T); ++i) out_.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
  }
  void F64(double v) { Int(std::bit_cast<uint64_t>(v)); }
  void Str16(const std::string& s) {
    Int(static_cast<uint16_t>(s.size()));
    Bytes(s.data(), s.size());
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// Reads from untrusted bytes; every read checks the remaining length first.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  size_t remaining() const { return in_.size() - pos_; }

  absl::Status Bytes(void* out, size_t size, const char* what) {
    if (remaining() < size) return Truncated(what);
    std::memcpy(out, in_.data() + pos_, size);
    pos_ += size;
    return absl::OkStatus();
  }
  template <typename T>
  absl::Status Int(T* v, const char* what) {
    static_assert(std::is_integral_v<T>);
    if (remaining() < sizeof(T)) return Truncated(what);
    using U = std::make_unsigned_t<T>;
    U u = 0;
    for (size_t i = 0; i < sizeof(T); ++i) {
      u |= static_cast<U>(static_cast<uint8_t>(in_[pos_ + i])) << (8 * i);
    }
    pos_ += sizeof(T);
    *v = static_cast<T>(u);
    return absl::OkStatus();
  }
  absl::Status F64(double* v, const char* what) {
    uint64_t u = 0;
    absl::Status s = Int(&u, what);
    if (s.ok()) *v = std::bit_cast<double>(u);
    return s;
  }
  // A u16-length-prefixed string of at most `max` bytes; the length is checked against both
  // `max` and the bytes actually present before anything is allocated.
  absl::Status Str16(std::string* s, size_t max, const char* what) {
    uint16_t len = 0;
    absl::Status st = Int(&len, what);
    if (!st.ok()) return st;
    if (len > max) {
      return absl::InvalidArgumentError(
          absl::StrFormat("peer record: %s length %d exceeds %d", what, len, max));
    }
    if (remaining() < len) return Truncated(what);
    s->assign(in_.data() + pos_, len);
    pos_ += len;
    return absl::OkStatus();
  }

 private:
  static absl::Status Truncated(const char* what) {
    return absl::InvalidArgumentError(absl::StrCat("peer record truncated in ", what));
  }
  std::string_view in_;
  size_t pos_ = 0;
};

bool IsHostChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

bool IsIpv6LiteralChar(char c) {
  return (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || (c >= '0' && c <= '9') || c == ':' ||
         c == '.' || c == '%' || IsHostChar(c);
}

bool IsPrintable(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) return false;
  }
  return true;
}

absl::StatusOr<uint16_t> ParsePort(std::string_view s, std::string_view whole) {
  if (s.empty() || s.size() > 5) {
    return absl::InvalidArgumentError(absl::StrCat("bad port in '", ToAbsl(whole), "'"));
  }
  uint32_t port = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return absl::InvalidArgumentError(absl::StrCat("bad port in '", ToAbsl(whole), "'"));
    }
    port = port * 10 + static_cast<uint32_t>(c - '0');
  }
  if (port == 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("port out of range (1..65535) in '", ToAbsl(whole), "'"));
  }
  return static_cast<uint16_t>(port);
}

bool FiniteInRange(double v, double max) { return std::isfinite(v) && v >= 0 && v <= max; }

}  // namespace

absl::StatusOr<PeerId> PeerId::FromHex(std::string_view hex) {
  if (hex.size() != 2 * kSize) {
    return absl::InvalidArgumentError(
        absl::StrFormat("peer id must be %d hex digits, got %d characters", 2 * kSize, hex.size()));
  }
  std::array<uint8_t, kSize> bytes{};
  for (size_t i = 0; i < hex.size(); ++i) {
    char c = hex[i];
    int v;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v = c - 'A' + 10;
    } else {
      return absl::InvalidArgumentError("peer id has a non-hex character");
    }
    bytes[i / 2] = static_cast<uint8_t>(bytes[i / 2] | (v << (i % 2 == 0 ? 4 : 0)));
  }
  return PeerId(bytes);
}

PeerId PeerId::FromName(std::string_view name) {
  dht::InfoHash h = dht::InfoHash::get(reinterpret_cast<const uint8_t*>(name.data()), name.size());
  std::array<uint8_t, kSize> bytes{};
  static_assert(dht::InfoHash::size() == kSize);
  std::memcpy(bytes.data(), h.data(), kSize);
  return PeerId(bytes);
}

std::string PeerId::ToHex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * kSize, '0');
  for (size_t i = 0; i < kSize; ++i) {
    out[2 * i] = kDigits[bytes_[i] >> 4];
    out[2 * i + 1] = kDigits[bytes_[i] & 0xf];
  }
  return out;
}

std::string PeerId::ShortHex() const { return ToHex().substr(0, 8); }

bool PeerId::IsZero() const {
  for (uint8_t b : bytes_) {
    if (b != 0) return false;
  }
  return true;
}

std::string_view PeerStateName(PeerState state) {
  switch (state) {
    case PeerState::kJoining:
      return "joining";
    case PeerState::kOnline:
      return "online";
    case PeerState::kOffline:
      return "offline";
  }
  return "invalid";
}

absl::StatusOr<HostPort> ParseHostPort(std::string_view s) {
  if (s.empty() || s.size() > kMaxAddressLength) {
    return absl::InvalidArgumentError(absl::StrCat("bad host:port '", ToAbsl(s), "'"));
  }
  HostPort out;
  std::string_view port_part;
  if (s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("bad IPv6 host:port '", ToAbsl(s), "' (expected [addr]:port)"));
    }
    std::string_view host = s.substr(1, close - 1);
    if (host.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("empty host in '", ToAbsl(s), "'"));
    }
    for (char c : host) {
      if (!IsIpv6LiteralChar(c)) {
        return absl::InvalidArgumentError(absl::StrCat("bad host in '", ToAbsl(s), "'"));
      }
    }
    out.host = std::string(host);
    port_part = s.substr(close + 2);
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad host:port '", ToAbsl(s), "' (expected host:port)"));
    }
    std::string_view host = s.substr(0, colon);
    for (char c : host) {
      if (!IsHostChar(c)) {
        return absl::InvalidArgumentError(absl::StrCat("bad host in '", ToAbsl(s), "'"));
      }
    }
    out.host = std::string(host);
    port_part = s.substr(colon + 1);
  }
  auto port = ParsePort(port_part, s);
  if (!port.ok()) return port.status();
  out.port = *port;
  return out;
}

absl::StatusOr<HostPort> ParseTcpAddress(std::string_view address) {
  constexpr std::string_view kTcp = "tcp://";
  if (address.substr(0, kTcp.size()) != kTcp) {
    return absl::InvalidArgumentError(
        absl::StrCat("address '", ToAbsl(address), "' is not tcp://host:port"));
  }
  return ParseHostPort(address.substr(kTcp.size()));
}

absl::Status ValidatePeerRecord(const PeerRecord& r) {
  if (r.peer_id.IsZero()) return absl::InvalidArgumentError("peer record: peer id is unset");
  if (r.address.size() > kMaxAddressLength || !IsPrintable(r.address)) {
    return absl::InvalidArgumentError("peer record: address too long or not printable");
  }
  constexpr std::string_view kIpc = "ipc://";
  if (std::string_view(r.address).substr(0, kIpc.size()) == kIpc) {
    if (r.address.size() == kIpc.size()) {
      return absl::InvalidArgumentError("peer record: empty ipc:// path");
    }
  } else {
    auto hp = ParseTcpAddress(r.address);
    if (!hp.ok())
      return absl::InvalidArgumentError(absl::StrCat("peer record: ", hp.status().message()));
  }
  if (r.model_id.empty() || r.model_id.size() > kMaxModelIdLength || !IsPrintable(r.model_id)) {
    return absl::InvalidArgumentError("peer record: model id empty, too long or not printable");
  }
  if (r.blocks.first < 0 || r.blocks.last > kMaxBlocks || r.blocks.first >= r.blocks.last) {
    return absl::InvalidArgumentError(
        absl::StrFormat("peer record: bad block range [%d, %d)", r.blocks.first, r.blocks.last));
  }
  if (r.state != PeerState::kJoining && r.state != PeerState::kOnline &&
      r.state != PeerState::kOffline) {
    return absl::InvalidArgumentError("peer record: bad state");
  }
  if (!FiniteInRange(r.decode_tps_per_block, kMaxThroughput) ||
      !FiniteInRange(r.prompt_tps_per_block, kMaxThroughput) ||
      !FiniteInRange(r.network_tps, kMaxThroughput)) {
    return absl::InvalidArgumentError("peer record: throughput negative, not finite or absurd");
  }
  if (r.free_cache_tokens < 0 || r.free_cache_tokens > kMaxCacheTokens ||
      r.total_cache_tokens < 0 || r.total_cache_tokens > kMaxCacheTokens ||
      (r.total_cache_tokens > 0 && r.free_cache_tokens > r.total_cache_tokens)) {
    return absl::InvalidArgumentError("peer record: bad cache token counts");
  }
  if (r.free_cache_bytes < 0 || r.free_cache_bytes > kMaxCacheBytes || r.total_cache_bytes < 0 ||
      r.total_cache_bytes > kMaxCacheBytes ||
      (r.total_cache_bytes > 0 && r.free_cache_bytes > r.total_cache_bytes)) {
    return absl::InvalidArgumentError("peer record: bad cache byte counts");
  }
  if (r.active_sessions < 0 || r.active_sessions > kMaxActiveSessions) {
    return absl::InvalidArgumentError("peer record: bad active session count");
  }
  if (r.rtt_ms.size() > kMaxRttEntries) {
    return absl::InvalidArgumentError("peer record: too many RTT entries");
  }
  for (const auto& [id, ms] : r.rtt_ms) {
    if (id.IsZero() || !FiniteInRange(ms, kMaxRttMs)) {
      return absl::InvalidArgumentError("peer record: bad RTT entry");
    }
  }
  if (!r.transport_key.empty() && r.transport_key.size() != kTransportKeySize) {
    return absl::InvalidArgumentError("peer record: transport key must be 32 bytes");
  }
  if (r.expiry_unix_ms < 0) return absl::InvalidArgumentError("peer record: negative expiry");
  if (!r.relay_address.empty()) {
    if (r.relay_address.size() > kMaxAddressLength || !IsPrintable(r.relay_address) ||
        !ParseTcpAddress(r.relay_address).ok()) {
      return absl::InvalidArgumentError("peer record: relay address is not tcp://host:port");
    }
  }
  if (r.relay_mbit < 0 || r.relay_mbit > kMaxRelayMbit || r.relayed_peers < 0 ||
      r.relayed_peers > kMaxRelayedPeers) {
    return absl::InvalidArgumentError("peer record: bad relay capacity");
  }
  if (r.relayed && r.relay_peer.IsZero()) {
    return absl::InvalidArgumentError("peer record: relayed without naming its relay");
  }
  return absl::OkStatus();
}

std::string SerializePeerRecord(const PeerRecord& r) {
  Writer w;
  w.Bytes(kMagic, sizeof(kMagic));
  w.Int(kVersion);
  w.Bytes(r.peer_id.bytes().data(), PeerId::kSize);
  w.Str16(r.address);
  w.Str16(r.model_id);
  w.Int(r.blocks.first);
  w.Int(r.blocks.last);
  w.Int(static_cast<uint8_t>(r.state));
  w.F64(r.decode_tps_per_block);
  w.F64(r.prompt_tps_per_block);
  w.F64(r.network_tps);
  w.Int(r.free_cache_tokens);
  w.Int(r.total_cache_tokens);
  w.Int(r.free_cache_bytes);
  w.Int(r.total_cache_bytes);
  w.Int(r.active_sessions);
  w.Int(r.dht_port);
  w.Int(static_cast<uint8_t>(r.transport_key.size()));
  w.Bytes(r.transport_key.data(), r.transport_key.size());
  w.Int(static_cast<uint16_t>(r.rtt_ms.size()));
  for (const auto& [id, ms] : r.rtt_ms) {
    w.Bytes(id.bytes().data(), PeerId::kSize);
    w.F64(ms);
  }
  w.Int(r.expiry_unix_ms);
  w.Int(r.seq);
  w.Str16(r.relay_address);
  w.Int(r.relay_mbit);
  w.Int(r.relayed_peers);
  w.Int(static_cast<uint8_t>(r.relayed ? 1 : 0));
  w.Bytes(r.relay_peer.bytes().data(), PeerId::kSize);
  return w.Take();
}

absl::StatusOr<PeerRecord> ParsePeerRecord(std::string_view bytes) {
  if (bytes.size() > kMaxSerializedRecordSize) {
    return absl::InvalidArgumentError(absl::StrFormat("peer record of %d bytes exceeds %d",
                                                      bytes.size(), kMaxSerializedRecordSize));
  }
  Reader rd(bytes);
  char magic[sizeof(kMagic)];
  SWARM_RETURN_IF_ERROR(rd.Bytes(magic, sizeof(magic), "magic"));
  if (std::memcmp(magic, kMagic, sizeof(kMagic)) != 0) {
    return absl::InvalidArgumentError("not a peer record (bad magic)");
  }
  uint8_t version = 0;
  SWARM_RETURN_IF_ERROR(rd.Int(&version, "version"));
  if (version < kOldestVersion || version > kVersion) {
    return absl::InvalidArgumentError(
        absl::StrFormat("unsupported peer record version %d (expected %d to %d)", version,
                        kOldestVersion, kVersion));
  }
  PeerRecord r;
  std::array<uint8_t, PeerId::kSize> id{};
  SWARM_RETURN_IF_ERROR(rd.Bytes(id.data(), id.size(), "peer id"));
  r.peer_id = PeerId(id);
  SWARM_RETURN_IF_ERROR(rd.Str16(&r.address, kMaxAddressLength, "address"));
  SWARM_RETURN_IF_ERROR(rd.Str16(&r.model_id, kMaxModelIdLength, "model id"));
  SWARM_RETURN_IF_ERROR(rd.Int(&r.blocks.first, "block range"));
  SWARM_RETURN_IF_ERROR(rd.Int(&r.blocks.last, "block range"));
  uint8_t state = 0;
  SWARM_RETURN_IF_ERROR(rd.Int(&state, "state"));
  if (state > static_cast<uint8_t>(PeerState::kOffline)) {
    return absl::InvalidArgumentError(absl::StrFormat("peer record: bad state %d", state));
  }
  r.state = static_cast<PeerState>(state);
  SWARM_RETURN_IF_ERROR(rd.F64(&r.decode_tps_per_block, "throughput"));
  SWARM_RETURN_IF_ERROR(rd.F64(&r.prompt_tps_per_block, "throughput"));
  SWARM_RETURN_IF_ERROR(rd.F64(&r.network_tps, "throughput"));
  SWARM_RETURN_IF_ERROR(rd.Int(&r.free_cache_tokens, "cache"));
  SWARM_RETURN_IF_ERROR(rd.Int(&r.total_cache_tokens, "cache"));
  if (version >= 2) {
    SWARM_RETURN_IF_ERROR(rd.Int(&r.free_cache_bytes, "cache bytes"));
    SWARM_RETURN_IF_ERROR(rd.Int(&r.total_cache_bytes, "cache bytes"));
  }
  SWARM_RETURN_IF_ERROR(rd.Int(&r.active_sessions, "sessions"));
  SWARM_RETURN_IF_ERROR(rd.Int(&r.dht_port, "dht port"));
  uint8_t key_len = 0;
  SWARM_RETURN_IF_ERROR(rd.Int(&key_len, "transport key"));
  if (key_len != 0 && key_len != kTransportKeySize) {
    return absl::InvalidArgumentError("peer record: transport key must be 32 bytes");
  }
  r.transport_key.resize(key_len);
  SWARM_RETURN_IF_ERROR(rd.Bytes(r.transport_key.data(), key_len, "transport key"));
  uint16_t n_rtt = 0;
  SWARM_RETURN_IF_ERROR(rd.Int(&n_rtt, "RTT count"));
  if (n_rtt > kMaxRttEntries) {
    return absl::InvalidArgumentError(
        absl::StrFormat("peer record: %d RTT entries exceed %d", n_rtt, kMaxRttEntries));
  }
  if (rd.remaining() < n_rtt * kRttEntrySize) {
    return absl::InvalidArgumentError("peer record truncated in RTT entries");
  }
  for (uint16_t i = 0; i < n_rtt; ++i) {
    std::array<uint8_t, PeerId::kSize> peer{};
    double ms = 0;
    SWARM_RETURN_IF_ERROR(rd.Bytes(peer.data(), peer.size(), "RTT entry"));
    SWARM_RETURN_IF_ERROR(rd.F64(&ms, "RTT entry"));
    // Canonical order (as serialized from the map): strictly increasing ids, no duplicates.
    if (!r.rtt_ms.empty() && !(r.rtt_ms.rbegin()->first < PeerId(peer))) {
      return absl::InvalidArgumentError("peer record: RTT entries out of order or duplicated");
    }
    r.rtt_ms.emplace_hint(r.rtt_ms.end(), PeerId(peer), ms);
  }
  SWARM_RETURN_IF_ERROR(rd.Int(&r.expiry_unix_ms, "expiry"));
  SWARM_RETURN_IF_ERROR(rd.Int(&r.seq, "sequence number"));
  if (version >= 3) {
    SWARM_RETURN_IF_ERROR(rd.Str16(&r.relay_address, kMaxAddressLength, "relay address"));
    SWARM_RETURN_IF_ERROR(rd.Int(&r.relay_mbit, "relay capacity"));
    SWARM_RETURN_IF_ERROR(rd.Int(&r.relayed_peers, "relay capacity"));
    uint8_t relayed = 0;
    SWARM_RETURN_IF_ERROR(rd.Int(&relayed, "relayed"));
    if (relayed > 1) return absl::InvalidArgumentError("peer record: bad relayed flag");
    r.relayed = relayed == 1;
    std::array<uint8_t, PeerId::kSize> relay{};
    SWARM_RETURN_IF_ERROR(rd.Bytes(relay.data(), relay.size(), "relay peer"));
    r.relay_peer = PeerId(relay);
  }
  if (rd.remaining() != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("peer record: %d trailing bytes", rd.remaining()));
  }
  SWARM_RETURN_IF_ERROR(ValidatePeerRecord(r));
  return r;
}

}  // namespace swarm::registry
