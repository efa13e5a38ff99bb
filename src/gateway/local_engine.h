// The in-process engine behind the CompletionEngine interface: every block runs in this process
// (shard::LocalModel), which is what `swarm api` serves without peers and what the gateway's tests
// run against. A request's choices (n) run as one batch through the block stack; requests take
// turns on a mutex. Owns the model; thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "gateway/completion_engine.h"
#include "kernels/backend_factory.h"
#include "shard/local_model.h"
#include "shard/speculation.h"

namespace swarm::gateway {

struct LocalEngineOptions {
  kernels::BackendOptions backend;
  int32_t n_ctx = 0;     // context length; 0: the model's training context
  std::string model_id;  // the id clients use; "" derives one from the GGUF (general.name or file)
  kernels::KvTypes kv_types = kernels::kDefaultKvTypes;  // element types of the KV caches
  // Speculative decoding for the requests it can serve exactly (one choice, unconstrained); null:
  // plain. Borrowed, outlives the engine.
  shard::Speculation* speculation = nullptr;
};

class LocalEngine final : public CompletionEngine {
 public:
  static absl::StatusOr<std::unique_ptr<LocalEngine>> Load(const std::string& gguf_path,
                                                           const LocalEngineOptions& options);

  const ModelInfo& info() const override { return info_; }
  const model::Tokenizer& tokenizer() const override { return *model_->tokenizer; }
  absl::Status Generate(const GenerationRequest& request, const TokenCallback& on_token) override;
  absl::StatusOr<std::vector<model::TokenLogprob>> Score(const ScoreRequest& request) override;
  SwarmView Describe() const override;

 private:
  LocalEngine(std::unique_ptr<shard::LocalModel> model, ModelInfo info,
              shard::Speculation* speculation);
  // One choice, speculatively; nullopt when it must run plainly. Under run_mu_.
  std::optional<absl::Status> GenerateSpeculatively(const GenerationRequest& request,
                                                    const TokenCallback& on_token);

  std::unique_ptr<shard::LocalModel> model_;
  const ModelInfo info_;
  shard::Speculation* const speculation_;
  absl::Mutex run_mu_;  // one generation at a time
  mutable absl::Mutex stats_mu_;
  double steps_per_second_ ABSL_GUARDED_BY(stats_mu_) = 0;  // moving average of decode speed
  int64_t tokens_in_use_ ABSL_GUARDED_BY(stats_mu_) = 0;
};

}  // namespace swarm::gateway
