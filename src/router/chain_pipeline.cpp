// ChainSession's step path: steps sent (Submit) and collected in order (Collect) with several in
// flight at once, rollback, and the failover that sends the uncollected steps again. Members of
// ChainSession (chain_session.h); one thread at a time.
#include <algorithm>
#include <variant>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "router/chain_session.h"
#include "transport/request_reply.h"
#include "transport/route_seal.h"

namespace swarm::router {
namespace {

using Clock = std::chrono::steady_clock;
using transport::DecodedMessage;
using transport::EncodeMessage;

std::string Describe(const ChainHop& hop) {
  return absl::StrCat("peer ", hop.address, " (blocks ", hop.first_block, "..", hop.last_block,
                      ")");
}

}  // namespace

void ChainSession::SendStep(std::span<const ChainHop> hops, std::span<Link> links,
                            InFlightStep& step) {
  StepResult& result = step.result;
  result = StepResult{};
  step.received = 0;
  step.refused_input.reset();
  step.step_id = next_step_id_++;
  step.sent_at = Clock::now();
  result.outputs.assign(hops.size(), {});
  result.arrived.assign(hops.size(), step.sent_at);
  const uint64_t step_id = step.step_id;
  const std::vector<uint32_t> shape = {static_cast<uint32_t>(n_embd_),
                                       static_cast<uint32_t>(step.n_tokens)};
  auto encoded = transport::EncodeActivations(step.input, shape, options_.codec, &workspace_);
  if (!encoded.ok()) {
    result.status = encoded.status();
    return;
  }
  transport::Step message;
  message.session_id = links[0].session_id;
  message.step_id = step_id;
  message.start_position = step.start;
  message.n_tokens = static_cast<int32_t>(step.n_tokens);
  message.tensor = encoded->desc;
  message.capability = links[0].capabilities.owner;
  // Hop i's layer names hop i + 1 alone, with the capability that lets hop i push to it.
  std::vector<transport::SealingHop> route;
  route.reserve(hops.size());
  for (size_t i = 0; i < hops.size(); ++i) {
    route.push_back(
        {{hops[i].address, links[i].session_id, options_.codec, links[i].capabilities.push},
         links[i].capabilities.route_key});
  }
  auto sealed = transport::SealRoute(
      route, {step_id, step.start, static_cast<int32_t>(step.n_tokens), step.redo});
  if (!sealed.ok()) {
    result.status = sealed.status();
    return;
  }
  message.sealed_route = std::move(*sealed);
  auto wire = EncodeMessage(step_id, std::move(message), encoded->bytes);
  if (!wire.ok()) {
    result.status = wire.status();
    return;
  }
  if (auto sent = links[0].socket->Send(*wire); !sent.ok()) {
    result.failed_hop = 0;
    result.status =
        absl::Status(sent.code(), absl::StrCat(Describe(hops[0]), ": ", sent.message()));
  }
}

void ChainSession::AwaitOldest(std::span<const ChainHop> hops, std::span<Link> links,
                               std::deque<InFlightStep>& steps) {
  InFlightStep& target = steps.front();
  // The first failure of a step is the one reported.
  auto fail = [&](InFlightStep& step, size_t i, const absl::Status& status) {
    if (!step.result.status.ok()) return;
    step.result.failed_hop = static_cast<int>(i);
    step.result.status =
        absl::Status(status.code(), absl::StrCat(Describe(hops[i]), ": ", status.message()));
  };
  // Every hop's output is here, or the hop that refused its input can be judged.
  auto complete = [&](const InFlightStep& step) {
    return step.received == hops.size() ||
           (step.refused_input && !step.result.outputs[step.refused_input->first - 1].empty());
  };
  auto find = [&](uint64_t step_id) -> InFlightStep* {
    for (InFlightStep& step : steps) {
      if (step.step_id == step_id) return &step;
    }
    return nullptr;
  };
  const auto timeout = StepTimeout(target.n_tokens);
  // From now: with steps in flight the oldest may have queued behind others for a while.
  const auto deadline = Clock::now() + timeout;
  // The hops' sockets, then the disconnect events of those that watch them.
  std::vector<zmq::socket_ref> sockets;
  for (Link& link : links) sockets.push_back(link.socket->socket());
  std::vector<size_t> watched;  // hop of sockets[links.size() + k]
  for (size_t i = 0; i < links.size(); ++i) {
    if (links[i].socket->watches_disconnects()) {
      sockets.push_back(links[i].socket->disconnect_events());
      watched.push_back(i);
    }
  }
  while (target.result.status.ok() && !complete(target)) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    auto readable = transport::PollReadable(sockets, std::max(left, std::chrono::milliseconds(0)));
    if (!readable.ok()) {
      target.result.status = readable.status();
      return;
    }
    if (readable->empty()) {
      if (target.refused_input) {
        fail(target, target.refused_input->first, target.refused_input->second);
        return;
      }
      // The first hop without an output is the one that stalled (the earlier ones answered).
      for (size_t i = 0; i < hops.size(); ++i) {
        if (target.result.outputs[i].empty()) {
          fail(target, i,
               absl::DeadlineExceededError(absl::StrCat("no output for step ", target.step_id,
                                                        " within ", timeout.count(), " ms")));
          return;
        }
      }
    }
    for (size_t k : *readable) {
      if (k >= links.size()) {
        // A dropped connection: the peer died (TCP closed) or froze (heartbeats unanswered).
        // Even if this hop's output is here, its cache is gone for the next step: fail now.
        const size_t i = watched[k - links.size()];
        if (!links[i].socket->ConnectionDropped()) continue;
        fail(target, i,
             absl::UnavailableError(absl::StrCat(
                 "connection lost during step ", target.step_id,
                 " (closed, or heartbeats unanswered for ",
                 transport::HeartbeatTimeout(options_.heartbeat_interval).count(), " ms)")));
        return;
      }
      const size_t i = k;
      // An output of hop i for a step awaited here (once), or an error about one (about none in
      // particular: the oldest); anything else is a dropped or stale step's, or unrelated.
      InFlightStep* matched = nullptr;
      auto ours = [&](const DecodedMessage& m) {
        matched = nullptr;
        if (auto* error = std::get_if<transport::ErrorReply>(&m.body)) {
          matched = error->step_id.has_value() ? find(*error->step_id) : &target;
          return matched != nullptr;
        }
        auto* output = std::get_if<transport::StepOutput>(&m.body);
        if (output == nullptr || output->session_id != links[i].session_id) return false;
        matched = find(output->step_id);
        if (matched != nullptr && !matched->result.outputs[i].empty()) matched = nullptr;
        return matched != nullptr;
      };
      while (true) {
        matched = nullptr;  // stays so when the message does not decode
        auto reply = transport::TakeReply(*links[i].socket, ours);
        if (!reply.ok()) {
          InFlightStep& step = matched != nullptr ? *matched : target;
          if (i > 0 && !step.refused_input &&
              reply.status().code() == absl::StatusCode::kInvalidArgument) {
            step.refused_input.emplace(i, reply.status());
          } else {
            fail(step, i, reply.status());
          }
          if (&step == &target) break;
          continue;
        }
        if (!reply->has_value()) break;
        InFlightStep& step = *matched;
        const DecodedMessage& decoded = **reply;
        const auto& output = std::get<transport::StepOutput>(decoded.body);
        if (output.n_tokens != step.n_tokens || output.start_position != step.start) {
          fail(step, i, absl::DataLossError("output for the wrong positions"));
          continue;
        }
        // The shape and codec asked for, checked before anything is inflated.
        const std::vector<uint32_t> shape = {static_cast<uint32_t>(n_embd_),
                                             static_cast<uint32_t>(step.n_tokens)};
        auto values = transport::DecodeActivations(decoded, {options_.codec, shape}, &workspace_);
        if (!values.ok() || values->size() != step.input.size()) {
          fail(step, i,
               absl::DataLossError(values.ok() ? "output of the wrong size"
                                               : values.status().message()));
          continue;
        }
        step.result.outputs[i] = std::move(*values);
        step.result.arrived[i] = Clock::now();
        ++step.received;
      }
      if (!target.result.status.ok()) return;
    }
  }
  if (!target.result.status.ok()) return;
  CheckOutputs(hops, target.input.data(), target.n_tokens,
               target.refused_input ? target.refused_input->first : hops.size(), target.result);
  if (target.result.status.ok() && target.refused_input) {
    fail(target, target.refused_input->first, target.refused_input->second);
  }
}

ChainSession::StepResult ChainSession::RunStep(std::span<const ChainHop> hops,
                                               std::span<Link> links, int64_t start,
                                               int64_t n_tokens, const float* input, bool redo) {
  std::deque<InFlightStep> steps(1);
  InFlightStep& step = steps.front();
  step.start = start;
  step.n_tokens = n_tokens;
  step.input.assign(input, input + static_cast<size_t>(n_embd_ * n_tokens));
  step.redo = redo;
  SendStep(hops, links, step);
  AwaitOldest(hops, links, steps);
  return std::move(step.result);
}

absl::Status ChainSession::Submit(int64_t n_tokens, std::span<const float> hidden_in) {
  if (n_tokens <= 0 || submitted_end_ + n_tokens > options_.max_length) {
    return absl::OutOfRangeError(absl::StrCat("positions up to ", submitted_end_ + n_tokens,
                                              " exceed the session length ", options_.max_length));
  }
  if (hidden_in.size() != static_cast<size_t>(n_embd_ * n_tokens)) {
    return absl::InvalidArgumentError(absl::StrCat("a step of ", n_tokens, " positions needs ",
                                                   n_embd_ * n_tokens, " values, not ",
                                                   hidden_in.size()));
  }
  InFlightStep& step = in_flight_.emplace_back();
  step.start = submitted_end_;
  step.n_tokens = n_tokens;
  step.input.assign(hidden_in.begin(), hidden_in.end());
  step.redo = redo_next_;
  redo_next_ = false;
  SendStep(hops_, links_, step);
  submitted_end_ += n_tokens;
  max_in_flight_ = std::max(max_in_flight_, static_cast<int64_t>(in_flight_.size()));
  return absl::OkStatus();
}

void ChainSession::ResendInFlight() {
  bool first = true;
  for (InFlightStep& step : in_flight_) {
    // The hops before a replaced one hold these positions already, and perhaps later ones.
    step.redo = step.redo || first;
    first = false;
    SendStep(hops_, links_, step);
  }
}

void ChainSession::DropInFlight() {
  in_flight_.clear();
  submitted_end_ = position_;
  // Some hops may hold positions of the dropped steps: the next step rolls them back.
  redo_next_ = true;
}

absl::Status ChainSession::Collect(float* hidden_out) {
  failed_hop_ = -1;
  if (in_flight_.empty()) return absl::FailedPreconditionError("no step is in flight");
  for (int attempt = 0;; ++attempt) {
    AwaitOldest(hops_, links_, in_flight_);
    InFlightStep& step = in_flight_.front();
    const int64_t n_tokens = step.n_tokens;
    if (step.result.status.ok() && policy_.enabled()) {
      auto verdict = VerifyStep(n_tokens, step.input.data(), step.result);
      if (!verdict.ok()) {
        DropInFlight();
        return verdict.status();
      }
      if (*verdict == Verdict::kRerun) {
        if (attempt >= options_.max_failovers_per_step) {
          DropInFlight();
          return absl::DataLossError("peers kept disagreeing with their replicas");
        }
        // A liar was replaced: every uncollected step runs again, this one from its start.
        ResendInFlight();
        continue;
      }
    }
    if (step.result.status.ok()) {
      const std::vector<std::vector<float>>& outputs = step.result.outputs;
      const std::vector<Clock::time_point>& arrived = step.result.arrived;
      links_[0].history.insert(links_[0].history.end(), step.input.begin(), step.input.end());
      for (size_t i = 1; i < hops_.size(); ++i) {
        links_[i].history.insert(links_[i].history.end(), outputs[i - 1].begin(),
                                 outputs[i - 1].end());
      }
      // The step's time runs from when it could start: sent, and the step before it done (with
      // steps in flight it queues behind the earlier ones). Each hop gets what it added to the
      // latest arrival so far: a last hop's output can reach the client before the previous hop's
      // copy (which that hop sends after its push), and then it added nothing. The hops' times
      // add up to the step's.
      const auto start = std::max(step.sent_at, last_done_);
      auto previous = start;
      std::vector<double> hop_seconds(hops_.size());
      for (size_t i = 0; i < hops_.size(); ++i) {
        const auto latest = std::max(previous, arrived[i]);
        hop_seconds[i] = std::chrono::duration<double>(latest - previous).count();
        timings_[i].steps += 1;
        timings_[i].seconds += hop_seconds[i];
        previous = latest;
      }
      if (provider_ != nullptr) provider_->StepTimed(hops_, hop_seconds, n_tokens);
      const double per_token =
          std::chrono::duration<double>(std::max(start, arrived.back()) - start).count() /
          static_cast<double>(n_tokens);
      seconds_per_token_ =
          seconds_per_token_ < 0 ? per_token : 0.8 * seconds_per_token_ + 0.2 * per_token;
      last_done_ = previous;
      std::copy(outputs.back().begin(), outputs.back().end(), hidden_out);
      position_ += n_tokens;
      in_flight_.pop_front();
      if (provider_ != nullptr) provider_->StepDone();
      return absl::OkStatus();
    }
    failed_hop_ = step.result.failed_hop;
    if (step.result.lied) BanLiar(hops_[step.result.failed_hop]);
    if (provider_ == nullptr || step.result.failed_hop < 0 ||
        attempt >= options_.max_failovers_per_step) {
      absl::Status failed = step.result.status;
      DropInFlight();
      return failed;
    }
    // Replace the failed hop (its history replayed), then send every uncollected step again: the
    // hops before it redo the same positions (a peer truncates its cache to a step's start),
    // which with deterministic kernels gives the same outputs.
    FailoverEvent event;
    event.hop = step.result.failed_hop;
    event.reason = std::string(step.result.status.message());
    event.detect_seconds = std::chrono::duration<double>(Clock::now() - step.sent_at).count();
    if (absl::Status replaced =
            ReplaceHop(static_cast<size_t>(step.result.failed_hop), std::move(event));
        !replaced.ok()) {
      DropInFlight();
      return replaced;
    }
    ResendInFlight();
  }
}

absl::Status ChainSession::Forward(int64_t n_tokens, const float* hidden_in, float* hidden_out) {
  failed_hop_ = -1;
  if (!in_flight_.empty()) {
    return absl::FailedPreconditionError("Forward while steps are in flight: collect them first");
  }
  SWARM_RETURN_IF_ERROR(Submit(
      n_tokens, std::span<const float>(
                    hidden_in, static_cast<size_t>(n_embd_ * std::max<int64_t>(n_tokens, 0)))));
  return Collect(hidden_out);
}

absl::Status ChainSession::Rollback(int64_t position) {
  if (position < 0 || position > position_) {
    return absl::OutOfRangeError(absl::StrCat("cannot roll back to position ", position,
                                              ": the session holds positions [0, ", position_,
                                              ")"));
  }
  const int64_t dropped = position_ - position + in_flight_tokens();
  if (dropped == 0) return absl::OkStatus();
  ++rollbacks_;
  rolled_back_positions_ += dropped;
  const size_t kept = static_cast<size_t>(position * n_embd_);
  for (Link& link : links_) {
    if (link.history.size() > kept) link.history.resize(kept);
  }
  // A kept replica catches up from its length: it rolls back with the next check (the client
  // owns its session, so it may send it an earlier position).
  for (auto& [span, replica] : replicas_) replica.length = std::min(replica.length, position);
  for (auto& [span, from] : compare_from_) from = std::min(from, position);
  position_ = position;
  DropInFlight();
  return absl::OkStatus();
}

int64_t ChainSession::in_flight_tokens() const {
  int64_t n = 0;
  for (const InFlightStep& step : in_flight_) n += step.n_tokens;
  return n;
}

}  // namespace swarm::router
