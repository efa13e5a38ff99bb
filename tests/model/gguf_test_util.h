// Helpers for the GGUF tests: a little-endian byte builder for hand-crafted (often malformed)
// files; the scratch directory and file writes of support/files.h.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "support/files.h"

namespace swarm::model::testing {

using test_support::ScratchDir;
using test_support::WriteFile;

class Bytes {
 public:
  Bytes& U8(uint8_t v) { return Raw(&v, 1); }
  Bytes& U32(uint32_t v) { return Raw(&v, 4); }
  Bytes& U64(uint64_t v) { return Raw(&v, 8); }
  Bytes& I32(int32_t v) { return Raw(&v, 4); }
  Bytes& F32(float v) { return Raw(&v, 4); }
  Bytes& Str(std::string_view s) {
    U64(s.size());
    return Raw(s.data(), s.size());
  }
  Bytes& Raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    data_.insert(data_.end(), b, b + n);
    return *this;
  }
  Bytes& PadTo(size_t alignment) {
    while (data_.size() % alignment != 0) data_.push_back(0);
    return *this;
  }
  Bytes& Zeros(size_t n) {
    data_.resize(data_.size() + n, 0);
    return *this;
  }
  // "GGUF", version, n_tensors, n_kv
  Bytes& Header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    Raw("GGUF", 4);
    U32(version);
    U64(n_tensors);
    return U64(n_kv);
  }
  // name, n_dims, dims, type, offset
  Bytes& TensorInfo(std::string_view name, std::vector<uint64_t> ne, uint32_t type,
                    uint64_t offset) {
    Str(name);
    U32(static_cast<uint32_t>(ne.size()));
    for (uint64_t n : ne) U64(n);
    U32(type);
    return U64(offset);
  }
  const std::vector<uint8_t>& data() const { return data_; }
  size_t size() const { return data_.size(); }

 private:
  std::vector<uint8_t> data_;
};

}  // namespace swarm::model::testing
