// ChainSession's verification: the output checks of every hop's output, spot checks of hop-steps
// on replicas, arbitration by a third replica and the banning and replacing of liars. Members of
// ChainSession (chain_session.h), kept apart from the step path they hook into.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "router/chain_session.h"

namespace swarm::router {
namespace {

std::string Describe(const ChainHop& hop) {
  return absl::StrCat("peer ", hop.address, " (blocks ", hop.first_block, "..", hop.last_block,
                      ")");
}

// What a peer is known by for its trust: its id, or its address when it reported none.
const std::string& PeerKey(const ChainHop& hop) {
  return hop.peer_id.empty() ? hop.address : hop.peer_id;
}

bool SamePeer(const ChainHop& a, const ChainHop& b) {
  return a.address == b.address || (!a.peer_id.empty() && a.peer_id == b.peer_id);
}

// Arbitration retries: replicas that fail (not lie) are skipped, a few at most.
constexpr int kReplicaAttempts = 3;

}  // namespace

void ChainSession::CheckOutputs(std::span<const ChainHop> hops, const float* input,
                                int64_t n_tokens, size_t upto, StepResult& result) {
  const size_t n_values = static_cast<size_t>(n_embd_ * n_tokens);
  for (size_t k = 0; k < upto && k < result.outputs.size(); ++k) {
    if (result.outputs[k].empty()) return;
    std::span<const float> hop_input = k == 0 ? std::span<const float>(input, n_values)
                                              : std::span<const float>(result.outputs[k - 1]);
    absl::Status checked =
        CheckHopOutput(hop_input, result.outputs[k], n_embd_, n_tokens, options_.output_bounds);
    if (!checked.ok()) {
      ++verification_.output_refused;
      result.failed_hop = static_cast<int>(k);
      result.lied = true;
      result.status = absl::DataLossError(
          absl::StrCat(Describe(hops[k]), ": output refused: ", checked.message()));
      return;
    }
  }
}

void ChainSession::BanLiar(const ChainHop& hop) {
  ++verification_.peers_banned;
  if (provider_ != nullptr) provider_->ReportLie(hop);
}

std::string ChainSession::BackendOf(const ChainHop& hop) {
  auto it = backends_.find(hop.address);
  if (it != backends_.end()) return it->second;
  // Unknown ("") never counts as the same backend: such a pair is compared within tolerance.
  auto info = QueryInfo(context_, hop.address, options_.open_timeout, options_.socket);
  return backends_[hop.address] = info.ok() ? info->backend : "";
}

absl::StatusOr<std::vector<float>> ChainSession::RunOnReplica(size_t i, int64_t n_tokens,
                                                              std::span<const float> hop_input,
                                                              std::span<const ChainHop> exclude,
                                                              bool temporary, ChainHop* used,
                                                              int64_t* first_out) {
  const ChainHop& hop = hops_[i];
  const Span span{hop.first_block, hop.last_block};
  const std::vector<float>& history = links_[i].history;  // [n_embd, position_]
  for (int attempt = 0; attempt < kReplicaAttempts; ++attempt) {
    Replica fresh;
    Replica* replica = nullptr;
    if (!temporary) {
      auto it = replicas_.find(span);
      if (it != replicas_.end()) {
        bool excluded = false;
        for (const ChainHop& e : exclude) excluded |= SamePeer(e, it->second.hop);
        if (excluded) {  // e.g. the replica's peer now serves the hop itself
          CloseLink(it->second.link);
          replicas_.erase(it);
        } else {
          replica = &it->second;
        }
      }
    }
    if (replica == nullptr) {
      if (provider_ == nullptr) return absl::NotFoundError("no router to find replicas");
      SWARM_ASSIGN_OR_RETURN(fresh.hop, provider_->Replica(span.first, span.second, exclude));
      if (absl::Status opened = OpenLink(fresh.hop, i, fresh.link); !opened.ok()) {
        provider_->ReportFailure(fresh.hop);
        continue;
      }
      if (temporary) {
        replica = &fresh;
      } else {
        replica = &(replicas_[span] = std::move(fresh));
      }
    }
    // Catch up from the hop's history, then the step: one step from the replica's length.
    const int64_t from = std::min(replica->length, position_);
    std::vector<float> input(history.begin() + from * n_embd_, history.end());
    input.insert(input.end(), hop_input.begin(), hop_input.end());
    const int64_t n = position_ - from + n_tokens;
    StepResult result = RunStep(std::span<const ChainHop>(&replica->hop, 1),
                                std::span<Link>(&replica->link, 1), from, n, input.data());
    *used = replica->hop;
    if (!result.status.ok()) {
      if (result.lied) BanLiar(replica->hop);
      provider_->ReportFailure(replica->hop);
      CloseLink(replica->link);
      if (!temporary) replicas_.erase(span);
      continue;
    }
    replica->length = position_ + n_tokens;
    if (temporary) CloseLink(replica->link);
    const int64_t first = temporary ? std::clamp(*first_out, from, position_) : from;
    *first_out = first;
    std::vector<float>& out = result.outputs[0];
    return std::vector<float>(out.begin() + (first - from) * n_embd_, out.end());
  }
  return absl::UnavailableError(absl::StrCat("no replica of blocks ", span.first, "..", span.second,
                                             " answered in ", kReplicaAttempts, " tries"));
}

absl::StatusOr<ChainSession::Verdict> ChainSession::VerifyStep(int64_t n_tokens, const float* input,
                                                               const StepResult& step) {
  const size_t n_values = static_cast<size_t>(n_embd_ * n_tokens);
  // Counted once the step is accepted, so that a step run again is counted once.
  std::map<Span, SpanVerification> counted;
  for (size_t i = 0; i < hops_.size(); ++i) {
    const ChainHop hop = hops_[i];
    SpanVerification& counters = counted[{hop.first_block, hop.last_block}];
    if (!policy_.ShouldCheck(PeerKey(hop))) {
      ++counters.unverified_steps;
      continue;
    }
    std::span<const float> hop_input = i == 0 ? std::span<const float>(input, n_values)
                                              : std::span<const float>(step.outputs[i - 1]);
    ChainHop second;
    const ChainHop exclude_hop[] = {hop};
    int64_t first = 0;
    auto replica_output = RunOnReplica(i, n_tokens, hop_input, exclude_hop, false, &second, &first);
    if (!replica_output.ok()) {
      ++counters.unverified_steps;
      if (absl::IsNotFound(replica_output.status())) ++counters.no_replica_steps;
      continue;
    }
    // The replica recomputed every position it had not seen, so the hop's earlier outputs (the
    // next hop's input history) are compared too: a lie on a step that was not drawn is found at
    // the next check. Its tokens are out already; the liar is banned all the same. The last hop's
    // outputs are not kept: only its step is compared.
    if (auto it = compare_from_.find({hop.first_block, hop.last_block});
        it != compare_from_.end() && first < it->second) {
      replica_output->erase(replica_output->begin(),
                            replica_output->begin() + (it->second - first) * n_embd_);
      first = it->second;
    }
    std::vector<float> hop_output;
    if (i + 1 < hops_.size()) {
      const std::vector<float>& earlier = links_[i + 1].history;
      hop_output.assign(earlier.begin() + first * n_embd_, earlier.end());
    } else {
      replica_output->erase(replica_output->begin(),
                            replica_output->end() - static_cast<ptrdiff_t>(n_values));
      first = position_;
    }
    hop_output.insert(hop_output.end(), step.outputs[i].begin(), step.outputs[i].end());
    const double tolerance = ToleranceFor(BackendOf(hop), BackendOf(second), options_.codec,
                                          options_.verify.cross_backend_tolerance);
    if (OutputsAgree(hop_output, *replica_output, n_embd_, tolerance)) {
      ++counters.verified_steps;
      policy_.Passed(PeerKey(hop));
      if (tolerance > 0) {
        verification_.max_cross_backend_error =
            std::max(verification_.max_cross_backend_error,
                     MaxRelativeError(hop_output, *replica_output, n_embd_));
      }
      continue;
    }
    // Disagreement: a third peer decides.
    ++verification_.mismatches;
    ++verification_.spans[{hop.first_block, hop.last_block}].mismatches;
    policy_.MismatchSeen();
    ChainHop third;
    const ChainHop exclude_both[] = {hop, second};
    int64_t third_first = first;
    auto third_output =
        RunOnReplica(i, n_tokens, hop_input, exclude_both, true, &third, &third_first);
    if (third_output.ok() && third_first != first) {
      third_output = absl::InternalError("the third peer's outputs start elsewhere");
    }
    bool hop_agrees = false, second_agrees = false;
    if (third_output.ok()) {
      const std::string third_backend = BackendOf(third);
      hop_agrees = OutputsAgree(hop_output, *third_output, n_embd_,
                                ToleranceFor(BackendOf(hop), third_backend, options_.codec,
                                             options_.verify.cross_backend_tolerance));
      second_agrees = OutputsAgree(*replica_output, *third_output, n_embd_,
                                   ToleranceFor(BackendOf(second), third_backend, options_.codec,
                                                options_.verify.cross_backend_tolerance));
    }
    if (hop_agrees) {
      // The hop's output stands. The replica lied, unless both are within the tolerance of the
      // third (different backends, each near the bound).
      if (!second_agrees) {
        BanLiar(second);
        if (auto it = replicas_.find({hop.first_block, hop.last_block}); it != replicas_.end()) {
          CloseLink(it->second.link);
          replicas_.erase(it);
        }
      }
      ++counters.verified_steps;
      continue;
    }
    if (!second_agrees) {
      // No third opinion (none serves the span, none answered, or all three differ): trust
      // neither. Any other peer of the span would have been the third, so there is nothing to
      // replace the hop with that is not one of the two: the step fails, the text stays right.
      return absl::DataLossError(absl::StrCat(
          "blocks ", hop.first_block, "..", hop.last_block - 1, ": ", Describe(hop),
          " and its replica ", second.address, " disagree and no third peer decides",
          third_output.ok() ? " (it agrees with neither)"
                            : absl::StrCat(" (", third_output.status().message(), ")")));
    }
    // The hop lied: ban it, replace it (its history replayed on the replacement) and run the step
    // again from its start, which rolls every hop back to it.
    BanLiar(hop);
    FailoverEvent event;
    event.hop = static_cast<int>(i);
    event.reason = absl::StrCat(Describe(hop), ": output disagrees with two replicas");
    absl::Status replaced = ReplaceHop(i, std::move(event));
    if (!replaced.ok()) {
      return absl::DataLossError(
          absl::StrCat("blocks ", hop.first_block, "..", hop.last_block - 1, ": ", Describe(hop),
                       " was outvoted and cannot be replaced: ", replaced.message()));
    }
    for (const ChainHop& h : hops_) {
      if (h.first_block >= hop.first_block && h.last_block <= hop.last_block) {
        compare_from_[{h.first_block, h.last_block}] = position_;
      }
    }
    return Verdict::kRerun;
  }
  for (const auto& [span, c] : counted) {
    SpanVerification& total = verification_.spans[span];
    total.verified_steps += c.verified_steps;
    total.unverified_steps += c.unverified_steps;
    total.no_replica_steps += c.no_replica_steps;
  }
  return Verdict::kAccepted;
}

}  // namespace swarm::router
