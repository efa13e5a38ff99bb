// The mixture-of-experts part of a model's configuration: how many experts a block has, how many
// each token uses and their width, read from GGUF metadata (`<arch>.expert_count`, ...). Keys that
// ask for routing this engine does not implement (shared experts, sigmoid gating, weight scaling)
// are refused by name. Free functions on value types.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "model/model_config.h"

namespace swarm::model {

class GgufFile;

// Fills config.n_expert, n_expert_used and n_ff_exp from the keys under `prefix` ("llama."),
// leaving them 0 for a dense model. config.n_ff must already be read.
absl::Status ReadMoeConfig(const GgufFile& file, const std::string& prefix, ModelConfig& config);

}  // namespace swarm::model
