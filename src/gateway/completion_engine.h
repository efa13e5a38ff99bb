// The gateway's view of text generation: a CompletionEngine turns prompt tokens into a stream of
// sampled tokens and describes the swarm behind it. The swarm client (router) and the in-process
// engine (shard::LocalModel) are both adapted to it, so the HTTP layer never knows which one runs.
// An engine is owned by main() and outlives the server; every method may be called from many
// request threads at once.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/metrics_sink.h"
#include "model/sampler.h"
#include "model/scoring.h"
#include "model/token_constraint.h"
#include "model/tokenizer.h"

namespace swarm::gateway {

// What the engine serves. Immutable for the engine's lifetime.
struct ModelInfo {
  std::string id;             // the id clients put in "model" (e.g. the GGUF's general.name)
  std::string name;           // human-readable name, may equal id
  int32_t n_blocks = 0;       // transformer blocks
  int32_t n_ctx = 0;          // context length: prompt + completion tokens must fit
  std::string chat_template;  // tokenizer.chat_template from the GGUF, "" when absent
};

struct GenerationRequest {
  std::vector<int32_t> prompt;  // complete prompt, BOS included when the model wants one
  int32_t max_tokens = 16;      // generate at most this many tokens, per choice
  model::SamplingParams sampling;
  // Choices: n sequences after the same prompt, stepped together as one batch (in-process) or
  // as concurrent sessions that the peers batch. Choice i samples with seed sampling.seed + i.
  int32_t n = 1;
  // Empty, or one per choice: what choice i may generate (constrained decoding). Borrowed; valid
  // during Generate.
  std::vector<model::TokenConstraint*> constraints;
  std::string request_id;  // for logs and the dashboard
  // Where to report peer steps, failovers, codec bytes. Not owned, may be null; valid during
  // Generate only.
  MetricsSink* metrics = nullptr;
  // True once nobody wants the result any more (client gone, server stopping). Cheap and
  // thread-safe; may be empty. An engine that waits without producing tokens (for a turn, a
  // route, a failover) should check it between waits and then return Cancelled; between tokens,
  // on_token returning false says the same.
  std::function<bool()> is_cancelled;
  // Log-probabilities, the model's own (log-softmax of the raw logits, before penalties,
  // logit_bias, constraints and any other sampling transform). With n > 1 each choice's events
  // carry its own; the prompt's are computed once and handed over once. logprobs >= 0: every
  // reported token comes with its log-probability and this many most likely alternatives
  // (GenerationEvent::logprobs). prompt_logprobs: the prompt's tokens too, from the prompt's own
  // forward step, handed to on_prompt_logprobs once before the first token (the prompt's first
  // token has none: prompt.size() - 1 entries, with `logprobs` alternatives each).
  int32_t logprobs = -1;
  bool prompt_logprobs = false;
  std::function<void(std::vector<model::TokenLogprob>)> on_prompt_logprobs;
};

// Scoring without generating: the log-probability of every token of a sequence given those
// before it (model::ScoreSequence), the sequence run through the blocks in batched steps.
struct ScoreRequest {
  std::vector<int32_t> tokens;  // the whole sequence, BOS included when wanted; >= 2 tokens
  model::ScoreOptions options;
  std::string request_id;
  MetricsSink* metrics = nullptr;  // as in GenerationRequest
  std::function<bool()> is_cancelled;
};

// One hop of a route: a peer computing blocks [block_begin, block_end).
struct RouteHop {
  std::string peer_id;
  std::string address;
  int32_t block_begin = 0;
  int32_t block_end = 0;
};

struct GenerationEvent {
  int32_t index = 0;  // the choice this token belongs to
  int32_t token = -1;
  // The chain of peers that computed this token, in order. Empty when there is no chain to show.
  // Only valid during the callback.
  std::span<const RouteHop> route;
  int32_t failovers = 0;  // failovers so far in this generation
  // With GenerationRequest::logprobs >= 0: this token's log-probability and alternatives. Only
  // valid during the callback.
  const model::TokenLogprob* logprobs = nullptr;
};

// Called with every sampled token, in order within each choice, never twice at once (with n > 1 it
// may be called from the engine's threads). Returns false to stop that choice (client gone, stop
// sequence or end-of-generation seen, server shutting down); the engine must then stop it
// promptly, close its sessions and, once every choice stopped, return OK (or Cancelled).
using TokenCallback = std::function<bool(const GenerationEvent&)>;

// A snapshot of the swarm for the dashboard and /metrics.
struct PeerRtt {
  std::string peer_id;
  double ms = 0;
};

struct PeerView {
  std::string id;
  std::string address;
  std::string state;  // "joining", "online", "offline" (or "local" for the in-process engine)
  int32_t block_begin = 0;
  int32_t block_end = 0;
  double throughput = 0;            // announced forward steps per second over its whole span
  double measured_throughput = -1;  // the same as this process measured it, -1 when not measured
  int64_t cache_tokens_left = -1;   // free KV-cache tokens, -1 when unknown
  // The same cache in bytes of memory (tokens of its cache types take 2 to 4 bytes per value),
  // -1 when unknown.
  int64_t cache_bytes_left = -1;
  int64_t cache_bytes_total = -1;
  std::vector<PeerRtt> rtts;  // measured round trips to the peers of the next blocks
};

struct SwarmView {
  int32_t n_blocks = 0;
  std::vector<PeerView> peers;
};

class CompletionEngine {
 public:
  virtual ~CompletionEngine() = default;

  virtual const ModelInfo& info() const = 0;
  // The model's tokenizer; lives as long as the engine.
  virtual const model::Tokenizer& tokenizer() const = 0;

  // Generates up to request.max_tokens tokens after request.prompt, calling on_token with each one.
  // End-of-generation tokens may either be reported (the gateway then stops) or end the generation
  // without being reported. Blocks until done. Errors: InvalidArgument (bad request),
  // ResourceExhausted (no capacity: try later), Unavailable / DeadlineExceeded (no route, peers
  // failed beyond recovery), anything else is internal. Tokens already reported stay valid.
  virtual absl::Status Generate(const GenerationRequest& request,
                                const TokenCallback& on_token) = 0;

  // Scores request.tokens (see ScoreRequest) on a fresh sequence. Errors as Generate's.
  virtual absl::StatusOr<std::vector<model::TokenLogprob>> Score(const ScoreRequest& request) {
    (void)request;
    return absl::UnimplementedError("this engine cannot score tokens");
  }

  // A snapshot of the swarm. Must return promptly (a cached view, no network round trips): it is
  // called on the server's I/O threads.
  virtual SwarmView Describe() const = 0;
};

}  // namespace swarm::gateway
