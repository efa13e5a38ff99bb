// GGUF v3 writer: metadata of every value type, tensor infos, then tensor data streamed to disk in
// declaration order, so a model larger than memory can be written chunk by chunk. The writer owns
// its output file, which appears under its final name only when Finish() succeeds (it is written to
// PATH.tmp first). One thread at a time.
#pragma once

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "kernels/ggml_type.h"
#include "model/gguf.h"

namespace swarm::model {

class GgufWriter {
 public:
  GgufWriter() = default;
  ~GgufWriter();
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // ---- metadata (before Begin). Setting an existing key replaces its value in place. ----------
  void SetUint8(std::string_view key, uint8_t v);
  void SetInt8(std::string_view key, int8_t v);
  void SetUint16(std::string_view key, uint16_t v);
  void SetInt16(std::string_view key, int16_t v);
  void SetUint32(std::string_view key, uint32_t v);
  void SetInt32(std::string_view key, int32_t v);
  void SetUint64(std::string_view key, uint64_t v);
  void SetInt64(std::string_view key, int64_t v);
  void SetFloat32(std::string_view key, float v);
  void SetFloat64(std::string_view key, double v);
  void SetBool(std::string_view key, bool v);
  void SetString(std::string_view key, std::string_view v);
  void SetStringArray(std::string_view key, std::span<const std::string> v);
  void SetFloat32Array(std::string_view key, std::span<const float> v);
  void SetInt32Array(std::string_view key, std::span<const int32_t> v);
  // Any value, nested arrays included (e.g. one read by GgufFile, copied verbatim with its exact
  // type). InvalidArgument if the value is inconsistent (an element of another type than its
  // array's, a number out of its type's range).
  absl::Status SetValue(std::string_view key, const GgufValue& value);
  bool HasKey(std::string_view key) const;
  void RemoveKey(std::string_view key);
  // Data alignment (a power of two); stored as general.alignment when not the default 32.
  absl::Status SetAlignment(uint32_t alignment);

  // ---- tensors (before Begin), in the order their data will be written -----------------------
  // ne: 1..4 positive element counts, dimension 0 innermost (a multiple of the type's block size).
  absl::Status AddTensor(std::string_view name, kernels::GgmlType type, std::vector<int64_t> ne);
  uint64_t tensor_bytes(size_t index) const { return tensors_[index].size; }
  size_t n_tensors() const { return tensors_.size(); }

  // ---- output --------------------------------------------------------------------------------
  // Creates PATH.tmp and writes the header, metadata and tensor infos.
  absl::Status Begin(const std::string& path);
  // Appends tensor data: the bytes of the declared tensors, in order, in chunks of any size
  // (a chunk may end inside a tensor or span several). Padding is inserted between tensors.
  absl::Status WriteTensorData(std::span<const uint8_t> bytes);
  // Checks every declared byte was written, flushes, and renames PATH.tmp to PATH.
  absl::Status Finish();

 private:
  struct Tensor {
    std::string name;
    kernels::GgmlType type;
    std::vector<int64_t> ne;
    uint64_t size = 0;
    uint64_t offset = 0;  // assigned by Begin()
  };
  void SetEncoded(std::string_view key, std::string encoded);
  absl::Status Write(const void* data, size_t n);
  absl::Status WritePadding(uint64_t position);
  void Abandon();

  std::vector<std::pair<std::string, std::string>> metadata_;  // key, encoded type + value
  std::vector<Tensor> tensors_;
  uint64_t alignment_ = 32;

  std::string path_;
  std::string tmp_path_;
  std::FILE* out_ = nullptr;
  uint64_t position_ = 0;         // bytes written to the file
  uint64_t data_start_ = 0;       // file offset of the data section
  size_t current_tensor_ = 0;     // tensor receiving data
  uint64_t current_written_ = 0;  // bytes of it written so far
  bool failed_ = false;
};

}  // namespace swarm::model
