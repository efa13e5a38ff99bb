#include "registry/dht_registry.h"

#include <fcntl.h>
#include <opendht.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/absl_compat.h"
#include "base/status_macros.h"
#include "registry/peer_record_value.h"
#include "registry/record_seal.h"

namespace swarm::registry {
namespace {

// OpenDHT's own per-value sequence number is 16 bits and must grow for a stored value to be
// replaced; before it wraps we switch to a fresh value id (the old copy expires on its own).
constexpr uint16_t kMaxDhtSeqBeforeNewId = 60000;
constexpr absl::Duration kRepingInterval = absl::Minutes(5);
// When a node seems cut off, how often it may ping every remembered endpoint again.
constexpr absl::Duration kRecontactInterval = absl::Seconds(1);
// How often a peer reads the records to contact the DHT nodes of peers it does not know yet.
constexpr absl::Duration kExchangeInterval = absl::Seconds(2);
// Bounds the memory a flood of (verified but numerous) records can take.
constexpr size_t kMaxRememberedEndpoints = 4096;
constexpr size_t kMaxIdentityFileSize = 64 * 1024;
// How long a get waits when no other node is known (see Get()).
constexpr absl::Duration kLocalGetWait = absl::Milliseconds(100);

// Everything OpenDHT callbacks touch. Shared with the callbacks, so it outlives the registry
// if the DHT thread still holds a callback.
struct SharedState {
  absl::Mutex mu;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  bool interrupted ABSL_GUARDED_BY(mu) = false;  // DhtRegistry::Interrupt()
  bool connected ABSL_GUARDED_BY(mu) = false;
};

// One DHT operation in flight, completed from the DHT thread.
struct PendingOp {
  explicit PendingOp(std::shared_ptr<SharedState> s, bool can_interrupt = true)
      : shared(std::move(s)), interruptible(can_interrupt) {}
  std::shared_ptr<SharedState> shared;
  const bool interruptible;  // Interrupt() ends the wait
  bool done ABSL_GUARDED_BY(shared->mu) = false;
  bool ok ABSL_GUARDED_BY(shared->mu) = false;
  std::vector<std::shared_ptr<dht::Value>> values ABSL_GUARDED_BY(shared->mu);

  void Finish(bool success) {
    absl::MutexLock lock(&shared->mu);
    done = true;
    ok = success;
  }
  // Waits until done, the registry stops or is interrupted, or the deadline. Returns {done, ok}.
  std::pair<bool, bool> Wait(absl::Time deadline) {
    absl::MutexLock lock(&shared->mu);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(shared->mu) {
      return done || shared->stopping || (interruptible && shared->interrupted);
    };
    shared->mu.AwaitWithDeadline(absl::Condition(&ready), deadline);
    return {done, ok};
  }
};

PeerId ToPeerId(const dht::InfoHash& h) {
  std::array<uint8_t, PeerId::kSize> bytes{};
  static_assert(dht::InfoHash::size() == PeerId::kSize);
  std::memcpy(bytes.data(), h.data(), PeerId::kSize);
  return PeerId(bytes);
}

absl::Status ValidateModelId(const std::string& model_id) {
  if (model_id.empty() || model_id.size() > kMaxModelIdLength) {
    return absl::InvalidArgumentError("model id must be 1..256 characters");
  }
  for (char c : model_id) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) {
      return absl::InvalidArgumentError("model id must be printable ASCII");
    }
  }
  return absl::OkStatus();
}

// What a sealed record is bound to (not stored): its kind and the DHT key it lives under, so a
// sealed record cannot be replayed under another model's key.
std::string SealContext(const dht::InfoHash& key) {
  return absl::StrCat(ToAbsl(kSealedPeerRecordUserType), "/", key.toString());
}

}  // namespace

absl::StatusOr<PeerRecord> VerifyPeerRecordValue(const dht::Value& v, const dht::InfoHash& key,
                                                 const RecordSeal* seal,
                                                 const std::string& model_id, int64_t now_ms,
                                                 int64_t max_lifetime_ms) {
  const std::string_view user_type = seal ? kSealedPeerRecordUserType : kPeerRecordUserType;
  if (v.user_type != user_type) return absl::InvalidArgumentError("not a peer record");
  if (!v.isSigned() || !v.owner) return absl::PermissionDeniedError("unsigned record");
  if (v.data.size() > kMaxSerializedRecordSize + (seal ? RecordSeal::kOverhead : 0)) {
    return absl::InvalidArgumentError("record too large");
  }
  if (!v.checkSignature()) return absl::PermissionDeniedError("bad signature");
  std::string_view data(reinterpret_cast<const char*>(v.data.data()), v.data.size());
  std::string opened;
  if (seal) {
    SWARM_ASSIGN_OR_RETURN(opened, seal->Open(data, SealContext(key)));
    data = opened;
  }
  SWARM_ASSIGN_OR_RETURN(PeerRecord r, ParsePeerRecord(data));
  if (ToPeerId(v.owner->getId()) != r.peer_id) {
    return absl::PermissionDeniedError("record signed by a key other than its peer's");
  }
  if (r.model_id != model_id) return absl::InvalidArgumentError("record for another model");
  if (r.expiry_unix_ms <= now_ms) return absl::OutOfRangeError("expired");
  if (r.expiry_unix_ms - now_ms > max_lifetime_ms) {
    return absl::OutOfRangeError("expiry beyond the maximum record lifetime");
  }
  return r;
}

namespace {

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::string data;
  char buf[4096];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    data.append(buf, static_cast<size_t>(in.gcount()));
    if (data.size() > kMaxIdentityFileSize) {
      return absl::InvalidArgumentError(absl::StrCat("identity file ", path, " is too large"));
    }
  }
  return data;
}

absl::Status WritePrivateFile(const std::string& path, const dht::Blob& data) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot create ", tmp, ": ", std::strerror(errno)));
  }
  size_t written = 0;
  while (written < data.size()) {
    ssize_t n = ::write(fd, data.data() + written, data.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return absl::UnavailableError(absl::StrCat("cannot write ", tmp, ": ", std::strerror(err)));
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot write ", tmp, ": ", std::strerror(errno)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot rename ", tmp, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<dht::crypto::Identity> IdentityFromKey(
    std::shared_ptr<dht::crypto::PrivateKey> key) {
  // The certificate only carries the public key (its id is what peers see); regenerating it on
  // load keeps the file a plain private key.
  auto cert = std::make_shared<dht::crypto::Certificate>(
      dht::crypto::Certificate::generate(*key, "swarm-peer"));
  return dht::crypto::Identity{std::move(key), std::move(cert)};
}

absl::StatusOr<dht::crypto::Identity> LoadOrCreateIdentity(const std::string& path,
                                                           unsigned key_bits) {
  try {
    if (path.empty()) return dht::crypto::generateIdentity("swarm-peer", {}, key_bits);
    struct stat st;
    if (::stat(path.c_str(), &st) == 0) {
      SWARM_ASSIGN_OR_RETURN(std::string pem, ReadSmallFile(path));
      std::shared_ptr<dht::crypto::PrivateKey> key;
      try {
        key = std::make_shared<dht::crypto::PrivateKey>(dht::Blob(pem.begin(), pem.end()));
      } catch (const std::exception& e) {
        return absl::InvalidArgumentError(
            absl::StrCat("identity file ", path, " holds no usable private key: ", e.what()));
      }
      return IdentityFromKey(std::move(key));
    }
    if (errno != ENOENT) {
      return absl::UnavailableError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
    }
    auto key =
        std::make_shared<dht::crypto::PrivateKey>(dht::crypto::PrivateKey::generate(key_bits));
    SWARM_RETURN_IF_ERROR(WritePrivateFile(path, key->serialize()));
    return IdentityFromKey(std::move(key));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("identity: ", e.what()));
  }
}

absl::Status ValidateOptions(const DhtRegistryOptions& o) {
  if (o.key_bits < 1024 || o.key_bits > 8192) {
    return absl::InvalidArgumentError("key_bits must be in 1024..8192");
  }
  if (o.record_ttl <= absl::ZeroDuration() || o.refresh_interval <= absl::ZeroDuration() ||
      o.refresh_interval >= o.record_ttl || o.record_ttl > o.max_record_lifetime) {
    return absl::InvalidArgumentError(
        "need 0 < refresh_interval < record_ttl <= max_record_lifetime");
  }
  if (o.op_timeout <= absl::ZeroDuration() || o.connect_timeout <= absl::ZeroDuration() ||
      o.shutdown_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeouts must be positive");
  }
  if (o.bind_address.empty()) return absl::InvalidArgumentError("empty bind address");
  for (const std::string& p : o.initial_peers) {
    auto hp = ParseHostPort(p);
    if (!hp.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("bad initial peer: ", hp.status().message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string DhtKeyName(std::string_view model_id) {
  return absl::StrCat("swarm/peers/v1/", ToAbsl(model_id));
}

class DhtRegistry::Impl {
 public:
  explicit Impl(DhtRegistryOptions options)
      : options_(std::move(options)), shared_(std::make_shared<SharedState>()) {
    if (options_.swarm_secret) seal_.emplace(*options_.swarm_secret);
  }

  ~Impl() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    {
      absl::MutexLock lock(&shared_->mu);
      shared_->stopping = true;
    }
    if (refresh_thread_.joinable()) refresh_thread_.join();
    if (started_) {
      // Hand stored values over to other nodes before leaving, within a bound.
      auto done = std::make_shared<PendingOp>(std::make_shared<SharedState>());
      try {
        runner_.shutdown([done] { done->Finish(true); });
        done->Wait(absl::Now() + options_.shutdown_timeout);
      } catch (const std::exception&) {
      }
      try {
        runner_.join();
      } catch (const std::exception&) {
      }
    }
  }

  absl::Status Start() {
    SWARM_RETURN_IF_ERROR(ValidateOptions(options_));
    dht::DhtRunner::Config config;
    config.threaded = true;
    config.dht_config.node_config.network = seal_ ? seal_->network_id() : options_.network_id;
    if (!options_.client_only) {
      SWARM_ASSIGN_OR_RETURN(identity_,
                             LoadOrCreateIdentity(options_.identity_path, options_.key_bits));
      config.dht_config.id = identity_;
      peer_id_ = ToPeerId(identity_.second->getId());
      // Derived from the key, so a restarted peer replaces its previous value instead of
      // leaving a stale copy behind.
      absl::MutexLock lock(&publish_mu_);
      std::memcpy(&value_id_, identity_.second->getId().data(), sizeof(value_id_));
      if (value_id_ == dht::Value::INVALID_ID) value_id_ = 1;
    }
    dht::DhtRunner::Context context;
    std::weak_ptr<SharedState> weak = shared_;
    context.statusChangedCallback = [weak](dht::NodeStatus v4, dht::NodeStatus v6) {
      if (auto s = weak.lock()) {
        absl::MutexLock lock(&s->mu);
        s->connected = v4 == dht::NodeStatus::Connected || v6 == dht::NodeStatus::Connected;
      }
    };
    try {
      const std::string service = std::to_string(options_.port);
      runner_.run(options_.bind_address.c_str(), "", service.c_str(), config, std::move(context));
      started_ = true;
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat("cannot start the DHT node on ",
                                                 options_.bind_address, ":", options_.port, ": ",
                                                 e.what()));
    }
    if (runner_.getBoundPort(AF_INET) == 0) {
      return absl::UnavailableError(absl::StrCat("cannot bind the DHT's UDP socket to ",
                                                 options_.bind_address, ":", options_.port));
    }
    if (!options_.initial_peers.empty()) {
      for (const std::string& p : options_.initial_peers) {
        HostPort hp = *ParseHostPort(p);
        // Retried by OpenDHT for as long as this node has no connection.
        runner_.bootstrap(hp.host, std::to_string(hp.port));
      }
      // OpenDHT retries its bootstrap nodes only every 10 s and more: an initial peer that is
      // restarting would be found long after it is back. Ping them every kRecontactInterval.
      const absl::Time deadline = absl::Now() + options_.connect_timeout;
      while (!WaitConnected(std::min(deadline, absl::Now() + kRecontactInterval))) {
        if (absl::Now() >= deadline) {
          // A node of another DHT network (another swarm secret, or none) drops our packets
          // without a word, which looks exactly like a node that is not there.
          return absl::UnavailableError(absl::StrCat(
              "no initial peer answered within ", absl::FormatDuration(options_.connect_timeout),
              " (", absl::StrJoin(options_.initial_peers, ", "), "); ",
              seal_ ? "a private swarm's nodes answer only nodes with the same swarm secret: check "
                      "--swarm-secret"
                    : "if that swarm is private, pass --swarm-secret FILE with its secret"));
        }
        PingInitialPeers();
      }
    }
    if (!options_.client_only) {
      absl::MutexLock lock(&mu_);
      next_refresh_ = absl::Now() + options_.refresh_interval;
      refresh_thread_ = std::thread([this] { RefreshLoop(); });
    }
    return absl::OkStatus();
  }

  uint16_t port() const { return runner_.getBoundPort(AF_INET); }
  PeerId peer_id() const { return peer_id_; }
  uint64_t rejected_records() const { return rejected_.load(std::memory_order_relaxed); }
  bool is_private() const { return seal_.has_value(); }
  size_t KnownNodes() const {
    try {
      return runner_.getNodesStats(AF_INET).getKnownNodes();
    } catch (const std::exception&) {
      return 0;
    }
  }

  absl::Status Announce(const PeerRecord& input) {
    if (options_.client_only) {
      return absl::FailedPreconditionError("a client-only registry cannot announce");
    }
    if (Interrupted()) return InterruptedError();
    PeerRecord record = input;
    if (record.peer_id.IsZero()) record.peer_id = peer_id_;
    if (record.peer_id != peer_id_) {
      return absl::InvalidArgumentError(absl::StrCat("record is for peer ", record.peer_id.ToHex(),
                                                     ", this node is ", peer_id_.ToHex()));
    }
    record.dht_port = port();
    record.expiry_unix_ms = absl::ToUnixMillis(absl::Now() + options_.record_ttl);
    SWARM_RETURN_IF_ERROR(ValidatePeerRecord(record));
    SWARM_RETURN_IF_ERROR(ValidateModelId(record.model_id));
    absl::MutexLock publish_lock(&publish_mu_);
    std::optional<PeerRecord> old;
    {
      absl::MutexLock lock(&mu_);
      if (current_ && current_->model_id != record.model_id) old = current_;
      current_ = record;
      next_refresh_ = absl::Now() + options_.refresh_interval;
      ++schedule_version_;
    }
    if (old) {
      // Moving to another model: the old model's record goes offline.
      old->state = PeerState::kOffline;
      if (absl::Status s = PublishLocked(*old, options_.op_timeout); !s.ok()) {
        Log(absl::StrCat("withdrawing the record for ", old->model_id, ": ", s.message()));
      }
    }
    return PublishLocked(record, options_.op_timeout);
  }

  absl::Status Withdraw(absl::Duration timeout) {
    absl::MutexLock publish_lock(&publish_mu_);
    std::optional<PeerRecord> record;
    {
      absl::MutexLock lock(&mu_);
      record.swap(current_);
      ++schedule_version_;
    }
    if (!record) return absl::OkStatus();
    record->state = PeerState::kOffline;
    return PublishLocked(*record, std::min(timeout, options_.op_timeout), /*interruptible=*/false);
  }

  void Interrupt() {
    absl::MutexLock lock(&shared_->mu);
    shared_->interrupted = true;
  }

  absl::StatusOr<RegistrySnapshot> Snapshot(const std::string& model_id) {
    SWARM_RETURN_IF_ERROR(ValidateModelId(model_id));
    if (Interrupted()) return InterruptedError();
    const absl::Time deadline = absl::Now() + options_.op_timeout;
    if (KnownNodes() == 0) {
      // Lost every node: besides the initial peers (which OpenDHT keeps retrying), contact the
      // DHT nodes of every peer seen in earlier records, then give it until the deadline.
      ContactKnownPeers(/*everyone=*/true);
      if (!options_.initial_peers.empty() || HasSeenPeers()) {
        // The initial peers too, every kRecontactInterval, not at OpenDHT's slower retries.
        while (!WaitConnected(std::min(deadline, absl::Now() + kRecontactInterval)) &&
               absl::Now() < deadline && !Interrupted() && !Stopping()) {
          PingInitialPeers();
          ContactKnownPeers(/*everyone=*/true);
        }
        if (KnownNodes() == 0) return absl::UnavailableError("not connected to the swarm's DHT");
      }
    }
    std::vector<std::shared_ptr<dht::Value>> values = Get(model_id, deadline);
    RegistrySnapshot snapshot = Verify(values, model_id);
    // Remember the peers' DHT nodes: if the nodes this one knows leave (the bootstrap node
    // among them), those are the way back into the swarm. An empty answer may mean exactly that.
    RememberPeers(snapshot);
    ContactKnownPeers(/*everyone=*/snapshot.empty());
    return snapshot;
  }

 private:
  static dht::Value::Id NewValueId() {
    std::random_device rd;
    std::uniform_int_distribution<dht::Value::Id> dist(1);
    return dist(rd);
  }

  // Where a model's records live: SHA-1 of its key name in an open swarm, a keyed hash that only
  // members can compute in a private one.
  dht::InfoHash Key(const std::string& model_id) const {
    if (!seal_) return dht::InfoHash::get(DhtKeyName(model_id));
    const auto key = seal_->RecordKey(DhtKeyName(model_id));
    static_assert(RecordSeal::kRecordKeySize == dht::InfoHash::size());
    return dht::InfoHash(key.data(), key.size());
  }
  std::string_view UserType() const {
    return seal_ ? kSealedPeerRecordUserType : kPeerRecordUserType;
  }

  bool Interrupted() {
    absl::MutexLock lock(&shared_->mu);
    return shared_->interrupted;
  }
  bool Stopping() {
    absl::MutexLock lock(&shared_->mu);
    return shared_->stopping;
  }
  static absl::Status InterruptedError() {
    return absl::UnavailableError("the DHT registry was interrupted (the peer is leaving)");
  }

  bool WaitConnected(absl::Time deadline) {
    absl::MutexLock lock(&shared_->mu);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(shared_->mu) {
      return shared_->connected || shared_->stopping || shared_->interrupted;
    };
    shared_->mu.AwaitWithDeadline(absl::Condition(&ready), deadline);
    return shared_->connected;
  }

 public:
  // Small values under a name of their own (a model's manifest): signed by this node, sealed in
  // a private swarm, kept published (OpenDHT refreshes them) while the node runs.
  dht::InfoHash BlobKey(std::string_view name) const {
    if (!seal_) return dht::InfoHash::get(std::string(name));
    const auto key = seal_->RecordKey(name);
    return dht::InfoHash(key.data(), key.size());
  }

  absl::Status PublishBlob(std::string_view name, std::string_view data) {
    if (options_.client_only) {
      return absl::FailedPreconditionError("a client-only DHT node publishes nothing");
    }
    if (data.size() > DhtRegistry::kMaxBlobBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a DHT value of ", data.size(), " bytes (at most ", DhtRegistry::kMaxBlobBytes, ")"));
    }
    const dht::InfoHash key = BlobKey(name);
    std::string bytes(data);
    if (seal_) bytes = seal_->Seal(bytes, SealContext(key));
    auto value = std::make_shared<dht::Value>(dht::ValueType::USER_DATA.id,
                                              dht::Blob(bytes.begin(), bytes.end()), NewValueId());
    value->user_type = std::string(kBlobUserType);
    auto op = std::make_shared<PendingOp>(shared_);
    try {
      runner_.putSigned(
          key, value, [op](bool ok) { op->Finish(ok); }, /*permanent=*/true);
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat("DHT put failed: ", e.what()));
    }
    auto [done, ok] = op->Wait(absl::Now() + options_.op_timeout);
    if (!done || (!ok && KnownNodes() > 0)) {
      return absl::UnavailableError("the value reached no DHT node yet (OpenDHT keeps trying)");
    }
    return absl::OkStatus();
  }

  std::vector<std::string> ReadBlobs(std::string_view name) {
    absl::Time deadline = absl::Now() + options_.op_timeout;
    if (KnownNodes() == 0) deadline = std::min(deadline, absl::Now() + kLocalGetWait);
    const dht::InfoHash key = BlobKey(name);
    auto op = std::make_shared<PendingOp>(shared_);
    try {
      runner_.get(
          key,
          [op](const std::vector<std::shared_ptr<dht::Value>>& vals) {
            absl::MutexLock lock(&op->shared->mu);
            op->values.insert(op->values.end(), vals.begin(), vals.end());
            return true;
          },
          [op](bool ok) { op->Finish(ok); },
          [](const dht::Value& v) { return v.user_type == kBlobUserType; });
    } catch (const std::exception& e) {
      Log(absl::StrCat("DHT get failed: ", e.what()));
      return {};
    }
    op->Wait(deadline);
    std::vector<std::shared_ptr<dht::Value>> values;
    {
      absl::MutexLock lock(&op->shared->mu);
      values = op->values;
    }
    std::vector<std::string> out;
    for (const auto& v : values) {
      // Untrusted: unsigned or oversized values are dropped, and at most kMaxBlobValues kept.
      if (!v || !v->isSigned() ||
          v->data.size() > DhtRegistry::kMaxBlobBytes + RecordSeal::kOverhead) {
        continue;
      }
      if (out.size() >= DhtRegistry::kMaxBlobValues) break;
      std::string data(v->data.begin(), v->data.end());
      if (seal_) {
        auto opened = seal_->Open(data, SealContext(key));
        if (!opened.ok()) continue;
        data = std::move(*opened);
      }
      if (data.size() > DhtRegistry::kMaxBlobBytes) continue;
      if (std::find(out.begin(), out.end(), data) == out.end()) out.push_back(std::move(data));
    }
    return out;
  }

 private:
  // Raw values under the model's key, as many as arrived before the deadline.
  std::vector<std::shared_ptr<dht::Value>> Get(const std::string& model_id, absl::Time deadline) {
    // A node that knows no other node (the first of a new swarm, before it has heard back from
    // anyone) can only answer from its own storage, which get() reports at once; its search
    // would just wait out the deadline.
    if (KnownNodes() == 0) deadline = std::min(deadline, absl::Now() + kLocalGetWait);
    auto op = std::make_shared<PendingOp>(shared_);
    try {
      runner_.get(
          Key(model_id),
          [op](const std::vector<std::shared_ptr<dht::Value>>& vals) {
            absl::MutexLock lock(&op->shared->mu);
            op->values.insert(op->values.end(), vals.begin(), vals.end());
            return true;
          },
          [op](bool ok) { op->Finish(ok); },
          [user_type = UserType()](const dht::Value& v) { return v.user_type == user_type; });
    } catch (const std::exception& e) {
      Log(absl::StrCat("DHT get failed: ", e.what()));
      return {};
    }
    op->Wait(deadline);
    absl::MutexLock lock(&op->shared->mu);  // shared_->mu, named as the annotation names it
    return op->values;
  }

  RegistrySnapshot Verify(const std::vector<std::shared_ptr<dht::Value>>& values,
                          const std::string& model_id) {
    const int64_t now_ms = absl::ToUnixMillis(absl::Now());
    const int64_t max_ms = absl::ToInt64Milliseconds(options_.max_record_lifetime);
    absl::flat_hash_map<PeerId, PeerRecord> newest;
    const dht::InfoHash key = Key(model_id);
    const RecordSeal* seal = seal_ ? &*seal_ : nullptr;
    for (const auto& v : values) {
      if (!v) continue;
      auto r = VerifyPeerRecordValue(*v, key, seal, model_id, now_ms, max_ms);
      if (!r.ok()) {
        rejected_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      auto [it, inserted] = newest.try_emplace(r->peer_id, *r);
      if (!inserted && r->seq > it->second.seq) it->second = std::move(*r);
    }
    RegistrySnapshot out;
    for (auto& [id, r] : newest) {
      // Dropped only after picking the newest copy, so a withdrawal hides older online copies.
      if (r.state != PeerState::kOffline) out.push_back(std::move(r));
    }
    std::sort(out.begin(), out.end(), [](const PeerRecord& a, const PeerRecord& b) {
      return std::tie(a.blocks.first, a.peer_id) < std::tie(b.blocks.first, b.peer_id);
    });
    return out;
  }

  // Signs and puts `record` with a fresh expiry and seq; waits up to `wait` for the outcome
  // (or until Interrupt(), when `interruptible`; once interrupted, nothing is put).
  absl::Status PublishLocked(PeerRecord record, absl::Duration wait, bool interruptible = true)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(publish_mu_) {
    if (interruptible && Interrupted()) return InterruptedError();
    const absl::Time now = absl::Now();
    const int64_t now_ms = absl::ToUnixMillis(now);
    record.expiry_unix_ms = absl::ToUnixMillis(now + options_.record_ttl);
    // Time-based so that it keeps growing across restarts of the peer.
    record.seq = std::max<uint64_t>(last_seq_ + 1, static_cast<uint64_t>(now_ms));
    last_seq_ = record.seq;
    const dht::InfoHash key = Key(record.model_id);
    std::string bytes = SerializePeerRecord(record);
    // Sealed first, then signed (by putSigned): the signature covers the sealed bytes, and the
    // record inside names the peer whose key signed it, as in an open swarm.
    if (seal_) bytes = seal_->Seal(bytes, SealContext(key));
    auto value = std::make_shared<dht::Value>(dht::ValueType::USER_DATA.id,
                                              dht::Blob(bytes.begin(), bytes.end()), value_id_);
    value->user_type = std::string(UserType());
    auto op = std::make_shared<PendingOp>(shared_, interruptible);
    try {
      runner_.putSigned(
          key, value, [op](bool ok) { op->Finish(ok); },
          /*permanent=*/false);
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat("DHT put failed: ", e.what()));
    }
    auto [done, ok] = op->Wait(now + wait);
    if (!done) {
      return absl::UnavailableError(absl::StrCat(
          "publishing the peer record: no acknowledgement within ", absl::FormatDuration(wait)));
    }
    // The DHT thread set value->seq before completing the op. Near the 16-bit limit, or when a
    // put was refused (possibly because the stored copy's seq is at the limit), continue under
    // a fresh value id; older copies lose to newer records by our own seq and expire.
    if (value->seq >= kMaxDhtSeqBeforeNewId || (!ok && KnownNodes() > 0)) value_id_ = NewValueId();
    if (!ok) {
      // The first node of a new swarm has nobody to store at: its own copy is all there is.
      if (options_.initial_peers.empty() && KnownNodes() == 0) return absl::OkStatus();
      return absl::UnavailableError("the peer record reached no DHT node; will retry");
    }
    return absl::OkStatus();
  }

  // How long each DHT operation of a refresh may wait for its outcome (the operation itself goes
  // on in OpenDHT): short enough that a refresh (its interval, the put, the exchange of peers)
  // always ends well before the record it renews expires, however slow the DHT is right now.
  absl::Duration RefreshBudget() const {
    return std::min(options_.op_timeout, (options_.record_ttl - options_.refresh_interval) / 3);
  }

  void RefreshLoop() {
    absl::MutexLock lock(&mu_);
    while (!stop_) {
      const uint64_t seen = schedule_version_;
      auto woken = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || schedule_version_ != seen;
      };
      mu_.AwaitWithDeadline(absl::Condition(&woken), next_refresh_);
      if (stop_) return;
      if (schedule_version_ != seen || absl::Now() < next_refresh_) continue;
      // Jitter keeps peers started together from refreshing in lockstep.
      next_refresh_ = absl::Now() + options_.refresh_interval * jitter_(rng_);
      mu_.Unlock();
      std::optional<PeerRecord> record;
      {
        // Re-read under publish_mu_ so a concurrent Withdraw() cannot be overtaken by a
        // re-publication of the record it just took offline.
        absl::MutexLock publish_lock(&publish_mu_);
        {
          absl::MutexLock lock(&mu_);
          record = current_;
        }
        if (record) {
          absl::Status s = PublishLocked(*record, RefreshBudget());
          if (!s.ok()) Log(absl::StrCat("re-publishing the peer record: ", s.message()));
        }
      }
      if (record && absl::Now() >= next_exchange_) {
        next_exchange_ = absl::Now() + std::max(options_.refresh_interval, kExchangeInterval);
        ExchangePeers(record->model_id);
      }
      mu_.Lock();
    }
  }

  // Contacts the DHT nodes of peers seen in records. OpenDHT only vouches for nodes it has
  // heard back from, so without this two peers that joined through the same bootstrap node may
  // never learn about each other, and the swarm splits when that node leaves.
  void ExchangePeers(const std::string& model_id) {
    std::vector<std::shared_ptr<dht::Value>> values = Get(model_id, absl::Now() + RefreshBudget());
    RememberPeers(Verify(values, model_id));
    ContactKnownPeers(/*everyone=*/false);
  }

  // Adds the DHT endpoints of `snapshot`'s peers (other than this node) to those to contact.
  void RememberPeers(const RegistrySnapshot& snapshot) {
    absl::MutexLock lock(&contact_mu_);
    for (const PeerRecord& r : snapshot) {
      if (r.peer_id == peer_id_ || r.dht_port == 0) continue;
      auto hp = ParseTcpAddress(r.address);
      if (!hp.ok() || hp->host == "0.0.0.0" || hp->host == "::") continue;
      if (known_endpoints_.size() >= kMaxRememberedEndpoints) break;
      known_endpoints_.try_emplace(absl::StrCat(hp->host, ":", r.dht_port), absl::InfinitePast());
    }
  }

  bool HasSeenPeers() {
    absl::MutexLock lock(&contact_mu_);
    return !known_endpoints_.empty();
  }

  // Pings the remembered endpoints not pinged for kRepingInterval (or, with `everyone`, not in
  // the last kRecontactInterval): a node that answers joins this node's routing table.
  void ContactKnownPeers(bool everyone) {
    std::vector<std::string> endpoints;
    {
      absl::MutexLock lock(&contact_mu_);
      const absl::Time now = absl::Now();
      const absl::Duration interval = everyone ? kRecontactInterval : kRepingInterval;
      for (auto& [endpoint, pinged] : known_endpoints_) {
        if (now - pinged < interval) continue;
        pinged = now;
        endpoints.push_back(endpoint);
      }
    }
    for (const std::string& endpoint : endpoints) {
      auto hp = ParseHostPort(endpoint);
      if (!hp.ok()) continue;
      try {
        for (const dht::SockAddr& addr :
             dht::SockAddr::resolve(hp->host, std::to_string(hp->port))) {
          runner_.bootstrap(addr);
        }
      } catch (const std::exception& e) {
        Log(absl::StrCat("contacting ", endpoint, ": ", e.what()));
      }
    }
  }

  // Pings each initial peer once (a node that answers joins the routing table).
  void PingInitialPeers() {
    for (const std::string& p : options_.initial_peers) {
      auto hp = ParseHostPort(p);
      if (!hp.ok()) continue;
      try {
        for (const dht::SockAddr& addr :
             dht::SockAddr::resolve(hp->host, std::to_string(hp->port))) {
          runner_.bootstrap(addr);
        }
      } catch (const std::exception& e) {
        Log(absl::StrCat("contacting ", p, ": ", e.what()));
      }
    }
  }

  void Log(std::string_view message) {
    if (options_.log) options_.log(message);
  }

  const DhtRegistryOptions options_;
  std::optional<RecordSeal> seal_;  // a private swarm's
  std::atomic<uint64_t> rejected_{0};
  std::shared_ptr<SharedState> shared_;
  dht::DhtRunner runner_;
  bool started_ = false;
  dht::crypto::Identity identity_;
  PeerId peer_id_;

  // Serializes publications (Announce, Withdraw, refresh) and owns their bookkeeping.
  absl::Mutex publish_mu_;
  dht::Value::Id value_id_ ABSL_GUARDED_BY(publish_mu_) = 0;
  uint64_t last_seq_ ABSL_GUARDED_BY(publish_mu_) = 0;

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<PeerRecord> current_ ABSL_GUARDED_BY(mu_);
  absl::Time next_refresh_ ABSL_GUARDED_BY(mu_);
  uint64_t schedule_version_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread refresh_thread_;

  // DHT endpoints ("host:port") of peers seen in records, and when each was last pinged.
  absl::Mutex contact_mu_;
  absl::flat_hash_map<std::string, absl::Time> known_endpoints_ ABSL_GUARDED_BY(contact_mu_);

  // Refresh thread only.
  absl::Time next_exchange_ = absl::InfinitePast();
  std::mt19937 rng_{std::random_device{}()};
  std::uniform_real_distribution<double> jitter_{0.9, 1.1};
};

absl::StatusOr<std::unique_ptr<DhtRegistry>> DhtRegistry::Create(DhtRegistryOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  SWARM_RETURN_IF_ERROR(impl->Start());
  return std::unique_ptr<DhtRegistry>(new DhtRegistry(std::move(impl)));
}

DhtRegistry::DhtRegistry(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DhtRegistry::~DhtRegistry() = default;

uint16_t DhtRegistry::port() const { return impl_->port(); }
PeerId DhtRegistry::peer_id() const { return impl_->peer_id(); }
size_t DhtRegistry::KnownNodes() const { return impl_->KnownNodes(); }
uint64_t DhtRegistry::rejected_records() const { return impl_->rejected_records(); }
bool DhtRegistry::is_private() const { return impl_->is_private(); }
absl::Status DhtRegistry::Announce(const PeerRecord& record) { return impl_->Announce(record); }
absl::Status DhtRegistry::Withdraw(absl::Duration timeout) { return impl_->Withdraw(timeout); }
void DhtRegistry::Interrupt() { impl_->Interrupt(); }
absl::StatusOr<RegistrySnapshot> DhtRegistry::Snapshot(const std::string& model_id) {
  return impl_->Snapshot(model_id);
}
absl::Status DhtRegistry::PublishBlob(std::string_view name, std::string_view data) {
  return impl_->PublishBlob(name, data);
}
std::vector<std::string> DhtRegistry::ReadBlobs(std::string_view name) {
  return impl_->ReadBlobs(name);
}

}  // namespace swarm::registry
