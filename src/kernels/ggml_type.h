// Tensor element types with ggml's numeric ids and block layouts (bit-compatible with llama.cpp).
// Value types only; the arithmetic on them lives in quant_reference.h and the backends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace swarm::kernels {

// Numeric values are GGUF's / ggml's type ids.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,   // activations only (Q4_1 dot products)
  kQ2_K = 10,  // blocks in block_lowbit.h
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,  // activations only (K-quant dot products)
  kIQ4_NL = 20,
  kIQ4_XS = 23,
  kBF16 = 30,
};

inline constexpr int kQK8_0 = 32;
inline constexpr int kQK4_0 = 32;
inline constexpr int kQK4_1 = 32;
inline constexpr int kQK5_0 = 32;
inline constexpr int kQK5_1 = 32;
inline constexpr int kQK4_NL = 32;
inline constexpr int kQK8_1 = 32;
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

struct BlockQ4_1 {
  uint16_t d;  // x = d * q + m, q in [0, 15]
  uint16_t m;
  uint8_t qs[kQK4_1 / 2];  // low nibbles: elements 0..15, high nibbles: 16..31
};
static_assert(sizeof(BlockQ4_1) == 20);

struct BlockQ5_0 {
  uint16_t d;              // x = d * (q - 16), q in [0, 31]
  uint8_t qh[4];           // bit e (little-endian uint32): the fifth bit of element e
  uint8_t qs[kQK5_0 / 2];  // low 4 bits as Q4_0's nibbles
};
static_assert(sizeof(BlockQ5_0) == 22);

struct BlockQ5_1 {
  uint16_t d;  // x = d * q + m, q in [0, 31]
  uint16_t m;
  uint8_t qh[4];           // as Q5_0's
  uint8_t qs[kQK5_1 / 2];  // as Q5_0's
};
static_assert(sizeof(BlockQ5_1) == 24);

struct BlockIQ4_NL {
  uint16_t d;               // x = d * kKValuesIq4Nl[q] (block_lowbit.h), q in [0, 15]
  uint8_t qs[kQK4_NL / 2];  // low nibbles: elements 0..15, high nibbles: 16..31
};
static_assert(sizeof(BlockIQ4_NL) == 18);

struct BlockQ8_1 {
  uint16_t d;
  uint16_t s;  // d * sum(qs)
  int8_t qs[kQK8_1];
};
static_assert(sizeof(BlockQ8_1) == 36);

struct BlockQ4_K {
  uint16_t d;                   // super-block scale for the 6-bit scales
  uint16_t dmin;                // super-block scale for the 6-bit mins
  uint8_t scales[kKScaleSize];  // 8 scales and 8 mins, 6 bits each
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ4_K) == 144);

struct BlockQ5_K {
  uint16_t d;  // as Q4_K
  uint16_t dmin;
  uint8_t scales[kKScaleSize];  // as Q4_K
  uint8_t qh[kQK_K / 8];        // bit j of qh[l]: the fifth bit of element 32 * j + l
  uint8_t qs[kQK_K / 2];        // low 4 bits, as Q4_K's qs
};
static_assert(sizeof(BlockQ5_K) == 176);

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

// Traits of a supported type id; InvalidArgument naming the type (GgmlTypeIdName) for ids this
// project does not handle.
absl::StatusOr<TypeTraits> GetTypeTraits(uint32_t type_id);
inline absl::StatusOr<TypeTraits> GetTypeTraits(GgmlType type) {
  return GetTypeTraits(static_cast<uint32_t>(type));
}

// Bytes of a row of `n` elements; InvalidArgument if n is not a multiple of the block size or
// overflows.
absl::StatusOr<size_t> RowBytes(GgmlType type, int64_t n);

// The types a weight matrix may have (all supported types but the activation-only Q8_1 and Q8_K),
// in the order error messages list them.
inline constexpr GgmlType kWeightTypes[] = {
    GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16, GgmlType::kQ8_0,   GgmlType::kQ4_0,
    GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kQ2_K,   GgmlType::kQ3_K,
    GgmlType::kQ4_K, GgmlType::kQ5_K, GgmlType::kQ6_K, GgmlType::kIQ4_NL, GgmlType::kIQ4_XS};
bool IsWeightType(GgmlType type);
// "f32, f16, bf16, ..., iq4_xs": kWeightTypes' names, for error messages.
std::string WeightTypeNames();

// Parses a weight type's name as GgmlTypeName spells it (case-insensitive): "f32", "q5_k",
// "iq4_xs", ...
absl::StatusOr<GgmlType> ParseGgmlType(std::string_view name);
std::string_view GgmlTypeName(GgmlType type);
// ggml's name of any type id, supported or not, in upper case as model files are named ("Q5_1",
// "IQ2_XXS"); "type id N" for ids ggml does not define. For error messages. Inline, so that the
// CUDA library (which links no other part of this module) can name types too.
inline std::string GgmlTypeIdName(uint32_t type_id) {
  // ggml's type names by id (ggml.h's enum ggml_type); empty for retired ids.
  constexpr std::string_view kNames[] = {
      "F32",     "F16",    "Q4_0",    "Q4_1",  "",       "",      "Q5_0",  "Q5_1",
      "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",  "Q4_K",   "Q5_K",  "Q6_K",  "Q8_K",
      "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
      "I8",      "I16",    "I32",     "I64",   "F64",    "IQ1_M", "BF16",  "",
      "",        "",       "TQ1_0",   "TQ2_0", "",       "",      "",      "MXFP4"};
  if (type_id < std::size(kNames) && !kNames[type_id].empty()) return std::string(kNames[type_id]);
  return "type id " + std::to_string(type_id);
}

}  // namespace swarm::kernels
