// Files for tests: read a whole file, write bytes, and a scratch folder removed with its owner.
// Plain functions and an RAII folder; no global state, safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace swarm::test_support {

// The whole file as text; "" when it cannot be read (the caller's expectation on the content
// reports that).
std::string ReadFile(const std::string& path);

// The whole file as bytes; empty when it cannot be read.
std::vector<uint8_t> ReadBytes(const std::string& path);

// Writes (replaces) the file; false when it cannot be written.
bool WriteFile(const std::string& path, const void* data, size_t n);
bool WriteFile(const std::string& path, const std::vector<uint8_t>& bytes);

// A fresh folder under the system's temporary folder, removed with everything in it when the
// ScratchDir goes. path() is "" when it could not be created.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  std::string File(std::string_view name) const { return path_ + "/" + std::string(name); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace swarm::test_support
