// How a private swarm keeps its DHT to itself, all derived from the swarm secret: the DHT network
// id its nodes speak (nodes of other networks drop its packets), the keys its records live under
// (an outsider cannot compute where to look), and the seal around every record value
// (XChaCha20-Poly1305 with a derived key: an outsider can neither read a record nor forge one).
// The records stay signed by their peers inside the DHT value as in an open swarm. A value type;
// any thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "transport/swarm_secret.h"

namespace swarm::registry {

class RecordSeal {
 public:
  // A sealed value: [version 1 byte][nonce 24 bytes][ciphertext][tag 16 bytes].
  static constexpr uint8_t kVersion = 1;
  static constexpr size_t kNonceSize = 24;
  static constexpr size_t kTagSize = 16;
  static constexpr size_t kOverhead = 1 + kNonceSize + kTagSize;
  static constexpr size_t kRecordKeySize = 20;  // a DHT key (InfoHash)

  explicit RecordSeal(const transport::SwarmSecret& secret);
  RecordSeal(const RecordSeal&) = default;
  RecordSeal& operator=(const RecordSeal&) = default;
  ~RecordSeal();  // wipes the keys

  // Never 0 (the public OpenDHT network) nor the open swarm's id.
  uint32_t network_id() const { return network_id_; }
  // The DHT key for `name` (what the open swarm hashes with SHA-1): keyed BLAKE2b-160.
  std::array<uint8_t, kRecordKeySize> RecordKey(std::string_view name) const;
  // Encrypts and authenticates `plaintext`, binding `associated` (not stored; Open needs the same
  // bytes): a fresh random nonce every time.
  std::string Seal(std::string_view plaintext, std::string_view associated) const;
  // DataLoss when `sealed` was not sealed with this swarm's key and `associated`, or was altered.
  absl::StatusOr<std::string> Open(std::string_view sealed, std::string_view associated) const;

 private:
  uint32_t network_id_ = 0;
  std::vector<uint8_t> key_name_key_;  // keys RecordKey
  std::vector<uint8_t> seal_key_;      // XChaCha20-Poly1305 key
};

}  // namespace swarm::registry
