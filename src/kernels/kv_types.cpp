#include "kernels/kv_types.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"

namespace swarm::kernels {

absl::StatusOr<GgmlType> ParseKvType(std::string_view name) {
  const std::string lower = absl::AsciiStrToLower(ToAbsl(name));
  if (lower == "f32") return GgmlType::kF32;
  if (lower == "f16") return GgmlType::kF16;
  if (lower == "q8_0") return GgmlType::kQ8_0;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown KV cache type '", ToAbsl(name), "' (f32, f16, q8_0)"));
}

absl::Status ValidateKvTypes(KvTypes types, int64_t head_dim) {
  for (GgmlType t : {types.k, types.v}) {
    if (t != GgmlType::kF32 && t != GgmlType::kF16 && t != GgmlType::kQ8_0) {
      return absl::InvalidArgumentError(
          absl::StrCat("KV cache type ", ToAbsl(GgmlTypeName(t)), " is not one of f32, f16, q8_0"));
    }
    if (t == GgmlType::kQ8_0 && head_dim % kQK8_0 != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("a q8_0 KV cache needs a head dimension that is a multiple of ", kQK8_0,
                       "; this model's is ", head_dim, " (use f16 or f32)"));
    }
  }
  return absl::OkStatus();
}

size_t KvRowBytes(GgmlType type, int64_t kv_dim) {
  switch (type) {
    case GgmlType::kF16:
      return static_cast<size_t>(kv_dim) * 2;
    case GgmlType::kQ8_0:
      return static_cast<size_t>(kv_dim / kQK8_0) * sizeof(BlockQ8_0);
    default:
      return static_cast<size_t>(kv_dim) * sizeof(float);
  }
}

std::string KvTypesText(KvTypes types) {
  return absl::StrCat(ToAbsl(GgmlTypeName(types.k)), "/", ToAbsl(GgmlTypeName(types.v)));
}

}  // namespace swarm::kernels
