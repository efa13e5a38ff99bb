// libFuzzer target: a model's integrity manifest as a peer reads it from the DHT or a --manifest
// URL (peer/tensor_manifest.h), from anyone. TensorManifest::FromJson must refuse what is not a
// manifest with an error, never crash; a manifest it accepts must print back (compact or not) to
// JSON that parses to the same manifest with the same digest, and must accept exactly its own
// tensors' hashes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_support.h"
#include "peer/tensor_manifest.h"

namespace {

using swarm::fuzz::Check;
using swarm::peer::TensorManifest;

bool SameManifest(const TensorManifest& a, const TensorManifest& b) {
  return a.file_size == b.file_size && a.header_size == b.header_size &&
         a.header_hash == b.header_hash && a.model_id == b.model_id && a.tensors == b.tensors;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  auto manifest = TensorManifest::FromJson(json);
  if (!manifest.ok()) return 0;
  for (bool compact : {false, true}) {
    auto again = TensorManifest::FromJson(manifest->ToJson(compact));
    Check(again.ok(), "a manifest's own JSON is refused");
    Check(SameManifest(*again, *manifest), "a manifest's JSON parses to a different manifest");
    Check(again->Digest() == manifest->Digest(), "equal manifests have different digests");
  }
  for (const auto& [name, hash] : manifest->tensors) {
    Check(manifest->Check(name, hash).ok(), "a tensor's own hash is refused");
    std::string other = hash;
    other[0] = other[0] == '0' ? '1' : '0';
    Check(!manifest->Check(name, other).ok(), "a different hash is accepted");
    break;  // one tensor is enough; manifests may list thousands
  }
  Check(!manifest->Check(std::string(1, '\0') + "no such tensor", std::string(64, '0')).ok() ||
            manifest->tensors.count(std::string(1, '\0') + "no such tensor") == 1,
        "an unknown tensor is accepted");
  return 0;
}
