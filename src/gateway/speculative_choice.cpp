#include "gateway/speculative_choice.h"

#include <cstdio>

#include "base/status_macros.h"
#include "model/speculative_generator.h"

namespace swarm::gateway {

std::string SpeculationBlockerFor(const GenerationRequest& request, model::BlockPipeline& blocks) {
  if (!request.constraints.empty()) return "constrained decoding";
  // Rolling back to 0 before the first step changes nothing where it is possible at all.
  if (!blocks.Rollback(0).ok()) return "blocks that cannot roll back";
  return "";
}

void NoteSpeculationOff(const GenerationRequest& request, const std::string& reason) {
  std::fprintf(stderr,
               "speculative: request %s decoded plainly (speculative decoding is not exact with "
               "%s)\n",
               request.request_id.empty() ? "-" : request.request_id.c_str(), reason.c_str());
}

absl::StatusOr<model::GenerationStats> GenerateChoiceSpeculatively(
    shard::Speculation& speculation, const GenerationRequest& request,
    const model::GenerateOptions& options, model::ClientHead& head, model::BlockPipeline& blocks,
    model::Sampler& sampler, const model::Tokenizer& tokenizer,
    const std::function<bool(int32_t)>& on_token) {
  const int64_t max_length = static_cast<int64_t>(request.prompt.size()) + request.max_tokens;
  SWARM_ASSIGN_OR_RETURN(auto drafter, speculation.NewDrafter(sampler.params(), max_length));
  model::SpeculativeStats stats;
  int64_t in_flight = 0;  // this generation's share of the gauge
  auto on_in_flight = [&](int64_t now) {
    if (request.metrics != nullptr && now != in_flight) {
      request.metrics->AddChunksInFlight(now - in_flight);
    }
    in_flight = now;
  };
  auto result =
      model::GenerateSpeculative(request.prompt, options, speculation.options(), head, blocks,
                                 sampler, tokenizer, *drafter, on_token, &stats, on_in_flight);
  on_in_flight(0);
  if (request.metrics != nullptr) {
    request.metrics->AddSpeculation(stats.drafted, stats.accepted, stats.traversals, stats.tokens);
  }
  return result;
}

}  // namespace swarm::gateway
