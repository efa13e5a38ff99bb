// Tensor element types with ggml's numeric ids and block layouts (bit-compatible with llama.cpp).
// Value types only; the arithmetic on them lives in quant_reference.h and the backends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace swarm::kernels {

// Numeric values are GGUF's / ggml's type ids.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ8_0 = 8,
  kQ2_K = 10,  // blocks in block_lowbit.h
  kQ3_K = 11,
  kQ4_K = 12,
  kQ6_K = 14,
  kQ8_K = 15,  // activations only (K-quant dot products)
  kIQ4_XS = 23,
  kBF16 = 30,
};

inline constexpr int kQK8_0 = 32;
inline constexpr int kQK4_0 = 32;
inline constexpr int kQK_K = 256;
inline constexpr int kKScaleSize = 12;

// Fields named as in ggml-common.h. `d` values are fp16 bit patterns unless noted.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK8_0];
};
static_assert(sizeof(BlockQ8_0) == 34);

struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK4_0 / 2];  // low nibbles: elements 0..15, high nibbles: 16..31
};
static_assert(sizeof(BlockQ4_0) == 18);

struct BlockQ4_K {
  uint16_t d;                   // super-block scale for the 6-bit scales
  uint16_t dmin;                // super-block scale for the 6-bit mins
  uint8_t scales[kKScaleSize];  // 8 scales and 8 mins, 6 bits each
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ4_K) == 144);

struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];      // low 4 bits
  uint8_t qh[kQK_K / 4];      // high 2 bits
  int8_t scales[kQK_K / 16];  // 8-bit scales
  uint16_t d;                 // super-block scale
};
static_assert(sizeof(BlockQ6_K) == 210);

struct BlockQ8_K {
  float d;  // a float, not fp16
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];  // sums of groups of 16
};
static_assert(sizeof(BlockQ8_K) == 292);

struct TypeTraits {
  std::string_view name;
  int64_t block_size;  // elements per block
  size_t type_size;    // bytes per block
};

// Traits of a supported type id; InvalidArgument for ids this project does not handle.
absl::StatusOr<TypeTraits> GetTypeTraits(uint32_t type_id);
inline absl::StatusOr<TypeTraits> GetTypeTraits(GgmlType type) {
  return GetTypeTraits(static_cast<uint32_t>(type));
}

// Bytes of a row of `n` elements; InvalidArgument if n is not a multiple of the block size or
// overflows.
absl::StatusOr<size_t> RowBytes(GgmlType type, int64_t n);

// Parses a type name as GgmlTypeName spells it (case-insensitive): "f32", "q4_k", "iq4_xs", ...
absl::StatusOr<GgmlType> ParseGgmlType(std::string_view name);
std::string_view GgmlTypeName(GgmlType type);

}  // namespace swarm::kernels
