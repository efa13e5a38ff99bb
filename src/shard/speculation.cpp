#include "shard/speculation.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "model/lookup_drafter.h"
#include "model/model_drafter.h"
#include "shard/local_pipeline.h"

namespace swarm::shard {
namespace {

// One generation's model drafter: its own KV cache on the shared draft model, whose steps take
// turns on the shared mutex.
class SharedModelDrafter final : public model::Drafter {
 public:
  SharedModelDrafter(std::unique_ptr<LocalPipeline> pipeline,
                     std::unique_ptr<model::ModelDrafter> drafter, absl::Mutex& mu)
      : pipeline_(std::move(pipeline)), drafter_(std::move(drafter)), mu_(mu) {}
  absl::Status Draft(std::span<const int32_t> tokens, int64_t max_tokens,
                     std::vector<model::DraftToken>& out) override {
    absl::MutexLock lock(&mu_);
    return drafter_->Draft(tokens, max_tokens, out);
  }
  std::string name() const override { return drafter_->name(); }

 private:
  std::unique_ptr<LocalPipeline> pipeline_;  // before drafter_, which borrows it
  std::unique_ptr<model::ModelDrafter> drafter_;
  absl::Mutex& mu_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Speculation>> Speculation::Create(
    const SpeculationFlags& flags, const model::Tokenizer& target,
    const kernels::BackendOptions& backend) {
  if (flags.draft != "none" && flags.draft != "lookup") {
    return absl::InvalidArgumentError(
        absl::StrCat("--draft must be lookup or none, got \"", flags.draft, "\""));
  }
  if (flags.draft == "lookup" && !flags.draft_model.empty()) {
    return absl::InvalidArgumentError("--draft lookup and --draft-model exclude each other");
  }
  if (flags.draft_max < 0 || flags.draft_max > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("--draft-max must be in [0, 256] (0: adaptive), got ", flags.draft_max));
  }
  if (!flags.enabled()) return std::unique_ptr<Speculation>();
  std::unique_ptr<Speculation> s(new Speculation());
  s->options_.draft_max = flags.draft_max;
  s->target_ = &target;
  if (flags.draft_model.empty()) {
    s->description_ = "lookup";
    return s;
  }
  SWARM_ASSIGN_OR_RETURN(s->draft_, LocalModel::Load(flags.draft_model, backend, true));
  // Checks the vocabulary now (a drafter made and dropped), not at the first request.
  SWARM_ASSIGN_OR_RETURN(auto probe, LocalPipeline::Create(*s->draft_->blocks, 1));
  SWARM_RETURN_IF_ERROR(model::ModelDrafter::Create(*s->draft_->head, *probe, *s->draft_->tokenizer,
                                                    target, model::SamplingParams{}, 1)
                            .status());
  s->description_ = absl::StrCat("model ", flags.draft_model);
  return s;
}

absl::StatusOr<std::unique_ptr<model::Drafter>> Speculation::NewDrafter(
    const model::SamplingParams& sampling, int64_t max_length) {
  if (draft_ == nullptr) return std::make_unique<model::LookupDrafter>();
  absl::MutexLock lock(&draft_mu_);
  SWARM_ASSIGN_OR_RETURN(auto pipeline, LocalPipeline::Create(*draft_->blocks, max_length));
  model::SamplingParams draft_sampling = sampling;
  draft_sampling.seed = sampling.seed ^ 0x9e3779b97f4a7c15ULL;  // its own draws, not the target's
  SWARM_ASSIGN_OR_RETURN(auto drafter,
                         model::ModelDrafter::Create(*draft_->head, *pipeline, *draft_->tokenizer,
                                                     *target_, draft_sampling, max_length));
  return std::make_unique<SharedModelDrafter>(std::move(pipeline), std::move(drafter), draft_mu_);
}

}  // namespace swarm::shard
