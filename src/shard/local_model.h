// Everything needed to run a whole model in-process: the mapped GGUF, its config and tokenizer, a
// backend, the client head and a block stack over every block. Owns all of them (destroyed in the
// reverse order of creation). Used by `swarm generate` without peers and by `swarm bench`.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/backend_factory.h"
#include "model/client_head.h"
#include "model/gguf.h"
#include "model/model_config.h"
#include "model/tokenizer.h"
#include "shard/block_stack.h"

namespace swarm::shard {

struct LocalModel {
  std::unique_ptr<model::GgufFile> file;
  model::ModelConfig config;
  std::unique_ptr<model::Tokenizer> tokenizer;
  std::unique_ptr<kernels::Backend> backend;
  std::unique_ptr<model::ClientHead> head;
  std::unique_ptr<BlockStack> blocks;  // null when load_blocks is false

  // Loads the client part and, if load_blocks, every block (whose caches hold kv_types).
  static absl::StatusOr<std::unique_ptr<LocalModel>> Load(
      const std::string& path, const kernels::BackendOptions& backend, bool load_blocks = true,
      kernels::KvTypes kv_types = kernels::kDefaultKvTypes);
};

}  // namespace swarm::shard
