#include "shard/local_model.h"

#include "base/status_macros.h"
#include "model/model_weights.h"

namespace swarm::shard {

absl::StatusOr<std::unique_ptr<LocalModel>> LocalModel::Load(
    const std::string& path, const kernels::BackendOptions& backend_options, bool load_blocks,
    kernels::KvTypes kv_types) {
  auto m = std::make_unique<LocalModel>();
  SWARM_ASSIGN_OR_RETURN(m->file, model::GgufFile::Open(path));
  SWARM_ASSIGN_OR_RETURN(m->config, model::ReadModelConfig(*m->file));
  SWARM_ASSIGN_OR_RETURN(m->tokenizer, model::Tokenizer::FromGguf(*m->file));
  SWARM_ASSIGN_OR_RETURN(m->backend, kernels::MakeBackend(backend_options));
  SWARM_ASSIGN_OR_RETURN(auto client_weights, model::LoadClientWeights(*m->file, m->config));
  SWARM_ASSIGN_OR_RETURN(m->head,
                         model::ClientHead::Create(*m->backend, m->config, client_weights));
  if (load_blocks) {
    SWARM_ASSIGN_OR_RETURN(auto blocks,
                           model::LoadBlockWeights(*m->file, m->config, 0, m->config.n_layer));
    SWARM_ASSIGN_OR_RETURN(m->blocks, BlockStack::Create(*m->backend, m->config, blocks, kv_types));
  }
  return m;
}

}  // namespace swarm::shard
