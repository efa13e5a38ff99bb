#include "shard/local_pipeline.h"

#include "absl/status/status.h"
#include "base/status_macros.h"
#include "shard/block_stack.h"

namespace swarm::shard {

namespace {

absl::Status CheckWholeModel(const ServingStack& stack) {
  if (stack.first_block() != 0 || stack.last_block() != stack.config().n_layer) {
    return absl::InvalidArgumentError("a local pipeline needs every block of the model");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalPipeline>> LocalPipeline::Create(ServingStack& stack,
                                                                     int64_t max_length) {
  SWARM_RETURN_IF_ERROR(CheckWholeModel(stack));
  SWARM_ASSIGN_OR_RETURN(auto cache, stack.NewCache(max_length));
  return std::unique_ptr<LocalPipeline>(new LocalPipeline(stack, std::move(cache)));
}

absl::StatusOr<std::unique_ptr<LocalPipeline>> LocalPipeline::Create(BlockStack& stack,
                                                                     int64_t max_length,
                                                                     kernels::KvTypes types) {
  SWARM_RETURN_IF_ERROR(CheckWholeModel(stack));
  SWARM_ASSIGN_OR_RETURN(auto cache, stack.NewCache(max_length, types));
  return std::unique_ptr<LocalPipeline>(new LocalPipeline(stack, std::move(cache)));
}

absl::Status LocalPipeline::Forward(int64_t n_tokens, const float* hidden_in, float* hidden_out) {
  const SequenceStep step{cache_.get(), n_tokens};
  return stack_.Forward({&step, 1}, hidden_in, hidden_out);
}

absl::Status LocalPipeline::Rollback(int64_t position) {
  if (position < 0 || position > cache_->length()) {
    return absl::OutOfRangeError("a rollback must keep between 0 and the computed positions");
  }
  DropCollected();
  return cache_->Truncate(position);
}

}  // namespace swarm::shard
