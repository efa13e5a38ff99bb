// What a peer announces about itself in the registry: identity, address, model, block range,
// state, measured speed and free KV cache. Plain value types, safe to copy between threads.
// ParsePeerRecord() takes untrusted bytes (from the DHT) and either returns a record that passed
// ValidatePeerRecord() or an error; it never crashes or allocates more than the input justifies.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace swarm::registry {

// A peer's identity: the SHA-1 of its public key (OpenDHT's InfoHash of the key, i.e.
// Certificate::getId()), so whoever holds the private key is the only one who can sign records
// under it. The all-zero id means "unset".
class PeerId {
 public:
  static constexpr size_t kSize = 20;

  PeerId() = default;
  explicit PeerId(const std::array<uint8_t, kSize>& bytes) : bytes_(bytes) {}

  // 40 hex digits, either case.
  static absl::StatusOr<PeerId> FromHex(std::string_view hex);
  // SHA-1 of an arbitrary name: ids for static peer lists and tests, where no key exists.
  static PeerId FromName(std::string_view name);

  std::string ToHex() const;
  // The first 8 hex digits, for logs and error messages.
  std::string ShortHex() const;
  bool IsZero() const;
  const std::array<uint8_t, kSize>& bytes() const { return bytes_; }

  friend auto operator<=>(const PeerId&, const PeerId&) = default;
  friend bool operator==(const PeerId&, const PeerId&) = default;

  template <typename H>
  friend H AbslHashValue(H h, const PeerId& id) {
    return H::combine_contiguous(std::move(h), id.bytes_.data(), id.bytes_.size());
  }

 private:
  std::array<uint8_t, kSize> bytes_{};
};

// Transformer blocks [first, last) of a model.
struct BlockRange {
  int32_t first = 0;
  int32_t last = 0;

  int32_t size() const { return last - first; }
  bool empty() const { return last <= first; }
  bool Contains(int64_t block) const { return block >= first && block < last; }
  friend bool operator==(const BlockRange&, const BlockRange&) = default;
};

enum class PeerState : uint8_t {
  kJoining = 0,  // loading its blocks: counts for placement, not routable yet
  kOnline = 1,   // serving sessions
  kOffline = 2,  // withdrawn: ignored by everyone
};
std::string_view PeerStateName(PeerState state);

// Limits every record must respect; they bound what an untrusted record can make us allocate.
inline constexpr size_t kMaxAddressLength = 256;
inline constexpr size_t kMaxModelIdLength = 256;
inline constexpr int32_t kMaxBlocks = 1 << 16;
inline constexpr size_t kMaxRttEntries = 256;
inline constexpr size_t kTransportKeySize = 32;  // CurveZMQ public key, raw bytes
inline constexpr double kMaxThroughput = 1e12;
inline constexpr double kMaxRttMs = 1e7;
inline constexpr int64_t kMaxCacheTokens = int64_t{1} << 40;
inline constexpr int64_t kMaxCacheBytes = int64_t{1} << 56;
inline constexpr int32_t kMaxActiveSessions = 1 << 20;
inline constexpr size_t kMaxSerializedRecordSize = 16 * 1024;

struct PeerRecord {
  PeerId peer_id;
  // Where the peer's transport listens: "tcp://host:port" (or "ipc://path" for a local swarm).
  std::string address;
  std::string model_id;
  BlockRange blocks;
  PeerState state = PeerState::kJoining;

  // Tokens per second through ONE of its blocks: a decode step through k of its blocks takes
  // k / decode_tps_per_block seconds; prompt_tps_per_block is the same for prefill tokens.
  // 0 = not measured yet.
  double decode_tps_per_block = 0;
  double prompt_tps_per_block = 0;
  // Hidden-state tokens per second its network link carries (bandwidth / bytes per token);
  // 0 = not measured.
  double network_tps = 0;

  // KV cache, in tokens: positions of one session over all its blocks, of the peer's cache types
  // (what a route needs: a session of n tokens needs n free). The same memory holds twice the
  // tokens in f16 as in f32.
  int64_t free_cache_tokens = 0;
  int64_t total_cache_tokens = 0;  // 0 = unknown
  // The same in bytes of cache memory (0 = unknown: a version 1 record).
  int64_t free_cache_bytes = 0;
  int64_t total_cache_bytes = 0;
  int32_t active_sessions = 0;

  // Measured round-trip times to peers that serve the blocks following this one's. (A B-tree:
  // the route builder walks these for every peer, and std::map's node hopping dominated.)
  absl::btree_map<PeerId, double> rtt_ms;

  // UDP port of the peer's DHT node (its host is the one in `address`); 0 = none. Lets peers
  // that see each other's records contact each other directly, so a small swarm does not fall
  // apart when its bootstrap node leaves.
  uint16_t dht_port = 0;
  // CurveZMQ public key of the transport (kTransportKeySize bytes) or empty for a plain swarm.
  std::string transport_key;

  // Relaying (peer/relay_service.h). A reachable peer's relay service: where others ask it to dial
  // them back or to relay them, "tcp://host:port"; empty: it offers neither (unreachable, or a
  // version 2 record).
  std::string relay_address;
  int32_t relay_mbit = 0;     // the bandwidth it relays at most, Mbit/s; 0: does not relay
  int32_t relayed_peers = 0;  // peers it relays now
  // This peer cannot be reached directly: `address` is an endpoint its relay `relay_peer` opened
  // for it, one hop more away than the address suggests.
  bool relayed = false;
  PeerId relay_peer;

  // Wall-clock expiry (Unix epoch, milliseconds) and a number that grows with every publication
  // by the same peer, so the newest of several stored copies wins.
  int64_t expiry_unix_ms = 0;
  uint64_t seq = 0;

  friend bool operator==(const PeerRecord&, const PeerRecord&) = default;
};

// A registry's view of one model's peers, as returned by a registry snapshot.
using RegistrySnapshot = std::vector<PeerRecord>;

// Every field within its limits; addresses and model ids well-formed. Applied on parse and
// before announcing.
absl::Status ValidatePeerRecord(const PeerRecord& record);

inline constexpr int32_t kMaxRelayMbit = 1 << 20;
inline constexpr int32_t kMaxRelayedPeers = 1 << 16;

// Compact little-endian binary encoding with a magic and a version. Version 2 added the cache
// bytes, version 3 the relay fields; older records still parse (bytes 0 = unknown, no relaying).
std::string SerializePeerRecord(const PeerRecord& record);
absl::StatusOr<PeerRecord> ParsePeerRecord(std::string_view bytes);

struct HostPort {
  std::string host;  // without brackets for IPv6 literals
  uint16_t port = 0;
};
// Host and port of a "tcp://host:port" address (IPv6 literals in brackets); error otherwise.
absl::StatusOr<HostPort> ParseTcpAddress(std::string_view address);
// Host and port of a "host:port" string (e.g. an --initial-peers entry).
absl::StatusOr<HostPort> ParseHostPort(std::string_view host_port);

}  // namespace swarm::registry
