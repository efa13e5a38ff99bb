#include "peer/remote_model.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/absl_compat.h"
#include "base/status_macros.h"
#include "model/slice.h"
#include "peer/download_progress.h"

namespace swarm::peer {
namespace {

constexpr uint64_t kFirstHeaderRead = uint64_t{1} << 20;
// Tensors closer than this are fetched in one range with the bytes between them (alignment).
constexpr uint64_t kMergeGap = 4096;
constexpr int kRetries = 2;
constexpr uint64_t kIdentityBytes = 64;

absl::Status Errno(std::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(ToAbsl(what), " ", path, ": ", std::strerror(errno)));
}

bool ParseU64(std::string_view s, uint64_t& out) {
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && ptr == s.data() + s.size();
}

}  // namespace

void ByteRanges::Add(uint64_t start, uint64_t end) {
  if (start >= end) return;
  auto it = ranges_.upper_bound(start);
  if (it != ranges_.begin() && std::prev(it)->second >= start) {
    --it;
    start = it->first;
    end = std::max(end, it->second);
    it = ranges_.erase(it);
  }
  while (it != ranges_.end() && it->first <= end) {
    end = std::max(end, it->second);
    it = ranges_.erase(it);
  }
  ranges_[start] = end;
}

void ByteRanges::Remove(uint64_t start, uint64_t end) {
  if (start >= end) return;
  auto it = ranges_.upper_bound(start);
  if (it != ranges_.begin()) --it;
  while (it != ranges_.end() && it->first < end) {
    const uint64_t a = it->first, b = it->second;
    if (b <= start) {
      ++it;
      continue;
    }
    it = ranges_.erase(it);
    if (a < start) ranges_[a] = start;
    if (b > end) {
      ranges_[end] = b;
      break;
    }
  }
}

bool ByteRanges::Covers(uint64_t start, uint64_t end) const { return Missing(start, end).empty(); }

std::vector<std::pair<uint64_t, uint64_t>> ByteRanges::Missing(uint64_t start, uint64_t end) const {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  uint64_t pos = start;
  auto it = ranges_.upper_bound(start);
  if (it != ranges_.begin()) --it;
  for (; it != ranges_.end() && pos < end; ++it) {
    if (it->second <= pos) continue;
    if (it->first >= end) break;
    if (it->first > pos) out.emplace_back(pos, it->first);
    pos = std::max(pos, it->second);
  }
  if (pos < end) out.emplace_back(pos, end);
  return out;
}

uint64_t ByteRanges::total() const {
  uint64_t sum = 0;
  for (const auto& [a, b] : ranges_) sum += b - a;
  return sum;
}

std::string DefaultModelCacheDir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
    return absl::StrCat(xdg, "/swarm/models");
  }
  const char* home = std::getenv("HOME");
  return absl::StrCat(home != nullptr ? home : ".", "/.cache/swarm/models");
}

RemoteModel::~RemoteModel() {
  if (file_fd_ >= 0) close(file_fd_);
  if (journal_fd_ >= 0) close(journal_fd_);  // releases the lock
}

absl::StatusOr<std::unique_ptr<RemoteModel>> RemoteModel::Open(RemoteModelOptions options) {
  std::unique_ptr<RemoteModel> m(new RemoteModel());
  m->options_ = std::move(options);
  RemoteModelOptions& o = m->options_;
  if (o.chunk_bytes == 0 || o.chunk_bytes > transport::HttpRangeClient::kMaxRange) {
    return absl::InvalidArgumentError("download chunk size out of range");
  }
  SWARM_ASSIGN_OR_RETURN(m->client_, transport::HttpRangeClient::Create(o.url));
  SWARM_ASSIGN_OR_RETURN(m->size_, m->client_->Size());
  if (o.manifest && o.manifest->file_size != m->size_) {
    return absl::FailedPreconditionError(absl::StrCat(o.url, " is ", m->size_,
                                                      " bytes but the manifest is for a file of ",
                                                      o.manifest->file_size, " bytes"));
  }
  // One folder per URL.
  const std::string key = HashHex({reinterpret_cast<const uint8_t*>(o.url.data()), o.url.size()});
  m->dir_ = absl::StrCat(o.cache_dir.empty() ? DefaultModelCacheDir() : o.cache_dir, "/",
                         key.substr(0, 16));
  std::error_code ec;
  std::filesystem::create_directories(m->dir_, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", m->dir_, ": ", ec.message()));
  {
    const std::string source = o.url + "\n";
    const std::string source_path = m->dir_ + "/source";
    if (FILE* f = std::fopen(source_path.c_str(), "w")) {
      std::fwrite(source.data(), 1, source.size(), f);
      std::fclose(f);
    }
  }
  SWARM_RETURN_IF_ERROR(m->LoadJournal());
  m->file_path_ = m->dir_ + "/model.gguf";
  m->file_fd_ = open(m->file_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (m->file_fd_ < 0) return Errno("cannot open", m->file_path_);
  struct stat st;
  if (fstat(m->file_fd_, &st) != 0) return Errno("cannot stat", m->file_path_);
  if (static_cast<uint64_t>(st.st_size) != m->size_ &&
      ftruncate(m->file_fd_, static_cast<off_t>(m->size_)) != 0) {
    return Errno("cannot size", m->file_path_);
  }
  SWARM_RETURN_IF_ERROR(m->FetchHeader());
  // The model's id hashes the first bytes of the embedding table (model::ReadModelConfig): they
  // are fetched with the header, so that the cache file yields the id the whole file does.
  if (const model::GgufTensorInfo* embd = m->header_->FindTensor("token_embd.weight")) {
    const uint64_t start = m->header_->data_offset() + embd->offset;
    DownloadProgress silent("", 0, /*enabled=*/false);
    SWARM_RETURN_IF_ERROR(
        m->Download(start, start + std::min<uint64_t>(embd->size, kIdentityBytes), silent));
  }
  return m;
}

// Journal lines: "size N" (first), "have A B", "drop A B", "header N", "ok NAME". A torn last
// line (the process killed while appending) is ignored; a journal for another size starts over.
absl::Status RemoteModel::LoadJournal() {
  const std::string path = dir_ + "/journal";
  journal_fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (journal_fd_ < 0) return Errno("cannot open", path);
  if (flock(journal_fd_, LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the download cache ", dir_, " is in use by another process"));
  }
  std::string text;
  char buffer[1 << 16];
  ssize_t n;
  while ((n = pread(journal_fd_, buffer, sizeof buffer, static_cast<off_t>(text.size()))) > 0) {
    text.append(buffer, static_cast<size_t>(n));
  }
  bool fresh = true;
  if (!text.empty()) {
    const size_t last_newline = text.rfind('\n');
    text.resize(last_newline == std::string::npos ? 0 : last_newline + 1);
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      std::vector<std::string_view> f;
      for (absl::string_view field : absl::StrSplit(line, ' ')) f.push_back(FromAbsl(field));
      uint64_t a = 0, b = 0;
      if (f.size() == 2 && f[0] == "size" && ParseU64(f[1], a)) {
        fresh = a != size_;
        if (fresh) break;
      } else if (f.size() == 3 && f[0] == "have" && ParseU64(f[1], a) && ParseU64(f[2], b) &&
                 a < b && b <= size_) {
        have_.Add(a, b);
      } else if (f.size() == 3 && f[0] == "drop" && ParseU64(f[1], a) && ParseU64(f[2], b)) {
        have_.Remove(a, b);
      } else if (f.size() == 2 && f[0] == "header" && ParseU64(f[1], a)) {
        header_size_ = a;
      } else if (f.size() == 2 && f[0] == "ok") {
        checked_.insert(std::string(f[1]));
      }
    }
  }
  if (fresh) {
    have_ = ByteRanges();
    checked_.clear();
    header_size_ = 0;
    if (ftruncate(journal_fd_, 0) != 0) return Errno("cannot reset", path);
    const std::string file = dir_ + "/model.gguf";
    (void)truncate(file.c_str(), 0);  // stale bytes of another file
    SWARM_RETURN_IF_ERROR(Append(absl::StrCat("size ", size_)));
  }
  return absl::OkStatus();
}

absl::Status RemoteModel::Append(const std::string& line) {
  const std::string text = line + "\n";
  if (write(journal_fd_, text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
      fdatasync(journal_fd_) != 0) {
    return Errno("cannot write the journal of", dir_);
  }
  return absl::OkStatus();
}

absl::Status RemoteModel::WriteAt(uint64_t offset, std::span<const uint8_t> bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = pwrite(file_fd_, bytes.data() + done, bytes.size() - done,
                             static_cast<off_t>(offset + done));
    if (n <= 0) return Errno("cannot write", file_path_);
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status RemoteModel::ReadAt(uint64_t offset, std::span<uint8_t> out) const {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n =
        pread(file_fd_, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n <= 0) return Errno("cannot read", file_path_);
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RemoteModel::HashRange(uint64_t offset, uint64_t length) const {
  ContentHash hash;
  std::vector<uint8_t> buffer(std::min<uint64_t>(length, uint64_t{4} << 20));
  for (uint64_t pos = 0; pos < length;) {
    const uint64_t n = std::min<uint64_t>(buffer.size(), length - pos);
    SWARM_RETURN_IF_ERROR(ReadAt(offset + pos, {buffer.data(), n}));
    hash.Update({buffer.data(), n});
    pos += n;
  }
  return hash.HexDigest();
}

// Bad bytes do not stay: the range reads as zeros again and must be fetched anew.
absl::Status RemoteModel::Erase(uint64_t start, uint64_t end) {
  have_.Remove(start, end);
  SWARM_RETURN_IF_ERROR(Append(absl::StrCat("drop ", start, " ", end)));
  if (fallocate(file_fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(start),
                static_cast<off_t>(end - start)) != 0) {
    const std::vector<uint8_t> zeros(std::min<uint64_t>(end - start, uint64_t{1} << 20));
    for (uint64_t pos = start; pos < end; pos += zeros.size()) {
      SWARM_RETURN_IF_ERROR(
          WriteAt(pos, {zeros.data(), std::min<uint64_t>(zeros.size(), end - pos)}));
    }
  }
  return absl::OkStatus();
}

absl::Status RemoteModel::FetchHeader() {
  const std::string where = options_.url;
  std::vector<uint8_t> prefix;
  uint64_t want = header_size_;
  if (header_size_ > 0 && header_size_ <= size_ && have_.Covers(0, header_size_)) {
    prefix.resize(header_size_);
    SWARM_RETURN_IF_ERROR(ReadAt(0, prefix));
  } else {
    want = std::min({size_, kFirstHeaderRead, options_.chunk_bytes});
  }
  while (true) {
    if (prefix.size() < want) {
      const uint64_t from = prefix.size();
      for (uint64_t pos = from; pos < want;) {
        const uint64_t n = std::min(options_.chunk_bytes, want - pos);
        SWARM_ASSIGN_OR_RETURN(std::vector<uint8_t> piece, client_->Read(pos, n));
        prefix.insert(prefix.end(), piece.begin(), piece.end());
        pos += n;
      }
      SWARM_RETURN_IF_ERROR(WriteAt(from, {prefix.data() + from, prefix.size() - from}));
      if (fdatasync(file_fd_) != 0) return Errno("cannot sync", file_path_);
      have_.Add(from, prefix.size());
      SWARM_RETURN_IF_ERROR(Append(absl::StrCat("have ", from, " ", prefix.size())));
    }
    auto parsed = model::GgufFile::FromHeader(prefix, size_, where);
    if (parsed.ok()) {
      header_ = std::move(*parsed);
      break;
    }
    if (!model::GgufFile::IsNeedMoreBytes(parsed.status())) return parsed.status();
    if (want >= size_ || want >= options_.max_header_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": the GGUF header is larger than ",
                                                     options_.max_header_bytes, " bytes: refused (",
                                                     parsed.status().message(), ")"));
    }
    want = std::min({size_, want * 4, options_.max_header_bytes});
  }
  const uint64_t h = header_->data_offset();
  SWARM_RETURN_IF_ERROR(
      CheckHeader({prefix.data(), std::min<uint64_t>(h, prefix.size())}, /*erase=*/true));
  if (header_size_ != h) {
    header_size_ = h;
    SWARM_RETURN_IF_ERROR(Append(absl::StrCat("header ", h)));
  }
  return absl::OkStatus();
}

absl::Status RemoteModel::CheckHeader(std::span<const uint8_t> header, bool erase) {
  if (!options_.manifest) return absl::OkStatus();
  const TensorManifest& m = *options_.manifest;
  const std::string hash = HashHex(header);
  if (m.file_size != size_ || m.header_size != header.size() || m.header_hash != hash) {
    if (erase) SWARM_RETURN_IF_ERROR(Erase(0, size_));
    return absl::DataLossError(
        absl::StrCat(options_.url, ": the file does not match the manifest (", size_,
                     " bytes, header of ", header.size(), " bytes, blake2b ", hash, "; expected ",
                     m.file_size, " bytes, header of ", m.header_size, " bytes, ", m.header_hash,
                     "): a different file or a bad mirror", erase ? "; discarded" : ""));
  }
  for (const model::GgufTensorInfo& t : header_->tensors()) {
    if (m.tensors.find(t.name) == m.tensors.end()) {
      return absl::DataLossError(
          absl::StrCat(options_.url, ": tensor '", t.name, "' is not in the manifest"));
    }
  }
  return absl::OkStatus();
}

absl::Status RemoteModel::SetManifest(TensorManifest manifest) {
  std::vector<uint8_t> header(header_->data_offset());
  SWARM_RETURN_IF_ERROR(ReadAt(0, header));
  std::optional<TensorManifest> before = std::move(options_.manifest);
  options_.manifest = std::move(manifest);
  // A manifest from elsewhere (the DHT) that does not fit is refused; the cache stays.
  if (absl::Status fits = CheckHeader(header, /*erase=*/false); !fits.ok()) {
    options_.manifest = std::move(before);
    return fits;
  }
  checked_.clear();  // what was taken unchecked is checked now, as it is loaded
  return absl::OkStatus();
}

absl::Status RemoteModel::Download(uint64_t start, uint64_t end, DownloadProgress& progress) {
  for (const auto& [a, b] : have_.Missing(start, end)) {
    for (uint64_t pos = a; pos < b;) {
      const uint64_t n = std::min(options_.chunk_bytes, b - pos);
      absl::StatusOr<std::vector<uint8_t>> piece;
      for (int attempt = 0;; ++attempt) {
        piece = client_->Read(pos, n);
        if (piece.ok() || attempt >= kRetries || !absl::IsUnavailable(piece.status())) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(250 << attempt));
      }
      if (!piece.ok()) return piece.status();
      SWARM_RETURN_IF_ERROR(WriteAt(pos, *piece));
      if (fdatasync(file_fd_) != 0) return Errno("cannot sync", file_path_);
      have_.Add(pos, pos + n);
      SWARM_RETURN_IF_ERROR(Append(absl::StrCat("have ", pos, " ", pos + n)));
      progress.Add(n);
      pos += n;
    }
  }
  return absl::OkStatus();
}

absl::Status RemoteModel::Verify(const model::GgufTensorInfo& t) {
  const uint64_t start = header_->data_offset() + t.offset;
  if (options_.manifest) {
    SWARM_ASSIGN_OR_RETURN(std::string hash, HashRange(start, t.size));
    absl::Status check = options_.manifest->Check(t.name, hash);
    if (!check.ok()) {
      SWARM_RETURN_IF_ERROR(Erase(start, start + t.size));
      return absl::DataLossError(absl::StrCat(options_.url, ": ", check.message(),
                                              "; the mirror served bad bytes (discarded)"));
    }
  }
  checked_.insert(t.name);
  // Only a check against a manifest is remembered across runs.
  return options_.manifest ? Append(absl::StrCat("ok ", t.name)) : absl::OkStatus();
}

uint64_t RemoteModel::TensorBytes(
    const std::function<bool(const model::GgufTensorInfo&)>& want) const {
  uint64_t sum = 0;
  for (const model::GgufTensorInfo& t : header_->tensors()) {
    if (want(t)) sum += t.size;
  }
  return sum;
}

absl::Status RemoteModel::Fetch(const std::function<bool(const model::GgufTensorInfo&)>& want,
                                std::string_view label) {
  // The tensors still to fetch or check, in file order, merged into runs.
  std::vector<const model::GgufTensorInfo*> todo;
  for (const model::GgufTensorInfo& t : header_->tensors()) {
    if (want(t) && checked_.find(t.name) == checked_.end()) todo.push_back(&t);
  }
  std::sort(todo.begin(), todo.end(),
            [](const auto* a, const auto* b) { return a->offset < b->offset; });
  const uint64_t base = header_->data_offset();
  uint64_t missing = 0;
  for (const auto* t : todo) {
    for (const auto& [a, b] : have_.Missing(base + t->offset, base + t->offset + t->size)) {
      missing += b - a;
    }
  }
  if (todo.empty()) return absl::OkStatus();
  DownloadProgress progress(absl::StrCat("fetch ", ToAbsl(label)), missing,
                            options_.progress && missing > 0);
  for (size_t i = 0; i < todo.size();) {
    size_t j = i + 1;
    uint64_t end = base + todo[i]->offset + todo[i]->size;
    while (j < todo.size() && base + todo[j]->offset <= end + kMergeGap) {
      end = std::max(end, base + todo[j]->offset + todo[j]->size);
      ++j;
    }
    SWARM_RETURN_IF_ERROR(Download(base + todo[i]->offset, end, progress));
    for (; i < j; ++i) SWARM_RETURN_IF_ERROR(Verify(*todo[i]));
  }
  progress.Finish();
  return absl::OkStatus();
}

absl::Status RemoteModel::FetchBlocks(int64_t first, int64_t last) {
  return Fetch(
      [&](const model::GgufTensorInfo& t) {
        const int64_t block = model::TensorBlock(t.name);
        return block >= 0 ? (block >= first && block < last) : !model::IsClientTensor(t.name);
      },
      absl::StrCat("blocks ", first, ":", last));
}

absl::Status RemoteModel::FetchClient() {
  return Fetch([](const model::GgufTensorInfo& t) { return model::TensorBlock(t.name) < 0; },
               "client tensors");
}

}  // namespace swarm::peer
