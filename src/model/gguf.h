// GGUF v3 reader over a memory-mapped file (Open) or bytes in memory (FromBytes, one parser for
// both). The bytes are untrusted: every count, length, type, offset and size is validated
// (overflow-safe), and a failure names what is wrong. A GgufFile owns its bytes (the mapping or a
// copy); tensor data spans and string views point into them and live as long as the GgufFile.
// Read-only once parsed: safe to share between threads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "base/mapped_file.h"
#include "kernels/ggml_type.h"

namespace swarm::model {

enum class GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

std::string_view GgufValueTypeName(GgufValueType type);

// One metadata value. Scalars are widened (integers to int64/uint64, floats to double); arrays keep
// their element type. Strings are views into the mapped file.
struct GgufValue {
  struct Array {
    GgufValueType element_type = GgufValueType::kUint8;
    std::vector<GgufValue> elements;
  };
  GgufValueType type = GgufValueType::kUint8;
  std::variant<uint64_t, int64_t, double, bool, std::string_view, Array> value;
};

struct GgufTensorInfo {
  std::string name;
  uint32_t n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // element counts, dimension 0 innermost
  kernels::GgmlType type = kernels::GgmlType::kF32;
  uint64_t offset = 0;  // relative to the start of the data section
  uint64_t size = 0;    // bytes
  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

class GgufFile {
 public:
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // Parses a copy of `bytes`; `name` stands for the path in path() and in error messages.
  static absl::StatusOr<std::unique_ptr<GgufFile>> FromBytes(std::span<const uint8_t> bytes,
                                                             std::string name = "<memory>");

  // Parses the header, metadata and tensor infos from the first bytes of a file of `file_size`
  // bytes (tensor placement is checked against file_size). OutOfRange (IsNeedMoreBytes) when the
  // header runs past `prefix`: fetch more and call again. TensorData() of such a file is empty.
  static absl::StatusOr<std::unique_ptr<GgufFile>> FromHeader(std::span<const uint8_t> prefix,
                                                              uint64_t file_size, std::string name);
  static bool IsNeedMoreBytes(const absl::Status& status) {
    return status.code() == absl::StatusCode::kOutOfRange;
  }

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return name_; }

  // Metadata, in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* Find(std::string_view key) const;
  bool Has(std::string_view key) const { return Find(key) != nullptr; }
  // Typed getters: NotFound if missing; InvalidArgument if of the wrong type. Integer getters
  // accept any integer type whose value fits; float getters accept any numeric type.
  absl::StatusOr<std::string_view> GetString(std::string_view key) const;
  absl::StatusOr<uint64_t> GetUint(std::string_view key) const;
  absl::StatusOr<int64_t> GetInt(std::string_view key) const;
  absl::StatusOr<double> GetFloat(std::string_view key) const;
  absl::StatusOr<bool> GetBool(std::string_view key) const;
  absl::StatusOr<std::vector<std::string_view>> GetStringArray(std::string_view key) const;
  absl::StatusOr<std::vector<float>> GetFloatArray(std::string_view key) const;
  absl::StatusOr<std::vector<int64_t>> GetIntArray(std::string_view key) const;

  // Tensors, in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(std::string_view name) const;
  // The tensor's bytes inside the mapping (validated to lie within the file at Open()); empty for
  // a file parsed FromHeader.
  std::span<const uint8_t> TensorData(const GgufTensorInfo& info) const;
  // Hints the OS to read these tensors' pages ahead (and only these).
  void Prefetch(const GgufTensorInfo& info) const;
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return size_; }

 private:
  GgufFile() = default;
  friend class GgufParser;
  // Parses bytes_, owned by file_ or copy_; errors are prefixed with name_.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Parse(std::unique_ptr<GgufFile> file);

  std::string name_;
  std::unique_ptr<MappedFile> file_;  // null for FromBytes
  std::vector<uint8_t> copy_;         // FromBytes' bytes
  std::span<const uint8_t> bytes_;
  uint64_t size_ = 0;  // the file's size: bytes_.size() but for FromHeader
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::map<std::string, size_t, std::less<>> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace swarm::model
