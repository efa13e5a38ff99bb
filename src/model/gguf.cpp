#include "model/gguf.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "base/checked_math.h"
#include "base/status_macros.h"

namespace swarm::model {

namespace {

constexpr uint32_t kMaxDims = 4;
// Nested arrays are legal GGUF but no model uses more than one level; the bound keeps a crafted
// file from recursing deeply.
constexpr int kMaxArrayDepth = 8;
// Every parsed array element costs a GgufValue (~48 bytes) in memory: cap the total so a small
// crafted file cannot demand gigabytes. Real vocabularies (150k tokens + 300k merges) are far
// below it.
constexpr uint64_t kMaxTotalArrayElements = uint64_t{1} << 24;
constexpr uint64_t kMaxKeyLength = 65535;      // the spec's bound on keys
constexpr uint64_t kMaxTensorNameLength = 64;  // GGML_MAX_NAME
constexpr uint64_t kMaxAlignment = uint64_t{1} << 30;

// Smallest encoded size of a value of each type, used to bound counts by the bytes remaining.
uint64_t MinEncodedSize(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
      return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32:
      return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64:
    case GgufValueType::kString:  // u64 length
      return 8;
    case GgufValueType::kArray:  // u32 type + u64 count
      return 12;
  }
  return 1;
}

bool IsKnownValueType(uint32_t t) { return t <= static_cast<uint32_t>(GgufValueType::kFloat64); }

std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 80)) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out.push_back(c);
    } else {
      out += absl::StrCat("\\x", absl::Hex(u, absl::kZeroPad2));
    }
  }
  if (s.size() > 80) out += "...";
  return out;
}

bool IsInteger(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
      return true;
    default:
      return false;
  }
}

bool IsFloat(GgufValueType t) {
  return t == GgufValueType::kFloat32 || t == GgufValueType::kFloat64;
}

// Integer value as (negative?, magnitude) so both signed and unsigned range checks are exact.
absl::StatusOr<uint64_t> ValueAsUint(const GgufValue& v, std::string_view what) {
  if (const auto* u = std::get_if<uint64_t>(&v.value)) return *u;
  if (const auto* i = std::get_if<int64_t>(&v.value)) {
    if (*i < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(ToAbsl(what), ": value ", *i, " is negative, expected unsigned"));
    }
    return static_cast<uint64_t>(*i);
  }
  return absl::InvalidArgumentError(absl::StrCat(ToAbsl(what), ": expected an integer, found ",
                                                 ToAbsl(GgufValueTypeName(v.type))));
}

absl::StatusOr<int64_t> ValueAsInt(const GgufValue& v, std::string_view what) {
  if (const auto* i = std::get_if<int64_t>(&v.value)) return *i;
  if (const auto* u = std::get_if<uint64_t>(&v.value)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(
          absl::StrCat(ToAbsl(what), ": value ", *u, " does not fit in int64"));
    }
    return static_cast<int64_t>(*u);
  }
  return absl::InvalidArgumentError(absl::StrCat(ToAbsl(what), ": expected an integer, found ",
                                                 ToAbsl(GgufValueTypeName(v.type))));
}

absl::StatusOr<double> ValueAsFloat(const GgufValue& v, std::string_view what) {
  if (const auto* d = std::get_if<double>(&v.value)) return *d;
  if (const auto* i = std::get_if<int64_t>(&v.value)) return static_cast<double>(*i);
  if (const auto* u = std::get_if<uint64_t>(&v.value)) return static_cast<double>(*u);
  return absl::InvalidArgumentError(
      absl::StrCat(ToAbsl(what), ": expected a number, found ", ToAbsl(GgufValueTypeName(v.type))));
}

}  // namespace

std::string_view GgufValueTypeName(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
      return "u8";
    case GgufValueType::kInt8:
      return "i8";
    case GgufValueType::kUint16:
      return "u16";
    case GgufValueType::kInt16:
      return "i16";
    case GgufValueType::kUint32:
      return "u32";
    case GgufValueType::kInt32:
      return "i32";
    case GgufValueType::kFloat32:
      return "f32";
    case GgufValueType::kBool:
      return "bool";
    case GgufValueType::kString:
      return "string";
    case GgufValueType::kArray:
      return "array";
    case GgufValueType::kUint64:
      return "u64";
    case GgufValueType::kInt64:
      return "i64";
    case GgufValueType::kFloat64:
      return "f64";
  }
  return "unknown";
}

// Reads the header, metadata and tensor infos from the mapping with a bounds-checked cursor.
class GgufParser {
 public:
  // `bytes` may be a prefix of a file of `size` bytes (a header fetched from afar): reading past
  // the prefix but inside the file is NeedMoreBytes, past the file an error as usual.
  GgufParser(GgufFile& file, std::span<const uint8_t> bytes, uint64_t size)
      : file_(file), bytes_(bytes), size_(size) {}

  absl::Status Parse() {
    SWARM_RETURN_IF_ERROR(ParseHeader());
    SWARM_RETURN_IF_ERROR(ParseMetadata());
    SWARM_RETURN_IF_ERROR(ParseAlignment());
    SWARM_RETURN_IF_ERROR(ParseTensorInfos());
    return PlaceTensors();
  }

 private:
  uint64_t remaining() const { return size_ - pos_; }

  absl::Status Truncated(uint64_t need, std::string_view what) const {
    return absl::DataLossError(absl::StrCat("truncated file: ", ToAbsl(what), " needs ", need,
                                            " bytes at offset ", pos_, " but the file has ", size_,
                                            " bytes"));
  }

  // Inside the file but past the bytes held: the caller fetches more and parses again.
  absl::Status NeedMore(uint64_t n) const {
    return absl::OutOfRangeError(absl::StrCat("the header continues past the ", bytes_.size(),
                                              " bytes held (", pos_ + n, " needed)"));
  }

  absl::Status ReadBytes(void* dst, uint64_t n, std::string_view what) {
    if (n > remaining()) return Truncated(n, what);
    if (pos_ + n > bytes_.size()) return NeedMore(n);
    std::memcpy(dst, bytes_.data() + pos_, n);
    pos_ += n;
    return absl::OkStatus();
  }

  template <typename T>
  absl::StatusOr<T> Read(std::string_view what) {
    T v{};
    SWARM_RETURN_IF_ERROR(ReadBytes(&v, sizeof v, what));  // GGUF is little-endian, as are we
    return v;
  }

  absl::StatusOr<std::string_view> ReadString(std::string_view what, uint64_t max_length) {
    SWARM_ASSIGN_OR_RETURN(uint64_t length, Read<uint64_t>(what));
    if (length > remaining()) {
      return absl::DataLossError(absl::StrCat("truncated file: ", ToAbsl(what), " of length ",
                                              length, " at offset ", pos_, " runs past the end (",
                                              remaining(), " bytes remain)"));
    }
    if (length > max_length) {
      return absl::InvalidArgumentError(absl::StrCat(ToAbsl(what), " at offset ", pos_,
                                                     " has length ", length, " (maximum ",
                                                     max_length, ")"));
    }
    if (pos_ + length > bytes_.size()) return NeedMore(length);
    std::string_view s(reinterpret_cast<const char*>(bytes_.data() + pos_), length);
    pos_ += length;
    return s;
  }

  absl::Status ParseHeader() {
    char magic[4];
    SWARM_RETURN_IF_ERROR(ReadBytes(magic, 4, "magic"));
    if (std::memcmp(magic, "GGUF", 4) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("not a GGUF file: magic is '",
                                                     Printable(std::string_view(magic, 4)),
                                                     "', expected 'GGUF'"));
    }
    SWARM_ASSIGN_OR_RETURN(file_.version_, Read<uint32_t>("version"));
    if (file_.version_ != 2 && file_.version_ != 3) {
      const bool big_endian = file_.version_ == 0x02000000 || file_.version_ == 0x03000000;
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported GGUF version ", file_.version_, " (supported: 2 and 3)",
                       big_endian ? "; this looks like a big-endian GGUF" : ""));
    }
    SWARM_ASSIGN_OR_RETURN(n_tensors_, Read<uint64_t>("tensor count"));
    SWARM_ASSIGN_OR_RETURN(n_kv_, Read<uint64_t>("metadata count"));
    // Each tensor info takes at least 24 bytes and each key/value pair at least 13: counts beyond
    // what the file could hold are rejected before anything is allocated for them.
    if (n_kv_ > remaining() / 13) {
      return absl::InvalidArgumentError(
          absl::StrCat("metadata count ", n_kv_, " cannot fit in the ", remaining(),
                       " bytes after the header (truncated or corrupt file)"));
    }
    if (n_tensors_ > remaining() / 24) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor count ", n_tensors_, " cannot fit in the ", remaining(),
                       " bytes after the header (truncated or corrupt file)"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<GgufValue> ReadValue(GgufValueType type, std::string_view key, int depth) {
    GgufValue v;
    v.type = type;
    switch (type) {
      case GgufValueType::kUint8: {
        SWARM_ASSIGN_OR_RETURN(uint8_t x, Read<uint8_t>(key));
        v.value = uint64_t{x};
        break;
      }
      case GgufValueType::kInt8: {
        SWARM_ASSIGN_OR_RETURN(int8_t x, Read<int8_t>(key));
        v.value = int64_t{x};
        break;
      }
      case GgufValueType::kUint16: {
        SWARM_ASSIGN_OR_RETURN(uint16_t x, Read<uint16_t>(key));
        v.value = uint64_t{x};
        break;
      }
      case GgufValueType::kInt16: {
        SWARM_ASSIGN_OR_RETURN(int16_t x, Read<int16_t>(key));
        v.value = int64_t{x};
        break;
      }
      case GgufValueType::kUint32: {
        SWARM_ASSIGN_OR_RETURN(uint32_t x, Read<uint32_t>(key));
        v.value = uint64_t{x};
        break;
      }
      case GgufValueType::kInt32: {
        SWARM_ASSIGN_OR_RETURN(int32_t x, Read<int32_t>(key));
        v.value = int64_t{x};
        break;
      }
      case GgufValueType::kUint64: {
        SWARM_ASSIGN_OR_RETURN(uint64_t x, Read<uint64_t>(key));
        v.value = x;
        break;
      }
      case GgufValueType::kInt64: {
        SWARM_ASSIGN_OR_RETURN(int64_t x, Read<int64_t>(key));
        v.value = x;
        break;
      }
      case GgufValueType::kFloat32: {
        SWARM_ASSIGN_OR_RETURN(float x, Read<float>(key));
        v.value = double{x};
        break;
      }
      case GgufValueType::kFloat64: {
        SWARM_ASSIGN_OR_RETURN(double x, Read<double>(key));
        v.value = x;
        break;
      }
      case GgufValueType::kBool: {
        SWARM_ASSIGN_OR_RETURN(uint8_t x, Read<uint8_t>(key));
        if (x > 1) {
          return absl::InvalidArgumentError(absl::StrCat("metadata '", Printable(key),
                                                         "': bool value ", x, " at offset ",
                                                         pos_ - 1, " is neither 0 nor 1"));
        }
        v.value = x != 0;
        break;
      }
      case GgufValueType::kString: {
        SWARM_ASSIGN_OR_RETURN(std::string_view s,
                               ReadString(absl::StrCat("metadata '", Printable(key), "' string"),
                                          std::numeric_limits<uint64_t>::max()));
        v.value = s;
        break;
      }
      case GgufValueType::kArray: {
        if (depth >= kMaxArrayDepth) {
          return absl::InvalidArgumentError(absl::StrCat(
              "metadata '", Printable(key), "': arrays nested deeper than ", kMaxArrayDepth));
        }
        SWARM_ASSIGN_OR_RETURN(uint32_t element_type, Read<uint32_t>(key));
        if (!IsKnownValueType(element_type)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "metadata '", Printable(key), "': unknown array element type ", element_type));
        }
        SWARM_ASSIGN_OR_RETURN(uint64_t count, Read<uint64_t>(key));
        const auto etype = static_cast<GgufValueType>(element_type);
        if (count > remaining() / MinEncodedSize(etype)) {
          return absl::InvalidArgumentError(
              absl::StrCat("metadata '", Printable(key), "': array of ", count, " ",
                           ToAbsl(GgufValueTypeName(etype)), " elements cannot fit in the ",
                           remaining(), " bytes left in the file"));
        }
        total_array_elements_ += count;  // cannot overflow: each count is below the file size
        if (total_array_elements_ > kMaxTotalArrayElements) {
          return absl::InvalidArgumentError(absl::StrCat("metadata '", Printable(key),
                                                         "': more than ", kMaxTotalArrayElements,
                                                         " array elements in total"));
        }
        GgufValue::Array array;
        array.element_type = etype;
        array.elements.reserve(count);
        for (uint64_t i = 0; i < count; ++i) {
          SWARM_ASSIGN_OR_RETURN(GgufValue e, ReadValue(etype, key, depth + 1));
          array.elements.push_back(std::move(e));
        }
        v.value = std::move(array);
        break;
      }
      default:
        return absl::InvalidArgumentError(absl::StrCat(
            "metadata '", Printable(key), "': unknown value type ", static_cast<uint32_t>(type)));
    }
    return v;
  }

  absl::Status ParseMetadata() {
    file_.metadata_.reserve(n_kv_);
    for (uint64_t i = 0; i < n_kv_; ++i) {
      const uint64_t key_offset = pos_;
      SWARM_ASSIGN_OR_RETURN(std::string_view key,
                             ReadString(absl::StrCat("metadata key ", i), kMaxKeyLength));
      if (key.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("metadata key ", i, " at offset ", key_offset, " is empty"));
      }
      SWARM_ASSIGN_OR_RETURN(uint32_t type,
                             Read<uint32_t>(absl::StrCat("metadata '", Printable(key), "' type")));
      if (!IsKnownValueType(type)) {
        return absl::InvalidArgumentError(
            absl::StrCat("metadata '", Printable(key), "': unknown value type ", type));
      }
      SWARM_ASSIGN_OR_RETURN(GgufValue value, ReadValue(static_cast<GgufValueType>(type), key, 0));
      std::string key_string(key);
      if (file_.metadata_index_.count(key_string) != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("duplicate metadata key '", Printable(key), "'"));
      }
      file_.metadata_index_.emplace(key_string, file_.metadata_.size());
      file_.metadata_.emplace_back(std::move(key_string), std::move(value));
    }
    return absl::OkStatus();
  }

  absl::Status ParseAlignment() {
    const GgufValue* v = file_.Find("general.alignment");
    if (v == nullptr) return absl::OkStatus();
    if (!IsInteger(v->type)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "general.alignment has type ", ToAbsl(GgufValueTypeName(v->type)), ", expected u32"));
    }
    SWARM_ASSIGN_OR_RETURN(uint64_t a, ValueAsUint(*v, "general.alignment"));
    if (a == 0 || (a & (a - 1)) != 0 || a > kMaxAlignment) {
      return absl::InvalidArgumentError(
          absl::StrCat("general.alignment ", a, " is not a power of two up to ", kMaxAlignment));
    }
    file_.alignment_ = a;
    return absl::OkStatus();
  }

  absl::Status ParseTensorInfos() {
    file_.tensors_.reserve(n_tensors_);
    for (uint64_t i = 0; i < n_tensors_; ++i) {
      GgufTensorInfo info;
      SWARM_ASSIGN_OR_RETURN(std::string_view name,
                             ReadString(absl::StrCat("tensor ", i, " name"), kMaxTensorNameLength));
      if (name.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("tensor ", i, " has an empty name"));
      }
      info.name = std::string(name);
      const std::string label = absl::StrCat("tensor '", Printable(name), "'");
      SWARM_ASSIGN_OR_RETURN(info.n_dims, Read<uint32_t>(absl::StrCat(label, " n_dims")));
      if (info.n_dims == 0 || info.n_dims > kMaxDims) {
        return absl::InvalidArgumentError(
            absl::StrCat(label, ": n_dims ", info.n_dims, " is outside 1..", kMaxDims));
      }
      uint64_t n_elements = 1;
      for (uint32_t d = 0; d < info.n_dims; ++d) {
        SWARM_ASSIGN_OR_RETURN(uint64_t ne, Read<uint64_t>(absl::StrCat(label, " dimension")));
        if (ne == 0 || ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
          return absl::InvalidArgumentError(absl::StrCat(
              label, ": dimension ", d, " is ", static_cast<int64_t>(ne), " (must be positive)"));
        }
        auto product = CheckedMul(n_elements, ne);
        if (!product || *product > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
          return absl::InvalidArgumentError(absl::StrCat(label, ": element count overflows"));
        }
        n_elements = *product;
        info.ne[d] = static_cast<int64_t>(ne);
      }
      SWARM_ASSIGN_OR_RETURN(uint32_t type_id, Read<uint32_t>(absl::StrCat(label, " type")));
      auto traits = kernels::GetTypeTraits(type_id);
      if (!traits.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(label, ": ", traits.status().message()));
      }
      info.type = static_cast<kernels::GgmlType>(type_id);
      auto row_bytes = kernels::RowBytes(info.type, info.ne[0]);
      if (!row_bytes.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(label, ": ", row_bytes.status().message()));
      }
      auto size = CheckedMul(*row_bytes, static_cast<uint64_t>(n_elements / info.ne[0]));
      if (!size) {
        return absl::InvalidArgumentError(absl::StrCat(label, ": byte size overflows"));
      }
      info.size = *size;
      SWARM_ASSIGN_OR_RETURN(info.offset, Read<uint64_t>(absl::StrCat(label, " offset")));
      if (file_.tensor_index_.count(info.name) != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("duplicate tensor name '", Printable(name), "'"));
      }
      file_.tensor_index_.emplace(info.name, file_.tensors_.size());
      file_.tensors_.push_back(std::move(info));
    }
    return absl::OkStatus();
  }

  absl::Status PlaceTensors() {
    const uint64_t file_size = size_;
    auto data_offset = CheckedAlignUp(pos_, file_.alignment_);
    if (!data_offset) return absl::InvalidArgumentError("data section offset overflows");
    // A file without tensors (e.g. a vocabulary-only GGUF) may end right after its header.
    if (*data_offset > file_size && !file_.tensors_.empty()) {
      return absl::DataLossError(absl::StrCat("truncated file: data section starts at ",
                                              *data_offset, " but the file has ", file_size,
                                              " bytes"));
    }
    file_.data_offset_ = std::min(*data_offset, file_size);
    const uint64_t data_size = file_size - file_.data_offset_;

    std::vector<const GgufTensorInfo*> by_offset;
    by_offset.reserve(file_.tensors_.size());
    for (const GgufTensorInfo& t : file_.tensors_) {
      if (t.offset % file_.alignment_ != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", Printable(t.name), "': data offset ", t.offset,
                         " is not a multiple of the alignment ", file_.alignment_));
      }
      auto end = CheckedAdd(t.offset, t.size);
      if (!end || *end > data_size) {
        auto abs_start = CheckedAdd(file_.data_offset_, t.offset);
        auto abs_end = abs_start ? CheckedAdd(*abs_start, t.size) : std::nullopt;
        return absl::DataLossError(
            absl::StrCat("tensor '", Printable(t.name), "': data [",
                         abs_start ? absl::StrCat(*abs_start) : std::string("overflow"), ", ",
                         abs_end ? absl::StrCat(*abs_end) : std::string("overflow"),
                         ") past end of file (size ", file_size, ")"));
      }
      by_offset.push_back(&t);
    }
    std::sort(
        by_offset.begin(), by_offset.end(),
        [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
      const GgufTensorInfo& prev = *by_offset[i - 1];
      const GgufTensorInfo& cur = *by_offset[i];
      if (cur.offset < prev.offset + prev.size) {  // no overflow: checked above
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor '", Printable(cur.name), "': data at offset ", cur.offset, " overlaps tensor '",
            Printable(prev.name), "' [", prev.offset, ", ", prev.offset + prev.size, ")"));
      }
    }
    return absl::OkStatus();
  }

  GgufFile& file_;
  std::span<const uint8_t> bytes_;
  uint64_t size_;
  uint64_t pos_ = 0;
  uint64_t n_tensors_ = 0;
  uint64_t n_kv_ = 0;
  uint64_t total_array_elements_ = 0;
};

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  SWARM_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, MappedFile::Open(path));
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->name_ = path;
  file->file_ = std::move(mapped);
  file->bytes_ = file->file_->bytes();
  return Parse(std::move(file));
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::FromBytes(std::span<const uint8_t> bytes,
                                                              std::string name) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->name_ = std::move(name);
  file->copy_.assign(bytes.begin(), bytes.end());
  file->bytes_ = file->copy_;
  return Parse(std::move(file));
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::FromHeader(std::span<const uint8_t> prefix,
                                                               uint64_t file_size,
                                                               std::string name) {
  if (prefix.size() > file_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": ", prefix.size(), " header bytes for a file of ", file_size));
  }
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->name_ = std::move(name);
  file->copy_.assign(prefix.begin(), prefix.end());
  file->bytes_ = file->copy_;
  file->size_ = file_size;
  return Parse(std::move(file));
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(std::unique_ptr<GgufFile> file) {
  if (file->size_ == 0) file->size_ = file->bytes_.size();
  GgufParser parser(*file, file->bytes_, file->size_);
  absl::Status status;
  try {
    status = parser.Parse();
  } catch (const std::bad_alloc&) {
    status = absl::ResourceExhaustedError("out of memory while parsing GGUF metadata");
  }
  if (!status.ok()) {
    return absl::Status(status.code(), absl::StrCat(file->name_, ": ", status.message()));
  }
  return file;
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

namespace {

absl::StatusOr<const GgufValue*> FindOrNotFound(const GgufFile& file, std::string_view key) {
  const GgufValue* v = file.Find(key);
  if (v == nullptr) {
    return absl::NotFoundError(absl::StrCat("metadata key '", ToAbsl(key), "' not found"));
  }
  return v;
}

absl::StatusOr<const GgufValue::Array*> FindArray(const GgufFile& file, std::string_view key) {
  SWARM_ASSIGN_OR_RETURN(const GgufValue* v, FindOrNotFound(file, key));
  const auto* array = std::get_if<GgufValue::Array>(&v->value);
  if (array == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("metadata '", ToAbsl(key), "' has type ",
                                                   ToAbsl(GgufValueTypeName(v->type)),
                                                   ", expected an array"));
  }
  return array;
}

}  // namespace

absl::StatusOr<std::string_view> GgufFile::GetString(std::string_view key) const {
  SWARM_ASSIGN_OR_RETURN(const GgufValue* v, FindOrNotFound(*this, key));
  const auto* s = std::get_if<std::string_view>(&v->value);
  if (s == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("metadata '", ToAbsl(key), "' has type ",
                                                   ToAbsl(GgufValueTypeName(v->type)),
                                                   ", expected string"));
  }
  return *s;
}

absl::StatusOr<uint64_t> GgufFile::GetUint(std::string_view key) const {
  SWARM_ASSIGN_OR_RETURN(const GgufValue* v, FindOrNotFound(*this, key));
  return ValueAsUint(*v, absl::StrCat("metadata '", ToAbsl(key), "'"));
}

absl::StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  SWARM_ASSIGN_OR_RETURN(const GgufValue* v, FindOrNotFound(*this, key));
  return ValueAsInt(*v, absl::StrCat("metadata '", ToAbsl(key), "'"));
}

absl::StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  SWARM_ASSIGN_OR_RETURN(const GgufValue* v, FindOrNotFound(*this, key));
  return ValueAsFloat(*v, absl::StrCat("metadata '", ToAbsl(key), "'"));
}

absl::StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  SWARM_ASSIGN_OR_RETURN(const GgufValue* v, FindOrNotFound(*this, key));
  const auto* b = std::get_if<bool>(&v->value);
  if (b == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("metadata '", ToAbsl(key), "' has type ",
                                                   ToAbsl(GgufValueTypeName(v->type)),
                                                   ", expected bool"));
  }
  return *b;
}

absl::StatusOr<std::vector<std::string_view>> GgufFile::GetStringArray(std::string_view key) const {
  SWARM_ASSIGN_OR_RETURN(const GgufValue::Array* array, FindArray(*this, key));
  if (array->element_type != GgufValueType::kString) {
    return absl::InvalidArgumentError(absl::StrCat("metadata '", ToAbsl(key), "' is an array of ",
                                                   ToAbsl(GgufValueTypeName(array->element_type)),
                                                   ", expected an array of string"));
  }
  std::vector<std::string_view> out;
  out.reserve(array->elements.size());
  for (const GgufValue& e : array->elements) out.push_back(std::get<std::string_view>(e.value));
  return out;
}

absl::StatusOr<std::vector<float>> GgufFile::GetFloatArray(std::string_view key) const {
  SWARM_ASSIGN_OR_RETURN(const GgufValue::Array* array, FindArray(*this, key));
  if (!IsInteger(array->element_type) && !IsFloat(array->element_type)) {
    return absl::InvalidArgumentError(absl::StrCat("metadata '", ToAbsl(key), "' is an array of ",
                                                   ToAbsl(GgufValueTypeName(array->element_type)),
                                                   ", expected numbers"));
  }
  std::vector<float> out;
  out.reserve(array->elements.size());
  const std::string what = absl::StrCat("metadata '", ToAbsl(key), "'");
  for (const GgufValue& e : array->elements) {
    SWARM_ASSIGN_OR_RETURN(double d, ValueAsFloat(e, what));
    out.push_back(static_cast<float>(d));
  }
  return out;
}

absl::StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(std::string_view key) const {
  SWARM_ASSIGN_OR_RETURN(const GgufValue::Array* array, FindArray(*this, key));
  if (!IsInteger(array->element_type)) {
    return absl::InvalidArgumentError(absl::StrCat("metadata '", ToAbsl(key), "' is an array of ",
                                                   ToAbsl(GgufValueTypeName(array->element_type)),
                                                   ", expected integers"));
  }
  std::vector<int64_t> out;
  out.reserve(array->elements.size());
  const std::string what = absl::StrCat("metadata '", ToAbsl(key), "'");
  for (const GgufValue& e : array->elements) {
    SWARM_ASSIGN_OR_RETURN(int64_t i, ValueAsInt(e, what));
    out.push_back(i);
  }
  return out;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> GgufFile::TensorData(const GgufTensorInfo& info) const {
  if (data_offset_ + info.offset + info.size > bytes_.size()) return {};  // FromHeader
  return bytes_.subspan(data_offset_ + info.offset, info.size);
}

void GgufFile::Prefetch(const GgufTensorInfo& info) const {
  if (file_ != nullptr) file_->AdviseWillNeed(data_offset_ + info.offset, info.size);
}

}  // namespace swarm::model
