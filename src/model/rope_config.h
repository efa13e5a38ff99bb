// Reads a model's rotary position embedding from GGUF: base, pairing style, Llama 3
// rope_freqs.weight factors, and rope.scaling.* (none, linear, YaRN) as llama.cpp reads them.
// A free function over a GgufFile; any thread.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/rope_params.h"

namespace swarm::model {

class GgufFile;

// arch: general.architecture; head_dim: the rotated head size; n_ctx_train: context_length
// (YaRN's original context when rope.scaling.original_context_length is absent).
absl::StatusOr<kernels::RopeParams> ReadRopeParams(const GgufFile& file, const std::string& arch,
                                                   int64_t head_dim, int64_t n_ctx_train);

}  // namespace swarm::model
