// Activation codecs: how hidden states ([n_embd, n_tokens] f32) travel between peers. f32, f16,
// bf16 or blockwise absmax int8, each optionally followed by one zstd frame. Pure functions; a
// CodecWorkspace caches zstd contexts and belongs to one thread.
//
// Non-finite values: f32 passes NaN/Inf through bit for bit; f16/bf16 keep NaN and Inf (f16 also
// turns |x| > 65504 into Inf); int8 turns a whole block that holds any NaN/Inf into NaN. The codecs
// never reject non-finite data: the caller validates activations where it uses them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace swarm::transport {

enum class Dtype : uint8_t { kF32 = 0, kF16 = 1, kBf16 = 2, kInt8Block = 3 };

inline constexpr uint32_t kDefaultInt8BlockSize = 64;
inline constexpr uint32_t kMinInt8BlockSize = 8;
inline constexpr uint32_t kMaxInt8BlockSize = 4096;
inline constexpr int kDefaultZstdLevel = 1;

struct Codec {
  Dtype dtype = Dtype::kF32;
  bool zstd = false;
  // Sender-side only (not on the wire): zstd's level, 1 = fast.
  int zstd_level = kDefaultZstdLevel;
  // kInt8Block only: values per absmax block, and whether scales are stored as f16 (else f32).
  uint32_t block_size = kDefaultInt8BlockSize;
  bool scale_f16 = false;

  // Equality of what travels on the wire (ignores zstd_level).
  friend bool operator==(const Codec& a, const Codec& b) {
    if (a.dtype != b.dtype || a.zstd != b.zstd) return false;
    if (a.dtype != Dtype::kInt8Block) return true;
    return a.block_size == b.block_size && a.scale_f16 == b.scale_f16;
  }
};

// InvalidArgument when the codec's fields are out of range (unknown dtype, bad block size).
absl::Status ValidateCodec(const Codec& codec);

// "f32", "f16", "bf16", "int8" (f32 scales), "int8h" (f16 scales); int8 may add "/BLOCK";
// any may add "+zstd" or "+zstd:LEVEL". Examples: "f16+zstd", "int8/32", "int8h+zstd:3".
absl::StatusOr<Codec> ParseCodec(std::string_view name);
std::string CodecName(const Codec& codec);

// Bytes of n values in the codec's dtype before zstd (exact), or InvalidArgument on overflow.
absl::StatusOr<uint64_t> RawEncodedSize(const Codec& codec, uint64_t n);
// Upper bound of the encoded size of n values, zstd included.
absl::StatusOr<uint64_t> MaxEncodedSize(const Codec& codec, uint64_t n);

// Cached zstd contexts: saves an allocation per call on the per-token decode path.
class CodecWorkspace {
 public:
  CodecWorkspace();
  ~CodecWorkspace();
  CodecWorkspace(const CodecWorkspace&) = delete;
  CodecWorkspace& operator=(const CodecWorkspace&) = delete;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// x: [n] f32 values -> the codec's bytes.
absl::StatusOr<std::vector<uint8_t>> EncodeTensor(const float* x, size_t n, const Codec& codec,
                                                  CodecWorkspace* workspace = nullptr);

// The codec's bytes -> out: [out.size()] values. DataLoss when the bytes do not hold exactly
// out.size() values: wrong size, a zstd frame that is corrupt (frames carry a checksum), does not
// declare its content size, or declares another. A frame is checked against the expected size
// before anything is allocated or inflated, and zstd's output is bounded by that size, so a
// decompression bomb costs nothing.
absl::Status DecodeTensorInto(std::span<const uint8_t> bytes, std::span<float> out,
                              const Codec& codec, CodecWorkspace* workspace = nullptr);
absl::StatusOr<std::vector<float>> DecodeTensor(std::span<const uint8_t> bytes, size_t expected_n,
                                                const Codec& codec,
                                                CodecWorkspace* workspace = nullptr);

struct CodecError {
  double nmse = 0;           // sum((y - x)^2) / sum(x^2); the plain sum when x is all zeros
  double max_abs_error = 0;  // max |y - x|
  double bytes_per_value = 0;
  uint64_t encoded_bytes = 0;
};

// Encodes and decodes x: [n] and measures the error; x must be finite.
absl::StatusOr<CodecError> MeasureCodec(const float* x, size_t n, const Codec& codec);
// The same measure between a reference and its reconstruction.
CodecError CompareTensors(std::span<const float> reference, std::span<const float> actual);

}  // namespace swarm::transport
