#include "peer/tensor_manifest.h"

#include <sodium.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "base/mapped_file.h"
#include "base/status_macros.h"
#include "model/gguf.h"
#include "model/model_config.h"
#include "nlohmann/json.hpp"

namespace swarm::peer {
namespace {

constexpr std::string_view kFormat = "swarm-manifest-v1";
constexpr size_t kHashBytes = 32;
constexpr size_t kMaxTensors = size_t{1} << 20;

static_assert(sizeof(crypto_generichash_state) <= 384);

bool IsHashHex(std::string_view s) {
  return s.size() == 2 * kHashBytes && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace

ContentHash::ContentHash() {
  crypto_generichash_init(reinterpret_cast<crypto_generichash_state*>(state_), nullptr, 0,
                          kHashBytes);
}

void ContentHash::Update(std::span<const uint8_t> bytes) {
  crypto_generichash_update(reinterpret_cast<crypto_generichash_state*>(state_), bytes.data(),
                            bytes.size());
}

std::string ContentHash::HexDigest() {
  unsigned char out[kHashBytes];
  crypto_generichash_final(reinterpret_cast<crypto_generichash_state*>(state_), out, kHashBytes);
  char hex[2 * kHashBytes + 1];
  sodium_bin2hex(hex, sizeof hex, out, kHashBytes);
  return std::string(hex, 2 * kHashBytes);
}

std::string HashHex(std::span<const uint8_t> bytes) {
  ContentHash h;
  h.Update(bytes);
  return h.HexDigest();
}

absl::StatusOr<TensorManifest> TensorManifest::Compute(const std::string& gguf_path) {
  SWARM_ASSIGN_OR_RETURN(auto file, model::GgufFile::Open(gguf_path));
  SWARM_ASSIGN_OR_RETURN(auto mapped, MappedFile::Open(gguf_path));
  TensorManifest m;
  m.file_size = file->file_size();
  m.header_size = file->data_offset();
  m.header_hash = HashHex(mapped->bytes().subspan(0, m.header_size));
  auto config = model::ReadModelConfig(*file);
  if (config.ok()) m.model_id = config->model_id;
  for (const model::GgufTensorInfo& t : file->tensors()) {
    m.tensors[t.name] = HashHex(file->TensorData(t));
  }
  return m;
}

std::string ManifestDhtName(std::string_view model_id) {
  return absl::StrCat("swarm-manifest-v1:", ToAbsl(model_id));
}

std::string TensorManifest::ToJson(bool compact) const {
  nlohmann::ordered_json j;
  j["format"] = kFormat;
  j["hash"] = "blake2b-256";
  j["model_id"] = model_id;
  j["file_size"] = file_size;
  j["header"] = {{"size", header_size}, {"hash", header_hash}};
  nlohmann::ordered_json t = nlohmann::ordered_json::object();
  for (const auto& [name, hash] : tensors) t[name] = hash;
  j["tensors"] = std::move(t);
  return compact ? j.dump() : j.dump(1) + "\n";
}

absl::StatusOr<TensorManifest> TensorManifest::FromJson(std::string_view json) {
  const auto j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  const auto bad = [](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("not a swarm manifest: ", ToAbsl(why)));
  };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  if (!j.contains("format") || j["format"] != kFormat)
    return bad("format is not swarm-manifest-v1");
  TensorManifest m;
  if (!j.contains("file_size") || !j["file_size"].is_number_unsigned()) return bad("file_size");
  m.file_size = j["file_size"].get<uint64_t>();
  if (j.contains("model_id") && j["model_id"].is_string()) m.model_id = j["model_id"];
  const auto& header = j.contains("header") ? j["header"] : nlohmann::json();
  if (!header.is_object() || !header.contains("size") || !header["size"].is_number_unsigned() ||
      !header.contains("hash") || !header["hash"].is_string() ||
      !IsHashHex(header["hash"].get<std::string>())) {
    return bad("header {size, hash}");
  }
  m.header_size = header["size"].get<uint64_t>();
  m.header_hash = header["hash"].get<std::string>();
  if (m.header_size > m.file_size) return bad("header larger than the file");
  if (!j.contains("tensors") || !j["tensors"].is_object() || j["tensors"].size() > kMaxTensors) {
    return bad("tensors");
  }
  for (const auto& [name, hash] : j["tensors"].items()) {
    if (!hash.is_string() || !IsHashHex(hash.get<std::string>())) {
      return bad(absl::StrCat("hash of tensor '", name.substr(0, 64), "'"));
    }
    m.tensors[name] = hash.get<std::string>();
  }
  return m;
}

std::string TensorManifest::Digest() const {
  const std::string json = ToJson();
  return HashHex({reinterpret_cast<const uint8_t*>(json.data()), json.size()});
}

absl::Status TensorManifest::Check(std::string_view tensor, std::string_view hash) const {
  auto it = tensors.find(tensor);
  if (it == tensors.end()) {
    return absl::NotFoundError(
        absl::StrCat("the manifest has no entry for tensor '", ToAbsl(tensor), "'"));
  }
  if (it->second != hash) {
    return absl::DataLossError(absl::StrCat("tensor '", ToAbsl(tensor),
                                            "' does not match the manifest: blake2b ", ToAbsl(hash),
                                            ", expected ", it->second));
  }
  return absl::OkStatus();
}

}  // namespace swarm::peer
