#include "model/generator.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "base/status_macros.h"

namespace swarm::model {
namespace {
double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

absl::Status BlockPipeline::Rollback(int64_t /*position*/) {
  return absl::UnimplementedError("this pipeline cannot roll back");
}

absl::Status BlockPipeline::Submit(int64_t n_tokens, std::span<const float> hidden_in) {
  if (n_tokens <= 0 || hidden_in.size() % static_cast<size_t>(n_tokens) != 0) {
    return absl::InvalidArgumentError("a step's activations must be [n_embd, n_tokens]");
  }
  Done done{n_tokens, std::vector<float>(hidden_in.size())};
  SWARM_RETURN_IF_ERROR(Forward(n_tokens, hidden_in.data(), done.hidden.data()));
  done_.push_back(std::move(done));
  return absl::OkStatus();
}

absl::Status BlockPipeline::Collect(float* hidden_out) {
  if (done_.empty()) return absl::FailedPreconditionError("no step is in flight");
  std::copy(done_.front().hidden.begin(), done_.front().hidden.end(), hidden_out);
  done_.erase(done_.begin());
  return absl::OkStatus();
}

int64_t BlockPipeline::in_flight_tokens() const {
  int64_t n = 0;
  for (const Done& done : done_) n += done.n_tokens;
  return n;
}

absl::StatusOr<GenerationStats> Generate(std::span<const int32_t> prompt,
                                         const GenerateOptions& options, ClientHead& head,
                                         BlockPipeline& blocks, Sampler& sampler,
                                         const Tokenizer& tokenizer,
                                         const std::function<bool(int32_t)>& on_token) {
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  const int64_t n_embd = head.config().n_embd;
  GenerationStats stats;
  stats.prompt_tokens = static_cast<int64_t>(prompt.size());
  stats.finish_reason = "length";
  std::vector<int32_t> history(prompt.begin(), prompt.end());
  std::vector<float> hidden(static_cast<size_t>(n_embd) * prompt.size());  // [n_embd, T]
  std::vector<float> logits(static_cast<size_t>(head.config().n_vocab));   // [n_vocab]

  auto start = std::chrono::steady_clock::now();
  SWARM_RETURN_IF_ERROR(head.Embed(prompt, hidden.data()));
  int64_t n_tokens = static_cast<int64_t>(prompt.size());
  for (int64_t i = 0; i < options.max_new_tokens; ++i) {
    // While the peers compute, the head's spinning threads would only take CPU from them.
    if (blocks.waits_on_peers()) head.ParkThreads();
    SWARM_RETURN_IF_ERROR(blocks.Forward(n_tokens, hidden.data(), hidden.data()));
    if (i == 0 && options.on_prompt_hidden) {
      SWARM_RETURN_IF_ERROR(options.on_prompt_hidden(hidden.data(), n_tokens));
    }
    SWARM_RETURN_IF_ERROR(head.Logits(hidden.data() + (n_tokens - 1) * n_embd, logits.data()));
    if (options.on_logits) options.on_logits(logits);
    const int32_t token = sampler.Sample(logits, history);
    if (i == 0) {
      stats.prompt_seconds = SecondsSince(start);
      start = std::chrono::steady_clock::now();
    }
    if (options.stop_at_end_of_generation && tokenizer.IsEndOfGeneration(token)) {
      stats.finish_reason = "stop";
      break;
    }
    ++stats.generated_tokens;
    history.push_back(token);
    if (!on_token(token)) {
      stats.finish_reason = "cancelled";
      break;
    }
    if (i + 1 == options.max_new_tokens) break;
    n_tokens = 1;
    SWARM_RETURN_IF_ERROR(head.Embed(std::span<const int32_t>(&token, 1), hidden.data()));
  }
  if (stats.generated_tokens > 0) stats.generation_seconds = SecondsSince(start);
  return stats;
}

}  // namespace swarm::model
