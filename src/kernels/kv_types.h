// The element types a KV cache can hold (f32, f16, q8_0 in llama.cpp's block layout) and what they
// imply for a cache row's size and for the attention arithmetic. Value types and pure functions,
// callable from any thread.
//
// Where the rounding happens follows llama.cpp's CPU attention WITHOUT flash attention (`-fa off`),
// K and V caches f16 by default; ggml's mul_mat converts its second operand to the first's
// vec_dot_type. Every backend (reference, CPU generic/AVX2/AVX-512, CUDA) rounds at these points:
//   - K and V are rounded to the cache type when stored (f16: round to nearest even; q8_0: blocks
//     of 32 with an f16 scale, as quantize_row_q8_0).
//   - Q is rounded to K's dot type before Q·K: f16 for an f16 cache, q8_0 for a q8_0 cache.
//   - The softmax is ggml's soft_max over the whole row of float scores: exp(s - max), their sum
//     in double, probabilities = e * (float)(1 / sum); rounded to f16 before P·V when V is f16
//     (mul_mat(V, P) converts P to f16). The optimized kernels do this arithmetic in float as
//     ggml does (the CUDA kernels also sum in float); the reference in double, rounding at the
//     same points.
//   - A q8_0 V cache: llama.cpp accepts it only with flash attention (its non-flash V cache is
//     transposed, and a q8_0 block would span positions), whose CPU kernel dequantizes V to float
//     and keeps the probabilities in float; so does Swarm: no rounding of P for a q8_0 V.
// llama.cpp's default run: since flash_attn became a tri-state defaulting to "auto" (2025), auto
// resolves to ON for the CPU backend (ggml-org/llama.cpp#27086 measures `-fa auto` against
// `-fa off` on CPUs). Its CPU flash attention (ggml-cpu ops.cpp) rounds differently per path:
// the row-by-row path converts Q to K's vec_dot type and, for an f16 V cache, accumulates
// exp(s - max) · V in f16 (VKQ16: rounded at every position, rescaled in f16) with the float sum
// divided at the end; a tiled path for prompt batches (K and V both f32 or both f16) keeps Q in
// f32, converts K to f32 and accumulates in f32; a split path for single-token decode over 512+
// cache cells (same types) merges per-thread partial states in f32. Swarm implements none of these
// (no --flash-attn): its rounding is llama.cpp's `-fa off` run (the f16 accumulator loses
// precision with the context: each of n terms of weight ~1/n is rounded to an f16 step). Greedy
// text equal to llama.cpp's therefore means `llama-cli -fa off` where the two modes differ.
// The CUDA kernels reach the same probabilities in two passes over the cache: the row's maximum and
// sum first (per split and merged, in float), then e * (1 / sum) rounded as above, then P·V.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/ggml_type.h"

namespace swarm::kernels {

struct KvTypes {
  GgmlType k = GgmlType::kF32;
  GgmlType v = GgmlType::kF32;
  friend bool operator==(const KvTypes&, const KvTypes&) = default;
};

// llama.cpp's default: f16 keys and values.
inline constexpr KvTypes kDefaultKvTypes{GgmlType::kF16, GgmlType::kF16};

// Parses a --cache-type-k/-v value: "f32", "f16" or "q8_0" (case-insensitive).
absl::StatusOr<GgmlType> ParseKvType(std::string_view name);

// OK when keys and values of these types can hold heads of head_dim values: each type is f32, f16
// or q8_0, and q8_0 needs head_dim a multiple of 32 (a block never spans two heads).
absl::Status ValidateKvTypes(KvTypes types, int64_t head_dim);

// Bytes of one cache row (one position, kv_dim values) of a valid KV type.
size_t KvRowBytes(GgmlType type, int64_t kv_dim);

// "f16/f16"-style text for logs and reports.
std::string KvTypesText(KvTypes types);

}  // namespace swarm::kernels
