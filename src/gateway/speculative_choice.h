// One choice of a request decoded speculatively (shard::Speculation's drafter, the target's blocks
// verifying), for the gateway's engines; or why it must be decoded plainly. Reports the figures
// to the request's MetricsSink. Runs on the request's thread.
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "gateway/completion_engine.h"
#include "model/client_head.h"
#include "model/generator.h"
#include "model/sampler.h"
#include "shard/speculation.h"

namespace swarm::gateway {

// "" when a choice of `request` can be decoded speculatively over `blocks` (fresh: no step run
// yet) with exactly the target's output; else the reason (constrained decoding, blocks that
// cannot roll back). The engine then decodes plainly and says so on stderr (NoteSpeculationOff).
std::string SpeculationBlockerFor(const GenerationRequest& request, model::BlockPipeline& blocks);
void NoteSpeculationOff(const GenerationRequest& request, const std::string& reason);

// model::GenerateSpeculative for one choice over `blocks` (which must roll back), with a fresh
// drafter of `speculation` for request.prompt.size() + request.max_tokens positions.
absl::StatusOr<model::GenerationStats> GenerateChoiceSpeculatively(
    shard::Speculation& speculation, const GenerationRequest& request,
    const model::GenerateOptions& options, model::ClientHead& head, model::BlockPipeline& blocks,
    model::Sampler& sampler, const model::Tokenizer& tokenizer,
    const std::function<bool(int32_t)>& on_token);

}  // namespace swarm::gateway
