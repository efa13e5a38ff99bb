// The swarm's registry over a real Kademlia DHT (OpenDHT). A DhtRegistry owns one DHT node: it
// binds a UDP port, bootstraps from --initial-peers, and either announces this peer's signed
// record for a model (full node, `swarm serve`) or only reads records (client: generate,
// status, gateway). Records are signed with the node's RSA identity; a peer's id is the hash of
// its public key, so no one can publish under another peer's id. In a private swarm (a swarm
// secret in the options) the node speaks the swarm's own DHT network, and the records live under
// keys and inside a seal derived from the secret (registry::RecordSeal).
//
// Threads: every public method may be called from any thread (they block the caller for at most
// op_timeout, connect_timeout for Create()). OpenDHT runs its own network thread; our callbacks
// on it only fill in results and wake the waiting caller. A full node also runs one refresh
// thread that re-publishes the announced record every refresh_interval and contacts the DHT
// nodes of peers it sees in records. The `log` callback may be called from the refresh thread
// or the caller's. Destroying the registry stops both threads; no callback runs afterwards.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "registry/peer_record.h"
#include "transport/swarm_secret.h"

namespace swarm::registry {

// DHT network id: nodes only talk to nodes of the same network, so a swarm never mixes with
// the public OpenDHT network (id 0) or with swarms started with another id.
inline constexpr uint32_t kSwarmNetworkId = 0x5357524d;  // "SWRM"
// user_type of our DHT values, signed along with the data; a private swarm's values are sealed
// records.
inline constexpr std::string_view kPeerRecordUserType = "swarm.peer.v1";
inline constexpr std::string_view kSealedPeerRecordUserType = "swarm.sealed.v1";
// user_type of small named values other than records (a model's tensor manifest).
inline constexpr std::string_view kBlobUserType = "swarm.blob.v1";

// Name hashed (SHA-1) into the DHT key under which a model's peer records live.
std::string DhtKeyName(std::string_view model_id);

struct DhtRegistryOptions {
  // IPv4 address for the DHT's UDP socket ("0.0.0.0": all interfaces; "127.0.0.1" for a swarm
  // on one machine) and port (0: the OS chooses; see DhtRegistry::port()).
  std::string bind_address = "0.0.0.0";
  uint16_t port = 0;
  // "host:port" of DHT nodes already in the swarm; empty: this node starts a new swarm.
  std::vector<std::string> initial_peers;
  // Only reads records: no identity, never announces, no refresh thread.
  bool client_only = false;
  // PEM file holding this peer's private key; created (mode 0600) when missing, so the peer
  // keeps its id across restarts. Empty: a fresh identity for this run only.
  std::string identity_path;
  unsigned key_bits = 2048;  // RSA key size for new identities (1024 is for tests only)
  uint32_t network_id = kSwarmNetworkId;
  // A private swarm: the network id (network_id is then unused), the records' keys and their seal
  // all derive from it, so nodes without it neither reach this node nor read or forge records.
  std::optional<transport::SwarmSecret> swarm_secret;

  // Published records expire after record_ttl and are re-published every refresh_interval
  // (must be shorter). Records claiming to live longer than max_record_lifetime are rejected.
  absl::Duration record_ttl = absl::Seconds(90);
  absl::Duration refresh_interval = absl::Seconds(30);
  absl::Duration max_record_lifetime = absl::Minutes(10);
  // Bound on each blocking DHT operation, on reaching an initial peer at start, and on the
  // graceful hand-over of stored values when the node leaves (the destructor takes at most
  // about shutdown_timeout once Interrupt() or the destructor has woken every waiting call).
  absl::Duration op_timeout = absl::Seconds(5);
  absl::Duration connect_timeout = absl::Seconds(10);
  absl::Duration shutdown_timeout = absl::Seconds(1);

  // Warnings (failed re-publications etc.); nullptr: silent.
  std::function<void(std::string_view)> log;
};

class DhtRegistry {
 public:
  // Starts the node and, with initial peers, waits until at least one answers (Unavailable
  // after connect_timeout: also what a node of another network meets, so the message says to
  // check the swarm secret). InvalidArgument for malformed options or identity file.
  static absl::StatusOr<std::unique_ptr<DhtRegistry>> Create(DhtRegistryOptions options);
  ~DhtRegistry();
  DhtRegistry(const DhtRegistry&) = delete;
  DhtRegistry& operator=(const DhtRegistry&) = delete;

  // The bound UDP port (what other nodes use as an initial peer, with this machine's address).
  uint16_t port() const;
  // This node's peer id (hash of its public key); zero for a client-only registry.
  PeerId peer_id() const;
  // DHT nodes this one currently knows (good + dubious), for status displays.
  size_t KnownNodes() const;
  // Values read under a model's key and ignored, over this registry's life: unsigned, forged,
  // expired, for another model, malformed, and (private swarm) every value that does not open
  // with the swarm's secret. Each read of the DHT counts what it ignored again.
  uint64_t rejected_records() const;
  bool is_private() const;

  // Publishes `record` now and keeps it published (re-signed with a fresh expiry every
  // refresh_interval) until Withdraw() or destruction; a later Announce replaces it (call it
  // whenever measured throughput or free cache changes). The registry fills in peer_id (it must
  // be unset or equal to peer_id()), dht_port, expiry_unix_ms and seq.
  // InvalidArgument: bad record. FailedPrecondition: client-only registry. Unavailable: this
  // publication reached no other node (e.g. the first node of a new swarm): the record is still
  // served from this node and the refresh keeps trying.
  absl::Status Announce(const PeerRecord& record);

  // Publishes the record with state offline and stops refreshing it, waiting at most
  // min(op_timeout, timeout) for the publication to be acknowledged (the offline copy keeps
  // spreading meanwhile; a peer about to leave passes a short bound). OK if nothing was
  // announced.
  absl::Status Withdraw(absl::Duration timeout = absl::InfiniteDuration());

  // For a node about to leave: blocking calls in progress return now, and later ones at once,
  // with Unavailable (Withdraw() excepted: it still publishes and waits). Lets the threads that
  // use the registry be joined without waiting out their DHT operations.
  void Interrupt();

  // Live (joining or online, unexpired, correctly signed by the peer they name) records for
  // `model_id`, one per peer, sorted by first block then peer id. Waits up to op_timeout for the
  // DHT; Unavailable when no initial peer could be reached.
  absl::StatusOr<RegistrySnapshot> Snapshot(const std::string& model_id);

  // A small value (at most kMaxBlobBytes) published under `name`, signed by this node (sealed in a
  // private swarm) and kept in the DHT while the node runs: the first peers of a model publish
  // its manifest so that others can take it. FailedPrecondition on a client-only registry.
  static constexpr size_t kMaxBlobBytes = 56 * 1024;
  absl::Status PublishBlob(std::string_view name, std::string_view data);
  // The distinct signed values under `name` that arrived within op_timeout (none on failure);
  // values over kMaxBlobBytes are dropped and at most kMaxBlobValues are returned. Anyone on the
  // DHT may publish under a name: the caller treats the values as untrusted.
  static constexpr size_t kMaxBlobValues = 16;
  std::vector<std::string> ReadBlobs(std::string_view name);

 private:
  class Impl;
  explicit DhtRegistry(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace swarm::registry
