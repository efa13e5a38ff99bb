// Checks that a model file asks for nothing the engine would silently ignore: every
// `{arch}.*` metadata key and every tensor name is either one the engine implements, one that
// changes nothing (as in llama.cpp), or refused with an error naming it. A free function; any
// thread.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace swarm::model {

class GgufFile;

// arch: general.architecture (one the engine supports); head_dim: the head size in use (for
// attention.scale); n_ctx_train: context_length (a sliding window at least this long is none).
absl::Status AuditModelFile(const GgufFile& file, const std::string& arch, int64_t head_dim,
                            int64_t n_ctx_train);

}  // namespace swarm::model
