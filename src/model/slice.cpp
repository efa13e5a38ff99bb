#include "model/slice.h"

#include <algorithm>
#include <charconv>

#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "base/status_macros.h"
#include "model/gguf.h"
#include "model/gguf_writer.h"
#include "model/model_config.h"
#include "model/model_weights.h"

namespace swarm::model {

namespace {

constexpr size_t kCopyChunk = size_t{16} << 20;

bool ParseNonNegative(std::string_view s, int64_t& out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size() && out >= 0;
}

}  // namespace

int64_t TensorBlock(std::string_view name) {
  constexpr std::string_view kPrefix = "blk.";
  if (name.substr(0, kPrefix.size()) != kPrefix) return -1;
  name.remove_prefix(kPrefix.size());
  const size_t dot = name.find('.');
  if (dot == std::string_view::npos) return -1;
  int64_t n;
  return ParseNonNegative(name.substr(0, dot), n) ? n : -1;
}

bool IsClientTensor(std::string_view name) {
  return name == "token_embd.weight" || name == "output_norm.weight" || name == "output.weight";
}

absl::StatusOr<BlockRange> ParseBlockRange(std::string_view text) {
  const size_t colon = text.find(':');
  BlockRange r;
  if (colon == std::string_view::npos || !ParseNonNegative(text.substr(0, colon), r.first) ||
      !ParseNonNegative(text.substr(colon + 1), r.last)) {
    return absl::InvalidArgumentError(
        absl::StrCat("block range '", ToAbsl(text), "' is not of the form A:B (blocks A..B-1)"));
  }
  if (r.first >= r.last) {
    return absl::InvalidArgumentError(
        absl::StrCat("block range '", ToAbsl(text), "' is empty: A must be below B"));
  }
  return r;
}

absl::StatusOr<std::optional<BlockRange>> ReadSliceRange(const GgufFile& file) {
  const bool has_first = file.Has(kSliceFirstKey), has_last = file.Has(kSliceLastKey);
  if (!has_first && !has_last) return std::optional<BlockRange>();
  if (has_first != has_last) {
    return absl::InvalidArgumentError(absl::StrCat(
        file.path(), ": has only one of ", ToAbsl(kSliceFirstKey), " and ", ToAbsl(kSliceLastKey)));
  }
  SWARM_ASSIGN_OR_RETURN(int64_t first, file.GetInt(kSliceFirstKey));
  SWARM_ASSIGN_OR_RETURN(int64_t last, file.GetInt(kSliceLastKey));
  if (first < 0 || first >= last) {
    return absl::InvalidArgumentError(
        absl::StrCat(file.path(), ": slice range [", first, ", ", last, ") is empty"));
  }
  return std::optional<BlockRange>(BlockRange{first, last});
}

absl::StatusOr<SliceSummary> WriteSlice(const GgufFile& source, const SliceOptions& options,
                                        const std::string& out_path) {
  SWARM_ASSIGN_OR_RETURN(ModelConfig config, ReadModelConfig(source));
  const BlockRange& r = options.blocks;
  if (r.first < 0 || r.first >= r.last || r.last > config.n_layer) {
    return absl::InvalidArgumentError(absl::StrCat("blocks [", r.first, ", ", r.last,
                                                   ") are not a range inside the model's ",
                                                   config.n_layer, " blocks"));
  }
  SWARM_ASSIGN_OR_RETURN(std::optional<BlockRange> source_range, ReadSliceRange(source));
  if (source_range && (r.first < source_range->first || r.last > source_range->last)) {
    return absl::NotFoundError(absl::StrCat(source.path(), " is a slice holding blocks [",
                                            source_range->first, ", ", source_range->last,
                                            ") only; cannot slice [", r.first, ", ", r.last, ")"));
  }
  // Every requested tensor must be present and valid before anything is written.
  SWARM_RETURN_IF_ERROR(LoadBlockWeights(source, config, r.first, r.last).status());
  if (options.with_client) SWARM_RETURN_IF_ERROR(LoadClientWeights(source, config).status());

  GgufWriter writer;
  for (const auto& [key, value] : source.metadata()) {
    SWARM_RETURN_IF_ERROR(writer.SetValue(key, value));
  }
  // Normalizes general.alignment to the u32 the spec asks for (the reader accepts any integer).
  if (source.Has("general.alignment")) {
    SWARM_RETURN_IF_ERROR(writer.SetAlignment(static_cast<uint32_t>(source.alignment())));
  }
  writer.SetUint32(kSliceFirstKey, static_cast<uint32_t>(r.first));
  writer.SetUint32(kSliceLastKey, static_cast<uint32_t>(r.last));
  writer.SetString(kModelIdKey, config.model_id);

  std::vector<const GgufTensorInfo*> selected;
  for (const GgufTensorInfo& t : source.tensors()) {
    const int64_t block = TensorBlock(t.name);
    const bool take = block >= 0 ? (block >= r.first && block < r.last)
                                 : (!IsClientTensor(t.name) || options.with_client);
    if (!take) continue;
    std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
    SWARM_RETURN_IF_ERROR(writer.AddTensor(t.name, t.type, ne));
    selected.push_back(&t);
  }
  SWARM_RETURN_IF_ERROR(writer.Begin(out_path));
  SliceSummary summary;
  for (const GgufTensorInfo* t : selected) {
    std::span<const uint8_t> data = source.TensorData(*t);
    for (size_t pos = 0; pos < data.size(); pos += kCopyChunk) {
      SWARM_RETURN_IF_ERROR(
          writer.WriteTensorData(data.subspan(pos, std::min(kCopyChunk, data.size() - pos))));
    }
    summary.tensor_bytes += data.size();
  }
  SWARM_RETURN_IF_ERROR(writer.Finish());
  summary.n_tensors = selected.size();
  summary.model_id = config.model_id;
  return summary;
}

}  // namespace swarm::model
