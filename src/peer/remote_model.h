// A model file on an HTTP server, fetched piece by piece into a local cache: the header first
// (ranges of growing size until it parses), then only the tensors asked for. The cache is one
// sparse file of the remote file's size at the same offsets (so the usual GGUF loader reads it;
// tensors never fetched read as zeros and must not be loaded) and a journal of the byte ranges
// written and the tensors checked, appended after each piece is on disk: a killed download
// resumes where it stopped. Each tensor is checked against the manifest when there is one; one
// that does not match is erased from the cache and named in the error. One thread uses it; the
// cache folder is locked against a second process.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/gguf.h"
#include "peer/tensor_manifest.h"
#include "transport/http_range_client.h"

namespace swarm::peer {

// Byte ranges [start, end), merged.
class ByteRanges {
 public:
  void Add(uint64_t start, uint64_t end);
  void Remove(uint64_t start, uint64_t end);
  bool Covers(uint64_t start, uint64_t end) const;
  std::vector<std::pair<uint64_t, uint64_t>> Missing(uint64_t start, uint64_t end) const;
  uint64_t total() const;

 private:
  std::map<uint64_t, uint64_t> ranges_;
};

struct RemoteModelOptions {
  std::string url;
  std::string cache_dir;  // empty: DefaultModelCacheDir()
  std::optional<TensorManifest> manifest;
  bool progress = true;                      // progress lines on stderr
  uint64_t chunk_bytes = uint64_t{8} << 20;  // bytes per range request (and journal entry)
  uint64_t max_header_bytes = uint64_t{256} << 20;
};

// $XDG_CACHE_HOME/swarm/models, else ~/.cache/swarm/models.
std::string DefaultModelCacheDir();

class RemoteModel {
 public:
  static absl::StatusOr<std::unique_ptr<RemoteModel>> Open(RemoteModelOptions options);
  ~RemoteModel();

  const model::GgufFile& header() const { return *header_; }
  uint64_t file_size() const { return size_; }
  // The cache file, a GGUF the loader opens; only fetched tensors hold the model's bytes. Its
  // model id (model::ReadModelConfig) is the whole file's: the bytes the id reads come first.
  const std::string& local_path() const { return file_path_; }
  // Bytes the server sent this process (header probes included).
  uint64_t bytes_downloaded() const { return client_->bytes_received(); }

  bool has_manifest() const { return options_.manifest.has_value(); }
  const std::optional<TensorManifest>& manifest() const { return options_.manifest; }
  // Checks the header fetched against `manifest` and checks every tensor fetched from now on
  // against it (tensors already checked without one are checked again). A manifest that does not
  // fit the header is refused (DataLoss) and the one before is kept.
  absl::Status SetManifest(TensorManifest manifest);

  // Brings the tensors `want` selects into the cache (those already there and checked are not
  // fetched again), checking each against the manifest.
  absl::Status Fetch(const std::function<bool(const model::GgufTensorInfo&)>& want,
                     std::string_view label);
  // Blocks [first, last) and the tensors of no block (norms, rope factors), not the client's.
  absl::Status FetchBlocks(int64_t first, int64_t last);
  // What a client needs: embeddings, output norm, LM head (the tokenizer is in the header).
  absl::Status FetchClient();
  // Bytes of tensors `want` selects (what a fetch of them costs from an empty cache).
  uint64_t TensorBytes(const std::function<bool(const model::GgufTensorInfo&)>& want) const;

 private:
  RemoteModel() = default;
  absl::Status LoadJournal();
  absl::Status Append(const std::string& line);
  absl::Status FetchHeader();
  // The header against the manifest (if any); on a mismatch the cache is discarded if `erase`.
  absl::Status CheckHeader(std::span<const uint8_t> header, bool erase);
  absl::Status WriteAt(uint64_t offset, std::span<const uint8_t> bytes);
  absl::Status ReadAt(uint64_t offset, std::span<uint8_t> out) const;
  absl::StatusOr<std::string> HashRange(uint64_t offset, uint64_t length) const;
  absl::Status Erase(uint64_t start, uint64_t end);
  absl::Status Download(uint64_t start, uint64_t end, class DownloadProgress& progress);
  absl::Status Verify(const model::GgufTensorInfo& t);

  RemoteModelOptions options_;
  std::unique_ptr<transport::HttpRangeClient> client_;
  std::unique_ptr<model::GgufFile> header_;
  uint64_t size_ = 0;
  std::string dir_;
  std::string file_path_;
  int file_fd_ = -1;
  int journal_fd_ = -1;
  ByteRanges have_;
  std::set<std::string, std::less<>> checked_;
  uint64_t header_size_ = 0;
};

}  // namespace swarm::peer
