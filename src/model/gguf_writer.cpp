#include "model/gguf_writer.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "base/checked_math.h"
#include "base/status_macros.h"

namespace swarm::model {

namespace {

constexpr size_t kMaxTensorNameLength = 63;  // llama.cpp keeps names below GGML_MAX_NAME (64)
constexpr size_t kOutputBuffer = size_t{4} << 20;

template <typename T>
void Append(std::string& out, T v) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));  // little-endian host, as GGUF
  out.append(bytes, sizeof(T));
}

void AppendString(std::string& out, std::string_view s) {
  Append<uint64_t>(out, s.size());
  out.append(s);
}

std::string Encoded(GgufValueType type, std::string_view payload) {
  std::string out;
  Append<uint32_t>(out, static_cast<uint32_t>(type));
  out.append(payload);
  return out;
}

template <typename T>
std::string EncodedScalar(GgufValueType type, T v) {
  std::string payload;
  Append<T>(payload, v);
  return Encoded(type, payload);
}

template <typename T>
absl::Status AppendInteger(std::string& out, const GgufValue& v) {
  if (const auto* u = std::get_if<uint64_t>(&v.value)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
      return absl::InvalidArgumentError(
          absl::StrCat("value ", *u, " out of range for ", ToAbsl(GgufValueTypeName(v.type))));
    }
    Append<T>(out, static_cast<T>(*u));
    return absl::OkStatus();
  }
  if (const auto* i = std::get_if<int64_t>(&v.value)) {
    if (*i < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
        (*i > 0 &&
         static_cast<uint64_t>(*i) > static_cast<uint64_t>(std::numeric_limits<T>::max()))) {
      return absl::InvalidArgumentError(
          absl::StrCat("value ", *i, " out of range for ", ToAbsl(GgufValueTypeName(v.type))));
    }
    Append<T>(out, static_cast<T>(*i));
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("a ", ToAbsl(GgufValueTypeName(v.type)), " value does not hold an integer"));
}

// Appends the payload of `v` (without its type id).
absl::Status AppendPayload(std::string& out, const GgufValue& v, int depth) {
  switch (v.type) {
    case GgufValueType::kUint8:
      return AppendInteger<uint8_t>(out, v);
    case GgufValueType::kInt8:
      return AppendInteger<int8_t>(out, v);
    case GgufValueType::kUint16:
      return AppendInteger<uint16_t>(out, v);
    case GgufValueType::kInt16:
      return AppendInteger<int16_t>(out, v);
    case GgufValueType::kUint32:
      return AppendInteger<uint32_t>(out, v);
    case GgufValueType::kInt32:
      return AppendInteger<int32_t>(out, v);
    case GgufValueType::kUint64:
      return AppendInteger<uint64_t>(out, v);
    case GgufValueType::kInt64:
      return AppendInteger<int64_t>(out, v);
    case GgufValueType::kFloat32:
    case GgufValueType::kFloat64: {
      const auto* d = std::get_if<double>(&v.value);
      if (d == nullptr) return absl::InvalidArgumentError("a float value does not hold a double");
      if (v.type == GgufValueType::kFloat32) {
        Append<float>(out, static_cast<float>(*d));
      } else {
        Append<double>(out, *d);
      }
      return absl::OkStatus();
    }
    case GgufValueType::kBool: {
      const auto* b = std::get_if<bool>(&v.value);
      if (b == nullptr) return absl::InvalidArgumentError("a bool value does not hold a bool");
      Append<uint8_t>(out, *b ? 1 : 0);
      return absl::OkStatus();
    }
    case GgufValueType::kString: {
      const auto* s = std::get_if<std::string_view>(&v.value);
      if (s == nullptr) return absl::InvalidArgumentError("a string value does not hold a string");
      AppendString(out, *s);
      return absl::OkStatus();
    }
    case GgufValueType::kArray: {
      const auto* a = std::get_if<GgufValue::Array>(&v.value);
      if (a == nullptr) return absl::InvalidArgumentError("an array value does not hold an array");
      if (depth >= 8) return absl::InvalidArgumentError("arrays nested too deeply");
      Append<uint32_t>(out, static_cast<uint32_t>(a->element_type));
      Append<uint64_t>(out, a->elements.size());
      for (const GgufValue& e : a->elements) {
        if (e.type != a->element_type) {
          return absl::InvalidArgumentError(
              absl::StrCat("array of ", ToAbsl(GgufValueTypeName(a->element_type)), " holds a ",
                           ToAbsl(GgufValueTypeName(e.type))));
        }
        SWARM_RETURN_IF_ERROR(AppendPayload(out, e, depth + 1));
      }
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown value type ", static_cast<uint32_t>(v.type)));
}

}  // namespace

GgufWriter::~GgufWriter() { Abandon(); }

void GgufWriter::Abandon() {
  if (out_ != nullptr) {
    std::fclose(out_);
    out_ = nullptr;
    std::remove(tmp_path_.c_str());
  }
}

void GgufWriter::SetEncoded(std::string_view key, std::string encoded) {
  for (auto& [k, v] : metadata_) {
    if (k == key) {
      v = std::move(encoded);
      return;
    }
  }
  metadata_.emplace_back(std::string(key), std::move(encoded));
}

void GgufWriter::SetUint8(std::string_view key, uint8_t v) {
  SetEncoded(key, EncodedScalar(GgufValueType::kUint8, v));
}
void GgufWriter::SetInt8(std::string_view key, int8_t v) {
  SetEncoded(key, EncodedScalar(GgufValueType::kInt8, v));
}
void GgufWriter::SetUint16(std::string_view key, uint16_t v) {
  SetEncoded(key, EncodedScalar(GgufValueType::kUint16, v));
}
void GgufWriter::SetInt16(std::string_view key, int16_t v) {
  SetEncoded(key, EncodedScalar(GgufValueType::kInt16, v));
}
void GgufWriter::SetUint32(std::string_view key, uint32_t v) {
  SetEncoded(key, EncodedScalar(GgufValueType::kUint32, v));
}
void GgufWriter::SetInt32(std::string_view key, int32_t v) {
  SetEncoded(key, EncodedScalar(GgufValueType::kInt32, v));
}
void GgufWriter::SetUint64(std::string_view key, uint64_t v) {
  SetEncoded(key, EncodedScalar(GgufValueType::kUint64, v));
}
void GgufWriter::SetInt64(std::string_view key, int64_t v) {
  SetEncoded(key, EncodedScalar(GgufValueType::kInt64, v));
}
void GgufWriter::SetFloat32(std::string_view key, float v) {
  SetEncoded(key, EncodedScalar(GgufValueType::kFloat32, v));
}
void GgufWriter::SetFloat64(std::string_view key, double v) {
  SetEncoded(key, EncodedScalar(GgufValueType::kFloat64, v));
}
void GgufWriter::SetBool(std::string_view key, bool v) {
  SetEncoded(key, EncodedScalar<uint8_t>(GgufValueType::kBool, v ? 1 : 0));
}

void GgufWriter::SetString(std::string_view key, std::string_view v) {
  std::string payload;
  AppendString(payload, v);
  SetEncoded(key, Encoded(GgufValueType::kString, payload));
}

void GgufWriter::SetStringArray(std::string_view key, std::span<const std::string> v) {
  std::string payload;
  Append<uint32_t>(payload, static_cast<uint32_t>(GgufValueType::kString));
  Append<uint64_t>(payload, v.size());
  for (const std::string& s : v) AppendString(payload, s);
  SetEncoded(key, Encoded(GgufValueType::kArray, payload));
}

void GgufWriter::SetFloat32Array(std::string_view key, std::span<const float> v) {
  std::string payload;
  Append<uint32_t>(payload, static_cast<uint32_t>(GgufValueType::kFloat32));
  Append<uint64_t>(payload, v.size());
  for (float f : v) Append<float>(payload, f);
  SetEncoded(key, Encoded(GgufValueType::kArray, payload));
}

void GgufWriter::SetInt32Array(std::string_view key, std::span<const int32_t> v) {
  std::string payload;
  Append<uint32_t>(payload, static_cast<uint32_t>(GgufValueType::kInt32));
  Append<uint64_t>(payload, v.size());
  for (int32_t i : v) Append<int32_t>(payload, i);
  SetEncoded(key, Encoded(GgufValueType::kArray, payload));
}

absl::Status GgufWriter::SetValue(std::string_view key, const GgufValue& value) {
  std::string payload;
  absl::Status status = AppendPayload(payload, value, 0);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata '", ToAbsl(key), "': ", status.message()));
  }
  SetEncoded(key, Encoded(value.type, payload));
  return absl::OkStatus();
}

bool GgufWriter::HasKey(std::string_view key) const {
  for (const auto& [k, v] : metadata_) {
    if (k == key) return true;
  }
  return false;
}

void GgufWriter::RemoveKey(std::string_view key) {
  std::erase_if(metadata_, [&](const auto& kv) { return kv.first == key; });
}

absl::Status GgufWriter::SetAlignment(uint32_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("alignment ", alignment, " is not a power of two"));
  }
  if (alignment == 32) {
    RemoveKey("general.alignment");
  } else {
    SetUint32("general.alignment", alignment);
  }
  return absl::OkStatus();
}

absl::Status GgufWriter::AddTensor(std::string_view name, kernels::GgmlType type,
                                   std::vector<int64_t> ne) {
  const std::string label = absl::StrCat("tensor '", ToAbsl(name), "'");
  if (out_ != nullptr || failed_) {
    return absl::FailedPreconditionError(absl::StrCat(label, ": added after Begin()"));
  }
  if (name.empty() || name.size() > kMaxTensorNameLength) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": name must have 1..", kMaxTensorNameLength, " bytes"));
  }
  for (const Tensor& t : tensors_) {
    if (t.name == name) return absl::InvalidArgumentError(absl::StrCat("duplicate ", label));
  }
  if (ne.empty() || ne.size() > 4) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": ", ne.size(), " dimensions"));
  }
  uint64_t rows = 1;
  for (size_t d = 0; d < ne.size(); ++d) {
    if (ne[d] <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(label, ": dimension ", d, " is ", ne[d]));
    }
    if (d > 0) {
      auto r = CheckedMul(rows, static_cast<uint64_t>(ne[d]));
      if (!r) return absl::InvalidArgumentError(absl::StrCat(label, ": size overflows"));
      rows = *r;
    }
  }
  auto row_bytes = kernels::RowBytes(type, ne[0]);
  if (!row_bytes.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": ", row_bytes.status().message()));
  }
  auto size = CheckedMul(*row_bytes, rows);
  if (!size) return absl::InvalidArgumentError(absl::StrCat(label, ": size overflows"));
  tensors_.push_back(Tensor{std::string(name), type, std::move(ne), *size, 0});
  return absl::OkStatus();
}

absl::Status GgufWriter::Write(const void* data, size_t n) {
  if (n == 0) return absl::OkStatus();
  if (std::fwrite(data, 1, n, out_) != n) {
    failed_ = true;
    return absl::InternalError(absl::StrCat("writing ", tmp_path_, ": ", std::strerror(errno)));
  }
  position_ += n;
  return absl::OkStatus();
}

absl::Status GgufWriter::WritePadding(uint64_t position) {
  static constexpr char kZeros[256] = {};
  while (position_ < position) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(position - position_, sizeof kZeros));
    SWARM_RETURN_IF_ERROR(Write(kZeros, n));
  }
  return absl::OkStatus();
}

absl::Status GgufWriter::Begin(const std::string& path) {
  if (out_ != nullptr || failed_) return absl::FailedPreconditionError("Begin() called twice");
  // The alignment in force is whatever general.alignment says, also when copied from another file.
  alignment_ = 32;
  for (const auto& [k, v] : metadata_) {
    if (k != "general.alignment") continue;
    uint32_t type;
    std::memcpy(&type, v.data(), 4);
    if (type != static_cast<uint32_t>(GgufValueType::kUint32) || v.size() != 8) {
      return absl::InvalidArgumentError("general.alignment must be a u32");
    }
    uint32_t a;
    std::memcpy(&a, v.data() + 4, 4);
    if (a == 0 || (a & (a - 1)) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("general.alignment ", a, " is not a power of two"));
    }
    alignment_ = a;
  }
  uint64_t offset = 0;
  for (Tensor& t : tensors_) {
    auto aligned = CheckedAlignUp(offset, alignment_);
    auto end = aligned ? CheckedAdd(*aligned, t.size) : std::nullopt;
    if (!end) return absl::InvalidArgumentError("total tensor size overflows");
    t.offset = *aligned;
    offset = *end;
  }

  path_ = path;
  tmp_path_ = path + ".tmp";
  out_ = std::fopen(tmp_path_.c_str(), "wb");
  if (out_ == nullptr) {
    failed_ = true;
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", tmp_path_, ": ", std::strerror(errno)));
  }
  std::setvbuf(out_, nullptr, _IOFBF, kOutputBuffer);

  std::string header;
  header.append("GGUF", 4);
  Append<uint32_t>(header, 3);
  Append<uint64_t>(header, tensors_.size());
  Append<uint64_t>(header, metadata_.size());
  for (const auto& [k, v] : metadata_) {
    AppendString(header, k);
    header.append(v);
  }
  for (const Tensor& t : tensors_) {
    AppendString(header, t.name);
    Append<uint32_t>(header, static_cast<uint32_t>(t.ne.size()));
    for (int64_t n : t.ne) Append<uint64_t>(header, static_cast<uint64_t>(n));
    Append<uint32_t>(header, static_cast<uint32_t>(t.type));
    Append<uint64_t>(header, t.offset);
  }
  SWARM_RETURN_IF_ERROR(Write(header.data(), header.size()));
  data_start_ = *CheckedAlignUp(position_, alignment_);
  SWARM_RETURN_IF_ERROR(WritePadding(data_start_));
  current_tensor_ = 0;
  current_written_ = 0;
  return absl::OkStatus();
}

absl::Status GgufWriter::WriteTensorData(std::span<const uint8_t> bytes) {
  if (out_ == nullptr || failed_) {
    return absl::FailedPreconditionError("WriteTensorData() outside Begin()..Finish()");
  }
  while (!bytes.empty()) {
    // Skip zero-padding of finished tensors (also before the first byte of the next tensor).
    while (current_tensor_ < tensors_.size() &&
           current_written_ == tensors_[current_tensor_].size) {
      ++current_tensor_;
      current_written_ = 0;
    }
    if (current_tensor_ >= tensors_.size()) {
      failed_ = true;
      return absl::InvalidArgumentError(
          absl::StrCat(bytes.size(), " bytes of tensor data beyond the declared tensors"));
    }
    const Tensor& t = tensors_[current_tensor_];
    if (current_written_ == 0) SWARM_RETURN_IF_ERROR(WritePadding(data_start_ + t.offset));
    const uint64_t n = std::min<uint64_t>(bytes.size(), t.size - current_written_);
    SWARM_RETURN_IF_ERROR(Write(bytes.data(), static_cast<size_t>(n)));
    current_written_ += n;
    bytes = bytes.subspan(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status GgufWriter::Finish() {
  if (out_ == nullptr || failed_) return absl::FailedPreconditionError("Finish() without Begin()");
  while (current_tensor_ < tensors_.size() && current_written_ == tensors_[current_tensor_].size) {
    ++current_tensor_;
    current_written_ = 0;
  }
  if (current_tensor_ < tensors_.size()) {
    const Tensor& t = tensors_[current_tensor_];
    failed_ = true;
    Abandon();
    return absl::FailedPreconditionError(absl::StrCat("tensor '", t.name, "' got ",
                                                      current_written_, " of its ", t.size,
                                                      " bytes before Finish()"));
  }
  SWARM_RETURN_IF_ERROR(WritePadding(*CheckedAlignUp(position_, alignment_)));
  std::FILE* f = out_;
  out_ = nullptr;
  const bool flushed = std::fflush(f) == 0;
  const int flush_errno = errno;
  if (std::fclose(f) != 0 || !flushed) {
    failed_ = true;
    std::remove(tmp_path_.c_str());
    return absl::InternalError(
        absl::StrCat("writing ", tmp_path_, ": ", std::strerror(flushed ? errno : flush_errno)));
  }
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    failed_ = true;
    std::remove(tmp_path_.c_str());
    return absl::InternalError(
        absl::StrCat("renaming ", tmp_path_, " to ", path_, ": ", std::strerror(errno)));
  }
  failed_ = true;  // finished: the writer cannot be used again
  return absl::OkStatus();
}

}  // namespace swarm::model
