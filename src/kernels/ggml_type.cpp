#include "kernels/ggml_type.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "base/checked_math.h"
#include "kernels/block_lowbit.h"

namespace swarm::kernels {

absl::StatusOr<TypeTraits> GetTypeTraits(uint32_t type_id) {
  switch (static_cast<GgmlType>(type_id)) {
    case GgmlType::kF32:
      return TypeTraits{"f32", 1, 4};
    case GgmlType::kF16:
      return TypeTraits{"f16", 1, 2};
    case GgmlType::kBF16:
      return TypeTraits{"bf16", 1, 2};
    case GgmlType::kQ4_0:
      return TypeTraits{"q4_0", kQK4_0, sizeof(BlockQ4_0)};
    case GgmlType::kQ4_1:
      return TypeTraits{"q4_1", kQK4_1, sizeof(BlockQ4_1)};
    case GgmlType::kQ5_0:
      return TypeTraits{"q5_0", kQK5_0, sizeof(BlockQ5_0)};
    case GgmlType::kQ5_1:
      return TypeTraits{"q5_1", kQK5_1, sizeof(BlockQ5_1)};
    case GgmlType::kIQ4_NL:
      return TypeTraits{"iq4_nl", kQK4_NL, sizeof(BlockIQ4_NL)};
    case GgmlType::kQ8_0:
      return TypeTraits{"q8_0", kQK8_0, sizeof(BlockQ8_0)};
    case GgmlType::kQ8_1:
      return TypeTraits{"q8_1", kQK8_1, sizeof(BlockQ8_1)};
    case GgmlType::kQ5_K:
      return TypeTraits{"q5_K", kQK_K, sizeof(BlockQ5_K)};
    case GgmlType::kQ4_K:
      return TypeTraits{"q4_K", kQK_K, sizeof(BlockQ4_K)};
    case GgmlType::kQ6_K:
      return TypeTraits{"q6_K", kQK_K, sizeof(BlockQ6_K)};
    case GgmlType::kQ8_K:
      return TypeTraits{"q8_K", kQK_K, sizeof(BlockQ8_K)};
    case GgmlType::kQ2_K:
      return TypeTraits{"q2_K", kQK_K, sizeof(BlockQ2_K)};
    case GgmlType::kQ3_K:
      return TypeTraits{"q3_K", kQK_K, sizeof(BlockQ3_K)};
    case GgmlType::kIQ4_XS:
      return TypeTraits{"iq4_xs", kQK_K, sizeof(BlockIQ4_XS)};
  }
  const std::string name = GgmlTypeIdName(type_id);  // "Q5_1", or "type id N" if ggml has none
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported tensor ", absl::StartsWith(name, "type id") ? "" : "type ", name));
}

absl::StatusOr<size_t> RowBytes(GgmlType type, int64_t n) {
  auto traits = GetTypeTraits(type);
  if (!traits.ok()) return traits.status();
  if (n < 0 || n % traits->block_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("row of ", n, " elements is not a multiple of ",
                                                   ToAbsl(traits->name), "'s block size ",
                                                   traits->block_size));
  }
  auto bytes = CheckedMul(static_cast<uint64_t>(n / traits->block_size), traits->type_size);
  if (!bytes) return absl::InvalidArgumentError("row size overflows");
  return static_cast<size_t>(*bytes);
}

bool IsWeightType(GgmlType type) {
  for (GgmlType t : kWeightTypes) {
    if (t == type) return true;
  }
  return false;
}

std::string WeightTypeNames() {
  std::string names;
  for (GgmlType t : kWeightTypes)
    absl::StrAppend(&names, names.empty() ? "" : ", ", ToAbsl(GgmlTypeName(t)));
  return names;
}

absl::StatusOr<GgmlType> ParseGgmlType(std::string_view name) {
  const std::string lower = absl::AsciiStrToLower(ToAbsl(name));
  for (GgmlType t : kWeightTypes) {
    if (absl::AsciiStrToLower(ToAbsl(GgmlTypeName(t))) == lower) return t;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown weight type '", ToAbsl(name), "' (", WeightTypeNames(), ")"));
}

std::string_view GgmlTypeName(GgmlType type) {
  auto traits = GetTypeTraits(type);
  return traits.ok() ? traits->name : std::string_view("unknown");
}

}  // namespace swarm::kernels
