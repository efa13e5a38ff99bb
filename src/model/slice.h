// Model slices: a GGUF holding only the tensors of blocks [first, last) (names unchanged, blk.N.*),
// optionally the client tensors, every metadata key of the source, plus swarm.block_first,
// swarm.block_last (u32; the range is half-open, as --blocks A:B) and swarm.model_id (the full
// model's id, so peers serving slices agree on it). Free functions; no shared state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace swarm::model {

class GgufFile;

inline constexpr std::string_view kSliceFirstKey = "swarm.block_first";
inline constexpr std::string_view kSliceLastKey = "swarm.block_last";
inline constexpr std::string_view kModelIdKey = "swarm.model_id";

// Blocks [first, last).
struct BlockRange {
  int64_t first = 0;
  int64_t last = 0;
  int64_t size() const { return last - first; }
  bool operator==(const BlockRange&) const = default;
};

// The block index of a tensor named blk.N.*, or -1 for any other tensor.
int64_t TensorBlock(std::string_view name);
// token_embd, output_norm and output: what a client holds.
bool IsClientTensor(std::string_view name);

// Parses "A:B" (A < B, both non-negative decimal integers) into [A, B).
absl::StatusOr<BlockRange> ParseBlockRange(std::string_view text);

// The blocks a slice holds, or nullopt for a file without swarm.block_* keys (a full model).
absl::StatusOr<std::optional<BlockRange>> ReadSliceRange(const GgufFile& file);

struct SliceOptions {
  BlockRange blocks;
  bool with_client = false;  // also copy token_embd, output_norm and output
};

struct SliceSummary {
  size_t n_tensors = 0;
  uint64_t tensor_bytes = 0;
  std::string model_id;
};

// Writes the slice to `out_path` (streamed from the source mapping; the source may itself be a
// slice that holds the requested blocks). Tensors that belong to no block and are not client
// tensors (e.g. rope_freqs.weight) are always copied.
absl::StatusOr<SliceSummary> WriteSlice(const GgufFile& source, const SliceOptions& options,
                                        const std::string& out_path);

}  // namespace swarm::model
