// The integrity manifest of a model file: the BLAKE2b-256 of its header (everything before the
// tensor data) and of each tensor's bytes, computed from a full local copy (`swarm manifest`) and
// published with the model. A peer that downloads only some tensors checks each against it, so a
// mirror that serves wrong bytes is caught naming the tensor. A value type; no shared state.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace swarm::peer {

// The DHT name under which a model's peers publish its manifest (compact JSON).
std::string ManifestDhtName(std::string_view model_id);

// Incremental BLAKE2b-256 (libsodium), hex digest.
class ContentHash {
 public:
  ContentHash();
  void Update(std::span<const uint8_t> bytes);
  std::string HexDigest();  // finishes the hash; call once

 private:
  alignas(64) unsigned char state_[384];  // crypto_generichash_state (checked in the .cpp)
};

std::string HashHex(std::span<const uint8_t> bytes);

struct TensorManifest {
  uint64_t file_size = 0;
  uint64_t header_size = 0;  // the data section's offset
  std::string header_hash;
  std::string model_id;
  std::map<std::string, std::string, std::less<>> tensors;  // name -> hash

  // From a whole local GGUF file.
  static absl::StatusOr<TensorManifest> Compute(const std::string& gguf_path);
  // JSON ({"format": "swarm-manifest-v1", ...}); FromJson checks shape and hash syntax.
  std::string ToJson(bool compact = false) const;
  static absl::StatusOr<TensorManifest> FromJson(std::string_view json);
  // The hash of ToJson(): what a peer announces so that others can fetch and check the manifest.
  std::string Digest() const;

  // Ok when `bytes` are the tensor's; DataLoss naming the tensor otherwise (NotFound when the
  // manifest has no such tensor).
  absl::Status Check(std::string_view tensor, std::string_view hash) const;
};

}  // namespace swarm::peer
