#include "router/chain_session.h"

#include <algorithm>
#include <optional>
#include <variant>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
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

// The status with the hop named first, same code.
absl::Status Attribute(const absl::Status& status, const ChainHop& hop) {
  return absl::Status(status.code(), absl::StrCat(Describe(hop), ": ", status.message()));
}

}  // namespace

absl::StatusOr<transport::InfoReply> QueryInfo(zmq::context_t& context, const std::string& address,
                                               std::chrono::milliseconds timeout,
                                               const transport::ClientOptions& socket_options) {
  SWARM_ASSIGN_OR_RETURN(auto socket,
                         transport::DealerClient::Connect(context, address, socket_options));
  const uint64_t request_id = 1;
  SWARM_ASSIGN_OR_RETURN(auto wire, EncodeMessage(request_id, transport::InfoRequest{}));
  auto reply = transport::Call(*socket, wire, request_id, {.deadline = Clock::now() + timeout});
  if (!reply.ok()) {
    return absl::Status(reply.status().code(),
                        absl::StrCat("peer ", address, ": ", reply.status().message()));
  }
  auto* info = std::get_if<transport::InfoReply>(&reply->body);
  if (info == nullptr)
    return absl::DataLossError(absl::StrCat("peer ", address, ": not an info reply"));
  return *info;
}

absl::StatusOr<std::unique_ptr<ChainSession>> ChainSession::Open(zmq::context_t& context,
                                                                 std::vector<ChainHop> hops,
                                                                 int64_t n_layer, int64_t n_embd,
                                                                 const ChainOptions& options,
                                                                 HopProvider* provider) {
  if (hops.empty()) return absl::InvalidArgumentError("a chain needs at least one peer");
  uint32_t expected = 0;
  for (const ChainHop& hop : hops) {
    if (hop.first_block != expected || hop.last_block <= hop.first_block) {
      return absl::InvalidArgumentError(
          absl::StrCat("the chain does not cover the blocks in order: ", Describe(hop),
                       " follows block ", expected));
    }
    expected = hop.last_block;
  }
  if (expected != n_layer) {
    return absl::InvalidArgumentError(
        absl::StrCat("the chain ends at block ", expected, " of ", n_layer));
  }
  SWARM_RETURN_IF_ERROR(transport::ValidateCodec(options.codec));
  std::unique_ptr<ChainSession> session(
      new ChainSession(context, std::move(hops), n_embd, options, provider));
  session->links_.resize(session->hops_.size());
  session->timings_.resize(session->hops_.size());
  size_t i = 0;
  while (i < session->hops_.size()) {
    absl::Status opened = session->OpenLink(session->hops_[i], i, session->links_[i]);
    if (opened.ok()) {
      ++i;
      continue;
    }
    if (provider == nullptr) return opened;
    // Nothing to replay yet: replacing the hop is just finding other peers (opened already).
    const size_t before = session->hops_.size();
    FailoverEvent event;
    event.hop = static_cast<int>(i);
    event.reason = std::string(opened.message());
    SWARM_RETURN_IF_ERROR(session->ReplaceHop(i, std::move(event)));
    i += session->hops_.size() - before + 1;
  }
  return session;
}

absl::Status ChainSession::OpenLink(const ChainHop& where, size_t hop_index, Link& link) {
  transport::ClientOptions socket_options = options_.socket;
  if (options_.heartbeat_interval.count() > 0) {
    if (socket_options.heartbeat_interval.count() == 0) {
      socket_options.heartbeat_interval = options_.heartbeat_interval;
    }
    socket_options.watch_disconnects = true;
  }
  // No frame of this session is larger than its longest step: libzmq drops a larger one unread.
  if (auto tensor = transport::MaxEncodedSize(
          options_.codec, static_cast<uint64_t>(n_embd_) *
                              static_cast<uint64_t>(std::max<int64_t>(options_.max_length, 1)));
      tensor.ok()) {
    const auto limit = static_cast<int64_t>(*tensor + transport::kMaxHeaderBytes);
    socket_options.max_message_bytes = std::min(socket_options.max_message_bytes, limit);
  }
  auto socket = transport::DealerClient::Connect(context_, where.address, socket_options);
  if (!socket.ok()) return Attribute(socket.status(), where);
  link.socket = std::move(*socket);
  link.session_id = transport::SessionId::Random();
  link.capabilities = transport::SessionCapabilities::Random();
  link.history.clear();
  transport::OpenSession open;
  open.session_id = link.session_id;
  open.first_block = where.first_block;
  open.last_block = where.last_block;
  open.max_length = static_cast<uint32_t>(options_.max_length);
  open.output_codec = options_.codec;
  open.hop_index = static_cast<uint32_t>(hop_index);
  open.return_outputs = true;
  open.capabilities = link.capabilities;
  const uint64_t request_id = next_request_id_++;
  auto wire = EncodeMessage(request_id, open);
  if (!wire.ok()) return wire.status();
  auto reply = transport::Call(*link.socket, *wire, request_id,
                               {.deadline = Clock::now() + options_.open_timeout,
                                .resend_interval = options_.open_resend_interval});
  if (!reply.ok()) return Attribute(reply.status(), where);
  auto* accepted = std::get_if<transport::OpenSessionReply>(&reply->body);
  if (accepted == nullptr || !accepted->accepted) {
    return Attribute(absl::UnavailableError(accepted ? accepted->reason : "unexpected reply"),
                     where);
  }
  return absl::OkStatus();
}

void ChainSession::CloseLink(Link& link) {
  if (link.socket == nullptr) return;
  auto wire = EncodeMessage(next_request_id_++,
                            transport::CloseSession{link.session_id, link.capabilities.owner});
  if (wire.ok()) (void)link.socket->Send(*wire);  // fire and forget; idle expiry is the backstop
  link.socket.reset();
}

ChainSession::~ChainSession() {
  for (Link& link : links_) CloseLink(link);
  for (auto& [span, replica] : replicas_) CloseLink(replica.link);
}

std::chrono::milliseconds StepTimeout(const ChainOptions& options, double seconds_per_token,
                                      int64_t n_tokens) {
  const double per_token =
      seconds_per_token >= 0 ? seconds_per_token
                             : std::chrono::duration<double>(options.initial_step_estimate).count();
  const auto cap = std::max(options.min_step_timeout, options.max_step_timeout);
  // In double first: factor x time x tokens can pass what milliseconds hold.
  const double expected_ms = 1e3 * options.step_timeout_factor * per_token *
                             static_cast<double>(std::max<int64_t>(n_tokens, 0));
  if (!(expected_ms < static_cast<double>(cap.count()))) return cap;  // NaN too
  return std::max(options.min_step_timeout,
                  std::chrono::milliseconds(static_cast<int64_t>(expected_ms)));
}

std::chrono::milliseconds ChainSession::StepTimeout(int64_t n_tokens) const {
  return router::StepTimeout(options_, seconds_per_token_, n_tokens);
}

ChainSession::StepResult ChainSession::RunStep(std::span<const ChainHop> hops,
                                               std::span<Link> links, int64_t start,
                                               int64_t n_tokens, const float* input, bool redo) {
  StepResult result;
  auto fail = [&](size_t i, const absl::Status& status) {
    result.failed_hop = static_cast<int>(i);
    result.status = Attribute(status, hops[i]);
  };
  const size_t n_values = static_cast<size_t>(n_embd_ * n_tokens);
  const uint64_t step_id = next_step_id_++;
  const std::vector<uint32_t> shape = {static_cast<uint32_t>(n_embd_),
                                       static_cast<uint32_t>(n_tokens)};
  auto encoded = transport::EncodeActivations(std::span<const float>(input, n_values), shape,
                                              options_.codec, &workspace_);
  if (!encoded.ok()) {
    result.status = encoded.status();
    return result;
  }
  transport::Step step;
  step.session_id = links[0].session_id;
  step.step_id = step_id;
  step.start_position = start;
  step.n_tokens = static_cast<int32_t>(n_tokens);
  step.tensor = encoded->desc;
  step.capability = links[0].capabilities.owner;
  // Hop i's layer names hop i + 1 alone, with the capability that lets hop i push to it.
  std::vector<transport::SealingHop> route;
  route.reserve(hops.size());
  for (size_t i = 0; i < hops.size(); ++i) {
    route.push_back(
        {{hops[i].address, links[i].session_id, options_.codec, links[i].capabilities.push},
         links[i].capabilities.route_key});
  }
  auto sealed = transport::SealRoute(route, {step_id, start, static_cast<int32_t>(n_tokens), redo});
  if (!sealed.ok()) {
    result.status = sealed.status();
    return result;
  }
  step.sealed_route = std::move(*sealed);
  auto wire = EncodeMessage(step_id, std::move(step), encoded->bytes);
  if (!wire.ok()) {
    result.status = wire.status();
    return result;
  }
  const auto sent_at = Clock::now();
  if (auto sent = links[0].socket->Send(*wire); !sent.ok()) {
    fail(0, sent);
    return result;
  }

  // Collect every hop's output: the copies of intermediate hops are the next hops' inputs.
  std::vector<std::vector<float>>& outputs = result.outputs;
  outputs.assign(hops.size(), {});
  result.arrived.assign(hops.size(), sent_at);
  size_t received = 0;
  // A hop that refuses its input (InvalidArgument: NaN, infinity) may have been fed a lie by the
  // hop before it: its error waits until that hop's copy is here and the earlier hops' outputs
  // are checked.
  std::optional<std::pair<size_t, absl::Status>> refused_input;
  const auto timeout = StepTimeout(n_tokens);
  const auto deadline = sent_at + timeout;
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
  while (received < hops.size() && !(refused_input && !outputs[refused_input->first - 1].empty())) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    auto readable = transport::PollReadable(sockets, std::max(left, std::chrono::milliseconds(0)));
    if (!readable.ok()) {
      result.status = readable.status();
      return result;
    }
    if (readable->empty()) {
      if (refused_input) {
        fail(refused_input->first, refused_input->second);
        return result;
      }
      // The first hop without an output is the one that stalled (the earlier ones answered).
      for (size_t i = 0; i < hops.size(); ++i) {
        if (outputs[i].empty()) {
          fail(i, absl::DeadlineExceededError(absl::StrCat("no output for step ", step_id,
                                                           " within ", timeout.count(), " ms")));
          return result;
        }
      }
    }
    for (size_t k : *readable) {
      if (k >= links.size()) {
        // A dropped connection: the peer died (TCP closed) or froze (heartbeats unanswered).
        // Even if this hop's output is here, its cache is gone for the next step: fail now.
        const size_t i = watched[k - links.size()];
        if (!links[i].socket->ConnectionDropped()) continue;
        fail(i,
             absl::UnavailableError(absl::StrCat(
                 "connection lost during step ", step_id, " (closed, or heartbeats unanswered for ",
                 transport::HeartbeatTimeout(options_.heartbeat_interval).count(), " ms)")));
        return result;
      }
      const size_t i = k;
      // This step's output of hop i (once), or an error about this step; anything else is a
      // stale step's or unrelated.
      auto ours = [&](const DecodedMessage& m) {
        if (auto* error = std::get_if<transport::ErrorReply>(&m.body)) {
          return !error->step_id.has_value() || *error->step_id == step_id;
        }
        auto* output = std::get_if<transport::StepOutput>(&m.body);
        return output != nullptr && output->step_id == step_id &&
               output->session_id == links[i].session_id && outputs[i].empty();
      };
      while (true) {
        auto reply = transport::TakeReply(*links[i].socket, ours);
        if (!reply.ok() && i > 0 && !refused_input &&
            reply.status().code() == absl::StatusCode::kInvalidArgument) {
          refused_input.emplace(i, reply.status());
          break;
        }
        if (!reply.ok()) {
          fail(i, reply.status());
          return result;
        }
        if (!reply->has_value()) break;
        const DecodedMessage& decoded = **reply;
        const auto& output = std::get<transport::StepOutput>(decoded.body);
        if (output.n_tokens != n_tokens || output.start_position != start) {
          fail(i, absl::DataLossError("output for the wrong positions"));
          return result;
        }
        // The shape and codec asked for, checked before anything is inflated.
        auto values = transport::DecodeActivations(decoded, {options_.codec, shape}, &workspace_);
        if (!values.ok() || values->size() != n_values) {
          fail(i, absl::DataLossError(values.ok() ? "output of the wrong size"
                                                  : values.status().message()));
          return result;
        }
        outputs[i] = std::move(*values);
        result.arrived[i] = Clock::now();
        ++received;
      }
    }
  }
  CheckOutputs(hops, input, n_tokens, refused_input ? refused_input->first : hops.size(), result);
  if (result.status.ok() && refused_input) fail(refused_input->first, refused_input->second);
  return result;
}

absl::Status ChainSession::ReplaceHop(size_t i, FailoverEvent event) {
  const auto start = Clock::now();
  auto seconds_since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  const ChainHop failed = hops_[i];
  provider_->ReportFailure(failed);
  std::vector<float> history = std::move(links_[i].history);
  CloseLink(links_[i]);
  absl::Status last_error = absl::UnavailableError("no replacement tried");
  for (int attempt = 0; attempt < options_.max_failovers_per_step; ++attempt) {
    ++event.attempts;
    auto phase = Clock::now();
    SWARM_ASSIGN_OR_RETURN(std::vector<ChainHop> replacement,
                           provider_->Replace(failed.first_block, failed.last_block));
    event.route_seconds += seconds_since(phase);
    if (replacement.empty()) return absl::InternalError("the provider offered no hops");
    std::vector<Link> links(replacement.size());
    bool opened = true;
    phase = Clock::now();
    for (size_t j = 0; j < replacement.size() && opened; ++j) {
      last_error = OpenLink(replacement[j], i + j, links[j]);
      if (!last_error.ok()) {
        provider_->ReportFailure(replacement[j]);
        opened = false;
      }
    }
    event.open_seconds += seconds_since(phase);
    if (!opened) {
      for (Link& link : links) CloseLink(link);
      continue;
    }
    // Rebuild the new peers' KV caches: the failed hop's inputs, as one batch.
    phase = Clock::now();
    if (position_ > 0) {
      StepResult replay = RunStep(replacement, links, 0, position_, history.data());
      last_error = replay.status;
      event.replay_seconds += seconds_since(phase);
      if (!last_error.ok()) {
        if (replay.lied) BanLiar(replacement[replay.failed_hop]);
        if (replay.failed_hop >= 0) provider_->ReportFailure(replacement[replay.failed_hop]);
        for (Link& link : links) CloseLink(link);
        continue;
      }
      links[0].history = history;
      for (size_t j = 1; j < links.size(); ++j) links[j].history = std::move(replay.outputs[j - 1]);
    }
    hops_.erase(hops_.begin() + i);
    hops_.insert(hops_.begin() + i, replacement.begin(), replacement.end());
    links_.erase(links_.begin() + i);
    links_.insert(links_.begin() + i, std::make_move_iterator(links.begin()),
                  std::make_move_iterator(links.end()));
    timings_.erase(timings_.begin() + i);
    timings_.insert(timings_.begin() + i, replacement.size(), HopTiming{});
    ++failovers_;
    failover_seconds_ += seconds_since(start);
    event.replayed_positions = position_;
    failover_events_.push_back(std::move(event));
    return absl::OkStatus();
  }
  return absl::UnavailableError(
      absl::StrCat("could not replace ", Describe(failed), ": ", last_error.message()));
}

absl::Status ChainSession::Forward(int64_t n_tokens, const float* hidden_in, float* hidden_out) {
  failed_hop_ = -1;
  if (n_tokens <= 0 || position_ + n_tokens > options_.max_length) {
    return absl::OutOfRangeError(absl::StrCat("positions up to ", position_ + n_tokens,
                                              " exceed the session length ", options_.max_length));
  }
  const size_t n_values = static_cast<size_t>(n_embd_ * n_tokens);
  for (int attempt = 0;; ++attempt) {
    const auto start = Clock::now();
    // A retry redoes positions the hops before the failed one already hold.
    StepResult step = RunStep(hops_, links_, position_, n_tokens, hidden_in, attempt > 0);
    if (step.status.ok() && policy_.enabled()) {
      SWARM_ASSIGN_OR_RETURN(const Verdict verdict, VerifyStep(n_tokens, hidden_in, step));
      if (verdict == Verdict::kRerun) {
        if (attempt >= options_.max_failovers_per_step) {
          return absl::DataLossError("peers kept disagreeing with their replicas");
        }
        continue;  // a liar was replaced: the whole step runs again from its start position
      }
    }
    if (step.status.ok()) {
      const std::vector<std::vector<float>>& outputs = step.outputs;
      const std::vector<Clock::time_point>& arrived = step.arrived;
      links_[0].history.insert(links_[0].history.end(), hidden_in, hidden_in + n_values);
      for (size_t i = 1; i < hops_.size(); ++i) {
        links_[i].history.insert(links_[i].history.end(), outputs[i - 1].begin(),
                                 outputs[i - 1].end());
      }
      // Each hop gets what it added to the latest arrival so far: a last hop's output can reach
      // the client before the previous hop's copy (which that hop sends after its push), and then
      // it added nothing. The hops' times add up to the step's.
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
          std::chrono::duration<double>(arrived.back() - start).count() / n_tokens;
      seconds_per_token_ =
          seconds_per_token_ < 0 ? per_token : 0.8 * seconds_per_token_ + 0.2 * per_token;
      std::copy(outputs.back().begin(), outputs.back().end(), hidden_out);
      position_ += n_tokens;
      if (provider_ != nullptr) provider_->StepDone();
      return absl::OkStatus();
    }
    failed_hop_ = step.failed_hop;
    if (step.lied) BanLiar(hops_[step.failed_hop]);
    if (provider_ == nullptr || step.failed_hop < 0 || attempt >= options_.max_failovers_per_step) {
      return step.status;
    }
    // Replace the failed hop, then run the whole step again: the hops before it redo the same
    // positions (a peer truncates its cache to a step's start), which with deterministic kernels
    // gives the same outputs.
    FailoverEvent event;
    event.hop = step.failed_hop;
    event.reason = std::string(step.status.message());
    event.detect_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    SWARM_RETURN_IF_ERROR(ReplaceHop(static_cast<size_t>(step.failed_hop), std::move(event)));
  }
}

}  // namespace swarm::router
