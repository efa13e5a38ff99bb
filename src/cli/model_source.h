// Where a subcommand's model comes from: a local GGUF file, or an http:// URL fetched into the
// download cache (only the tensors needed). The flags (--model-url, --manifest, --model-cache)
// and the helpers serve, generate and api share. Plain functions; called on the main thread.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "peer/remote_model.h"
#include "registry/dht_registry.h"

namespace swarm::cli {

struct ModelSourceFlags {
  std::string url;           // --model-url (or -m with an http:// argument)
  std::string manifest;      // --manifest FILE|URL
  std::string cache_dir;     // --model-cache
  int64_t chunk_kib = 8192;  // --download-chunk-kib (hidden; tests use small pieces)
};

void AddModelSourceFlags(CLI::App& cmd, ModelSourceFlags& flags);

// The URL to fetch from: --model-url, or -m's value when it is an http(s):// URL; "" for a file.
std::string ModelUrl(const ModelSourceFlags& flags, const std::string& model_flag);

// Reads the manifest (a file, or an http:// URL).
absl::StatusOr<peer::TensorManifest> LoadManifest(const std::string& file_or_url);

// Opens the remote model (its header; nothing else is fetched yet), with the manifest of
// --manifest if given. Without one it warns that tensors go unchecked, unless `quiet` (a caller
// that looks for the manifest elsewhere first).
absl::StatusOr<std::unique_ptr<peer::RemoteModel>> OpenRemoteModel(const std::string& url,
                                                                   const ModelSourceFlags& flags,
                                                                   bool quiet = false);

// The manifest the model's peers publish in the DHT (a short-lived client node with `dht`'s
// bootstrap and secret): nullopt when none is there. The values are untrusted: one that does not
// parse (DataLoss) or several that disagree (FailedPrecondition) stop the caller, who must give
// the manifest with --manifest.
absl::StatusOr<std::optional<peer::TensorManifest>> ReadManifestFromDht(
    registry::DhtRegistryOptions dht, const std::string& model_id);

// For a client (generate, api): fetches what it needs (`all_blocks` too when the blocks run in
// process) and returns the cache file's path; a local file's path is returned as is.
absl::StatusOr<std::string> ResolveClientModel(const ModelSourceFlags& flags,
                                               const std::string& model_flag, bool all_blocks);

}  // namespace swarm::cli
