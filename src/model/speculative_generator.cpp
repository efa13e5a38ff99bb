#include "model/speculative_generator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <vector>

#include "absl/strings/str_format.h"
#include "base/status_macros.h"

namespace swarm::model {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The probability `dist` gives `token` (0 when it is not kept).
double ProbabilityOf(std::span<const TokenProb> dist, int32_t token) {
  for (const TokenProb& t : dist) {
    if (t.id == token) return t.p;
  }
  return 0;
}

struct Chunk {
  int64_t start = 0;  // first position
  int64_t n = 0;      // positions
  Clock::time_point submitted;
};

// Exponential moving average; `empty` until the first sample.
struct Average {
  double value = 0;
  bool empty = true;
  void Add(double x, double weight = 0.2) {
    value = empty ? x : value + weight * (x - value);
    empty = false;
  }
};

}  // namespace

std::string SpeculationBlocker(const Sampler& sampler, const GenerateOptions& /*options*/) {
  // A constraint's state advances with every token: it cannot mask positions ahead of it.
  if (sampler.constraint() != nullptr) return "constrained decoding";
  return "";
}

std::string SpeculativeSummary(const SpeculativeStats& s) {
  return absl::StrFormat(
      "speculative: drafted %d, accepted %d (%.0f%%), %.2f tokens per traversal, up to %d chunks "
      "in flight",
      s.drafted, s.accepted, 100.0 * s.acceptance(), s.tokens_per_traversal(), s.max_in_flight);
}

absl::StatusOr<GenerationStats> GenerateSpeculative(
    std::span<const int32_t> prompt, const GenerateOptions& options,
    const SpeculativeOptions& speculative, ClientHead& head, BlockPipeline& blocks,
    Sampler& sampler, const Tokenizer& tokenizer, Drafter& drafter,
    const std::function<bool(int32_t)>& on_token, SpeculativeStats* stats_out,
    const std::function<void(int64_t)>& on_in_flight) {
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  if (const std::string blocker = SpeculationBlocker(sampler, options); !blocker.empty()) {
    return absl::FailedPreconditionError("speculative decoding cannot serve " + blocker);
  }
  SpeculativeStats local_stats;
  SpeculativeStats& spec = stats_out != nullptr ? *stats_out : local_stats;
  spec = SpeculativeStats{};
  const int64_t n_embd = head.config().n_embd;
  const int64_t n_vocab = head.config().n_vocab;
  GenerationStats stats;
  stats.prompt_tokens = static_cast<int64_t>(prompt.size());
  stats.finish_reason = "length";
  if (options.max_new_tokens <= 0) return stats;
  // Positions that ever need the blocks: the last token is reported, never run.
  const int64_t limit = static_cast<int64_t>(prompt.size()) + options.max_new_tokens - 1;

  std::vector<int32_t> history(prompt.begin(), prompt.end());  // decided tokens
  std::vector<DraftToken> drafts;  // proposed tokens at positions history.size(), ...
  std::deque<Chunk> chunks;        // submitted, not collected, oldest first
  int64_t submitted_end = 0;       // positions submitted to the blocks
  std::vector<float> hidden, logits;
  std::vector<int32_t> sequence;  // history + drafts, for the drafter
  std::vector<TokenProb> dist, residual;
  bool done = false;

  auto token_at = [&](int64_t position) {
    const int64_t h = static_cast<int64_t>(history.size());
    return position < h ? history[position] : drafts[position - h].token;
  };
  // Decides the token after `history` from the target's logits there, against the first draft.
  // Returns false when the generation ends.
  bool rejected = false;
  auto decide = [&](const float* position_logits) -> bool {
    if (options.on_logits) options.on_logits(std::span<const float>(position_logits, n_vocab));
    sampler.Distribution(std::span<const float>(position_logits, n_vocab), history, dist);
    int32_t token;
    rejected = false;
    if (!drafts.empty()) {
      const DraftToken& draft = drafts.front();
      const double p = ProbabilityOf(dist, draft.token);
      const double q = draft.q.empty() ? 1.0 : ProbabilityOf(draft.q, draft.token);
      ++spec.drafted;
      // Accept with min(1, p/q); greedy (p is 0 or 1) needs no random number.
      const bool accept = dist.size() == 1 ? p > 0 : (q > 0 && sampler.Uniform() * q < p);
      if (accept) {
        ++spec.accepted;
        token = draft.token;
      } else {
        // The residual max(0, p - q), normalised by DrawFrom.
        residual.clear();
        for (const TokenProb& t : dist) {
          const double qt =
              draft.q.empty() ? (t.id == draft.token ? 1.0 : 0.0) : ProbabilityOf(draft.q, t.id);
          if (t.p > qt) residual.push_back({t.id, t.p - qt});
        }
        token = residual.empty() ? sampler.DrawFrom(dist) : sampler.DrawFrom(residual);
        rejected = true;
      }
      drafts.erase(drafts.begin());
    } else {
      token = dist.size() == 1 ? dist.front().id : sampler.DrawFrom(dist);
      rejected = true;  // nothing was drafted here: whatever follows must be drafted anew
    }
    sampler.Accept(token);
    if (options.stop_at_end_of_generation && tokenizer.IsEndOfGeneration(token)) {
      stats.finish_reason = "stop";
      return false;
    }
    ++stats.generated_tokens;
    history.push_back(token);
    if (!on_token(token)) {
      stats.finish_reason = "cancelled";
      return false;
    }
    return stats.generated_tokens < options.max_new_tokens;
  };

  // The prompt: one plain step.
  auto start = Clock::now();
  hidden.resize(static_cast<size_t>(n_embd) * prompt.size());
  logits.resize(static_cast<size_t>(n_vocab));
  SWARM_RETURN_IF_ERROR(head.Embed(prompt, hidden.data()));
  if (blocks.waits_on_peers()) head.ParkThreads();
  SWARM_RETURN_IF_ERROR(
      blocks.Forward(static_cast<int64_t>(prompt.size()), hidden.data(), hidden.data()));
  submitted_end = static_cast<int64_t>(prompt.size());
  if (options.on_prompt_hidden) {
    SWARM_RETURN_IF_ERROR(
        options.on_prompt_hidden(hidden.data(), static_cast<int64_t>(prompt.size())));
  }
  SWARM_RETURN_IF_ERROR(head.Logits(
      hidden.data() + (static_cast<int64_t>(prompt.size()) - 1) * n_embd, logits.data()));
  done = !decide(logits.data());
  stats.prompt_seconds = SecondsSince(start);
  start = Clock::now();

  // What the loop measures to choose the draft length and the depth.
  Average acceptance;     // per drafted token
  Average round_trip;     // Submit to Collect, seconds
  Average client_work;    // drafting, embedding and verifying one chunk here, seconds
  Average position_work;  // client_work per verified position, seconds
  auto draft_length = [&]() -> int64_t {
    const double a = acceptance.empty ? 0.5 : std::min(acceptance.value, 0.999);
    const int64_t most =
        speculative.draft_max > 0 ? speculative.draft_max : SpeculativeOptions::kAdaptiveDraftMax;
    // The expected run of accepted tokens (geometric), and one more.
    const double run = a / (1.0 - a);
    const int64_t by_run = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(run)) + 1, 1, most);
    if (!blocks.waits_on_peers() || round_trip.empty || position_work.empty) return by_run;
    // Over peers, the length that yields the most tokens per second if longer: a chunk of k
    // drafts yields (1 - a^(k+1)) / (1 - a) tokens and costs a round trip plus k + 1 positions'
    // work here (drafting, embedding, verifying). Where a round trip dwarfs that work (slow
    // links, a cheap drafter) the longest draft wins even at a modest acceptance: a wrong draft
    // costs the peers a few positions, a short one a whole round trip. Lookup drafts also come in
    // runs (a repeated passage is right to its end), which the geometric model undercounts.
    int64_t best = 1;
    double best_rate = 0;
    for (int64_t k = 1; k <= most; ++k) {
      const double yield = (1.0 - std::pow(a, static_cast<double>(k + 1))) / (1.0 - a);
      const double rate =
          yield / (round_trip.value + static_cast<double>(k + 1) * position_work.value);
      if (rate > best_rate) {
        best = k;
        best_rate = rate;
      }
    }
    return std::max(by_run, best);
  };
  auto depth = [&](int64_t k) -> int64_t {
    if (round_trip.empty || client_work.empty) return 1;
    // Enough chunks to cover a round trip with the client's own work per chunk (one where the
    // blocks compute at Submit, in this process, and the round trip is nothing) ...
    const double ratio = round_trip.value / std::max(client_work.value, 1e-9);
    const double cover = ratio < 0.01 ? 1.0 : 1.0 + std::ceil(ratio);
    // ... but only chunks likely to survive: chunk i needs every draft before it accepted.
    double useful = static_cast<double>(speculative.max_in_flight);
    const double a = acceptance.empty ? 0.5 : acceptance.value;
    if (a < 1.0) {
      useful = a <= 0.0
                   ? 1.0
                   : 1.0 + std::floor(std::log(0.25) / (static_cast<double>(k + 1) * std::log(a)));
    }
    const double d = std::min(cover, useful);
    return std::clamp<int64_t>(static_cast<int64_t>(d), 1, speculative.max_in_flight);
  };
  auto report_in_flight = [&] {
    spec.max_in_flight = std::max<int64_t>(spec.max_in_flight, static_cast<int64_t>(chunks.size()));
    if (on_in_flight) on_in_flight(static_cast<int64_t>(chunks.size()));
  };

  while (!done) {
    // Fill: draft ahead assuming acceptance, and submit chunks up to the depth.
    auto work_start = Clock::now();
    const int64_t k = draft_length();
    const int64_t want_depth = depth(k);
    while (static_cast<int64_t>(chunks.size()) < want_depth && submitted_end < limit) {
      const int64_t known = static_cast<int64_t>(history.size() + drafts.size());
      const int64_t end = std::min(limit, submitted_end + k + 1);
      if (known < end) {
        sequence.assign(history.begin(), history.end());
        for (const DraftToken& d : drafts) sequence.push_back(d.token);
        const size_t before = drafts.size();
        SWARM_RETURN_IF_ERROR(drafter.Draft(sequence, end - known, drafts));
        if (drafts.size() > before + static_cast<size_t>(end - known)) {
          drafts.resize(before + static_cast<size_t>(end - known));
        }
      }
      const int64_t chunk_end = std::min(end, static_cast<int64_t>(history.size() + drafts.size()));
      if (chunk_end <= submitted_end) break;  // nothing to verify beyond what is in flight
      const int64_t n = chunk_end - submitted_end;
      std::vector<int32_t> tokens(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) tokens[i] = token_at(submitted_end + i);
      hidden.resize(static_cast<size_t>(n_embd * n));
      SWARM_RETURN_IF_ERROR(head.Embed(tokens, hidden.data()));
      SWARM_RETURN_IF_ERROR(blocks.Submit(n, hidden));
      chunks.push_back({submitted_end, n, Clock::now()});
      submitted_end = chunk_end;
      ++spec.traversals;
      report_in_flight();
    }
    if (chunks.empty()) return absl::InternalError("speculative decoding has nothing to verify");

    // Collect the oldest chunk and verify it position by position.
    double work = SecondsSince(work_start);
    const Chunk chunk = chunks.front();
    hidden.resize(static_cast<size_t>(n_embd * chunk.n));
    if (blocks.waits_on_peers()) head.ParkThreads();
    SWARM_RETURN_IF_ERROR(blocks.Collect(hidden.data()));
    chunks.pop_front();
    round_trip.Add(SecondsSince(chunk.submitted));
    report_in_flight();
    work_start = Clock::now();
    logits.resize(static_cast<size_t>(n_vocab * chunk.n));
    SWARM_RETURN_IF_ERROR(head.LogitsBatch(hidden.data(), chunk.n, logits.data()));
    for (int64_t j = 0; j < chunk.n; ++j) {
      // This position's token is decided: its logits give the next one.
      const int64_t position = chunk.start + j;
      if (position + 1 != static_cast<int64_t>(history.size())) {
        return absl::InternalError("speculative decoding lost its place");
      }
      const bool had_draft = !drafts.empty();
      const int64_t generated_before = stats.generated_tokens;
      done = !decide(logits.data() + j * n_vocab);
      spec.tokens += stats.generated_tokens - generated_before;
      if (had_draft) acceptance.Add(rejected ? 0.0 : 1.0, 0.1);
      if (done) break;
      if (rejected) {
        // Everything after this position was computed for tokens that are not the text.
        drafts.clear();
        if (submitted_end > position + 1) {
          SWARM_RETURN_IF_ERROR(blocks.Rollback(position + 1));
          chunks.clear();
          submitted_end = position + 1;
          report_in_flight();
        }
        break;
      }
    }
    work += SecondsSince(work_start);
    client_work.Add(work);
    position_work.Add(work / static_cast<double>(chunk.n));
  }
  if (stats.generated_tokens > 0) stats.generation_seconds = SecondsSince(start);
  return stats;
}

}  // namespace swarm::model
