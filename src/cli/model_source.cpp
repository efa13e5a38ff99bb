#include "cli/model_source.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "model/model_config.h"
#include "peer/download_progress.h"
#include "transport/http_range_client.h"

namespace swarm::cli {

void AddModelSourceFlags(CLI::App& cmd, ModelSourceFlags& flags) {
  const std::string group = "Model download";
  cmd.add_option("--model-url", flags.url,
                 "http:// URL of the model GGUF: only the tensors needed are fetched (ranges), "
                 "into --model-cache")
      ->group(group);
  cmd.add_option("--manifest", flags.manifest,
                 "Manifest of the model's tensor hashes (file or http:// URL, from `swarm "
                 "manifest`): every fetched tensor is checked against it")
      ->group(group);
  cmd.add_option("--model-cache", flags.cache_dir,
                 "Folder of downloaded models (default: ~/.cache/swarm/models)")
      ->group(group);
  cmd.add_option("--download-chunk-kib", flags.chunk_kib, "Bytes per range request, KiB")
      ->check(CLI::Range(int64_t{1}, int64_t{65536}))
      ->group("");
}

std::string ModelUrl(const ModelSourceFlags& flags, const std::string& model_flag) {
  if (!flags.url.empty()) return flags.url;
  return transport::IsHttpUrl(model_flag) ? model_flag : std::string();
}

absl::StatusOr<peer::TensorManifest> LoadManifest(const std::string& file_or_url) {
  constexpr uint64_t kMaxManifest = uint64_t{64} << 20;
  std::string text;
  if (transport::IsHttpUrl(file_or_url)) {
    SWARM_ASSIGN_OR_RETURN(auto client, transport::HttpRangeClient::Create(file_or_url));
    SWARM_ASSIGN_OR_RETURN(text, client->GetAll(kMaxManifest));
  } else {
    FILE* f = std::fopen(file_or_url.c_str(), "rb");
    if (f == nullptr) return absl::NotFoundError(absl::StrCat("cannot read ", file_or_url));
    char buffer[1 << 16];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0 && text.size() <= kMaxManifest) {
      text.append(buffer, n);
    }
    std::fclose(f);
  }
  auto manifest = peer::TensorManifest::FromJson(text);
  if (!manifest.ok()) {
    return absl::Status(manifest.status().code(),
                        absl::StrCat(file_or_url, ": ", manifest.status().message()));
  }
  return manifest;
}

absl::StatusOr<std::unique_ptr<peer::RemoteModel>> OpenRemoteModel(const std::string& url,
                                                                   const ModelSourceFlags& flags,
                                                                   bool quiet) {
  peer::RemoteModelOptions options;
  options.url = url;
  options.cache_dir = flags.cache_dir;
  options.chunk_bytes = static_cast<uint64_t>(flags.chunk_kib) * 1024;
  if (!flags.manifest.empty()) {
    SWARM_ASSIGN_OR_RETURN(options.manifest, LoadManifest(flags.manifest));
  } else if (!quiet) {
    std::fprintf(stderr,
                 "warning: no manifest for %s: downloaded tensors are not checked (pass "
                 "--manifest FILE|URL)\n",
                 url.c_str());
  }
  SWARM_ASSIGN_OR_RETURN(auto remote, peer::RemoteModel::Open(std::move(options)));
  std::fprintf(stderr, "model: %s, %s, %zu tensors; cache %s\n", url.c_str(),
               peer::DownloadProgress::Bytes(static_cast<double>(remote->file_size())).c_str(),
               remote->header().tensors().size(), remote->local_path().c_str());
  return remote;
}

absl::StatusOr<std::optional<peer::TensorManifest>> ReadManifestFromDht(
    registry::DhtRegistryOptions dht, const std::string& model_id) {
  dht.client_only = true;
  dht.port = 0;
  SWARM_ASSIGN_OR_RETURN(auto registry, registry::DhtRegistry::Create(std::move(dht)));
  // Anyone on the DHT may publish under the name: a value that does not parse, or two that
  // disagree, stop the download (choosing one would trust whoever answered first).
  std::optional<peer::TensorManifest> found;
  for (const std::string& value : registry->ReadBlobs(peer::ManifestDhtName(model_id))) {
    auto manifest = peer::TensorManifest::FromJson(value);
    if (!manifest.ok()) {
      return absl::DataLossError(absl::StrCat("the DHT holds a manifest for model ", model_id,
                                              " that does not parse (", manifest.status().message(),
                                              "): pass the right one with --manifest FILE|URL"));
    }
    if (found && found->Digest() != manifest->Digest()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the DHT holds different manifests for model ", model_id, " (", found->Digest(), " and ",
          manifest->Digest(), "): pass the right one with --manifest FILE|URL"));
    }
    found = std::move(*manifest);
  }
  return found;
}

absl::StatusOr<std::string> ResolveClientModel(const ModelSourceFlags& flags,
                                               const std::string& model_flag, bool all_blocks) {
  const std::string url = ModelUrl(flags, model_flag);
  if (url.empty()) {
    if (model_flag.empty()) return absl::InvalidArgumentError("give -m FILE or --model-url URL");
    return model_flag;
  }
  SWARM_ASSIGN_OR_RETURN(auto remote, OpenRemoteModel(url, flags));
  SWARM_RETURN_IF_ERROR(remote->FetchClient());
  if (all_blocks) {
    SWARM_ASSIGN_OR_RETURN(auto config, model::ReadModelConfig(remote->header()));
    SWARM_RETURN_IF_ERROR(remote->FetchBlocks(0, config.n_layer));
  }
  std::fprintf(
      stderr, "model: fetched %s this run\n",
      peer::DownloadProgress::Bytes(static_cast<double>(remote->bytes_downloaded())).c_str());
  return remote->local_path();
}

}  // namespace swarm::cli
