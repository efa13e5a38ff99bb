// A read-only memory mapping of a whole file (RAII). Owned by whoever opened it; the bytes stay
// valid until it is destroyed. Pages are touched only when read, so mapping a large model costs no
// memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"

namespace swarm {

class MappedFile {
 public:
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

  // Tells the OS a range will be read soon (or is no longer needed), page-aligned internally.
  void AdviseWillNeed(size_t offset, size_t length) const;
  void AdviseDontNeed(size_t offset, size_t length) const;

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

// Drops this process's pages of [data, data + bytes), a range inside a read-only file mapping (a
// MappedFile's bytes), that lie wholly inside it: they stop counting toward the process's memory,
// and a later read faults them in again from the file. Must not be called on other memory.
void ReleaseMappedPages(const void* data, size_t bytes);

}  // namespace swarm
