#include "registry/record_seal.h"

#include <sodium.h>

#include <cstring>

#include "registry/dht_registry.h"

namespace swarm::registry {

RecordSeal::RecordSeal(const transport::SwarmSecret& secret)
    : key_name_key_(secret.Derive("dht-record-key", 32)),
      seal_key_(secret.Derive("dht-record-seal", crypto_aead_xchacha20poly1305_ietf_KEYBYTES)) {
  static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == kNonceSize);
  static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == kTagSize);
  // Idempotent; readies the random source Seal() draws nonces from. It fails only where no
  // random source exists at all, and then randombytes_buf aborts rather than repeat a nonce.
  [[maybe_unused]] const int sodium = sodium_init();
  const std::vector<uint8_t> id = secret.Derive("dht-network-id", 16);
  std::memcpy(&network_id_, id.data(), sizeof network_id_);
  // One in four billion: step off the ids an open node would speak.
  if (network_id_ == 0 || network_id_ == kSwarmNetworkId) network_id_ ^= 0x80000001u;
}

RecordSeal::~RecordSeal() {
  sodium_memzero(key_name_key_.data(), key_name_key_.size());
  sodium_memzero(seal_key_.data(), seal_key_.size());
}

std::array<uint8_t, RecordSeal::kRecordKeySize> RecordSeal::RecordKey(std::string_view name) const {
  std::array<uint8_t, kRecordKeySize> key{};
  crypto_generichash(key.data(), key.size(), reinterpret_cast<const uint8_t*>(name.data()),
                     name.size(), key_name_key_.data(), key_name_key_.size());
  return key;
}

std::string RecordSeal::Seal(std::string_view plaintext, std::string_view associated) const {
  std::string out(kOverhead + plaintext.size(), '\0');
  auto* bytes = reinterpret_cast<uint8_t*>(out.data());
  bytes[0] = kVersion;
  uint8_t* nonce = bytes + 1;
  // 192-bit random nonces: no counter to keep across restarts, no realistic chance of reuse.
  randombytes_buf(nonce, kNonceSize);
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      nonce + kNonceSize, &written, reinterpret_cast<const uint8_t*>(plaintext.data()),
      plaintext.size(), reinterpret_cast<const uint8_t*>(associated.data()), associated.size(),
      nullptr, nonce, seal_key_.data());
  out.resize(1 + kNonceSize + written);
  return out;
}

absl::StatusOr<std::string> RecordSeal::Open(std::string_view sealed,
                                             std::string_view associated) const {
  if (sealed.size() < kOverhead) return absl::DataLossError("sealed record too short");
  const auto* bytes = reinterpret_cast<const uint8_t*>(sealed.data());
  if (bytes[0] != kVersion) return absl::DataLossError("sealed record of another version");
  const uint8_t* nonce = bytes + 1;
  const uint8_t* ciphertext = nonce + kNonceSize;
  const size_t ciphertext_size = sealed.size() - 1 - kNonceSize;
  std::string out(ciphertext_size - kTagSize, '\0');
  unsigned long long opened = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<uint8_t*>(out.data()), &opened, nullptr, ciphertext, ciphertext_size,
          reinterpret_cast<const uint8_t*>(associated.data()), associated.size(), nonce,
          seal_key_.data()) != 0) {
    return absl::DataLossError("the record does not open with this swarm's secret");
  }
  out.resize(opened);
  return out;
}

}  // namespace swarm::registry
