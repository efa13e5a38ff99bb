#include "router/chain_session.h"

#include <atomic>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace swarm::router {
namespace {

using Clock = std::chrono::steady_clock;
using transport::DecodedMessage;
using transport::DecodeMessage;
using transport::EncodeMessage;

transport::SessionId RandomSessionId() {
  std::random_device device;
  auto draw = [&] { return (static_cast<uint64_t>(device()) << 32) | device(); };
  return {draw(), draw()};
}

std::string Describe(const ChainHop& hop) {
  return absl::StrCat("peer ", hop.address, " (blocks ", hop.first_block, "..", hop.last_block,
                      ")");
}

// The status with the hop named first, same code.
absl::Status Attribute(const absl::Status& status, const ChainHop& hop) {
  return absl::Status(status.code(), absl::StrCat(Describe(hop), ": ", status.message()));
}

// Waits for the reply to `request_id` on one socket, skipping anything else.
absl::StatusOr<DecodedMessage> AwaitReply(transport::DealerClient& socket, uint64_t request_id,
                                          Clock::time_point deadline) {
  while (true) {
    SWARM_ASSIGN_OR_RETURN(auto wire, socket.ReceiveUntil(deadline));
    auto decoded = DecodeMessage(wire);
    if (!decoded.ok()) return decoded.status();
    if (decoded->request_id != request_id) continue;  // a late reply to something earlier
    if (auto* error = std::get_if<transport::ErrorReply>(&decoded->body)) {
      return error->ToStatus();
    }
    return decoded;
  }
}

// Drains a monitor's events: true when one says the connection was dropped.
bool ConnectionDropped(zmq::socket_t& monitor) {
  bool dropped = false;
  try {
    while (true) {
      zmq::message_t event;
      if (!monitor.recv(event, zmq::recv_flags::dontwait)) break;
      uint16_t id = 0;
      if (event.size() >= sizeof(id)) std::memcpy(&id, event.data(), sizeof(id));
      dropped |= (id & ZMQ_EVENT_DISCONNECTED) != 0;
      while (monitor.get(zmq::sockopt::rcvmore)) {
        zmq::message_t rest;
        if (!monitor.recv(rest, zmq::recv_flags::dontwait)) break;
      }
    }
  } catch (const zmq::error_t&) {
    // A monitor that cannot be read says nothing; the step's deadline still applies.
  }
  return dropped;
}

// Sends `wire` and waits until `deadline` for the reply to `request_id`, sending it again every
// `resend_every` and whenever `monitor` (if set) reports the connection dropped. The request must
// be one the peer answers the same way when it comes twice.
absl::StatusOr<DecodedMessage> SendUntilAnswered(transport::DealerClient& socket,
                                                 zmq::socket_t& monitor,
                                                 const transport::WireMessage& wire,
                                                 uint64_t request_id, Clock::time_point deadline,
                                                 std::chrono::milliseconds resend_every) {
  SWARM_RETURN_IF_ERROR(socket.Send(wire));
  auto next_send = Clock::now() + resend_every;
  std::vector<zmq::socket_ref> sockets = {socket.socket()};
  if (monitor) sockets.push_back(monitor);
  while (true) {
    const auto now = Clock::now();
    if (now >= deadline) return absl::DeadlineExceededError("no reply in time");
    const auto wait =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::min(deadline, next_send) - now);
    SWARM_ASSIGN_OR_RETURN(
        auto readable,
        transport::PollReadable(sockets, std::max(wait, std::chrono::milliseconds(1))));
    bool resend = Clock::now() >= next_send;
    for (size_t k : readable) {
      if (k == 1) {
        resend |= ConnectionDropped(monitor);
        continue;
      }
      while (true) {
        auto message = socket.Receive(std::chrono::milliseconds(0));
        if (!message.ok()) {
          if (absl::IsDeadlineExceeded(message.status())) break;
          return message.status();
        }
        auto decoded = DecodeMessage(*message);
        if (!decoded.ok()) return decoded.status();
        if (decoded->request_id != request_id) continue;  // a late reply to something earlier
        if (auto* error = std::get_if<transport::ErrorReply>(&decoded->body)) {
          return error->ToStatus();
        }
        return decoded;
      }
    }
    if (resend) {
      SWARM_RETURN_IF_ERROR(socket.Send(wire));
      next_send = Clock::now() + resend_every;
    }
  }
}

}  // namespace

absl::StatusOr<transport::InfoReply> QueryInfo(zmq::context_t& context, const std::string& address,
                                               std::chrono::milliseconds timeout,
                                               const transport::ClientOptions& socket_options) {
  SWARM_ASSIGN_OR_RETURN(auto socket,
                         transport::DealerClient::Connect(context, address, socket_options));
  const uint64_t request_id = 1;
  SWARM_ASSIGN_OR_RETURN(auto wire, EncodeMessage(request_id, transport::InfoRequest{}));
  SWARM_RETURN_IF_ERROR(socket->Send(wire));
  auto reply = AwaitReply(*socket, request_id, Clock::now() + timeout);
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
  const bool watch = options_.heartbeat_interval.count() > 0;
  if (watch && socket_options.heartbeat_interval.count() == 0) {
    socket_options.heartbeat_interval = options_.heartbeat_interval;
  }
  auto socket = transport::DealerClient::Connect(context_, where.address, socket_options);
  if (!socket.ok()) return Attribute(socket.status(), where);
  link.socket = std::move(*socket);
  if (watch) {
    static std::atomic<uint64_t> monitors{0};
    const std::string endpoint = absl::StrCat("inproc://swarm-chain-monitor-", ++monitors);
    if (zmq_socket_monitor(link.socket->socket().handle(), endpoint.c_str(),
                           ZMQ_EVENT_DISCONNECTED) != 0) {
      return Attribute(
          absl::InternalError(absl::StrCat("socket monitor: ", zmq_strerror(zmq_errno()))), where);
    }
    try {
      link.monitor = zmq::socket_t(context_, zmq::socket_type::pair);
      link.monitor.set(zmq::sockopt::linger, 0);
      link.monitor.connect(endpoint);
    } catch (const zmq::error_t& e) {
      return Attribute(absl::InternalError(absl::StrCat("socket monitor: ", e.what())), where);
    }
  }
  link.session_id = RandomSessionId();
  link.history.clear();
  transport::OpenSession open;
  open.session_id = link.session_id;
  open.first_block = where.first_block;
  open.last_block = where.last_block;
  open.max_length = static_cast<uint32_t>(options_.max_length);
  open.output_codec = options_.codec;
  open.hop_index = static_cast<uint32_t>(hop_index);
  open.return_outputs = true;
  const uint64_t request_id = next_request_id_++;
  auto wire = EncodeMessage(request_id, open);
  if (!wire.ok()) return wire.status();
  auto reply =
      SendUntilAnswered(*link.socket, link.monitor, *wire, request_id,
                        Clock::now() + options_.open_timeout, options_.open_resend_interval);
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
  auto wire = EncodeMessage(next_request_id_++, transport::CloseSession{link.session_id});
  if (wire.ok()) (void)link.socket->Send(*wire);  // fire and forget; idle expiry is the backstop
  if (link.monitor) {
    (void)zmq_socket_monitor(link.socket->socket().handle(), nullptr, 0);
    link.monitor.close();
  }
  link.socket.reset();
}

ChainSession::~ChainSession() {
  for (Link& link : links_) CloseLink(link);
}

std::chrono::milliseconds ChainSession::StepTimeout(int64_t n_tokens) const {
  const double per_token =
      seconds_per_token_ >= 0
          ? seconds_per_token_
          : std::chrono::duration<double>(options_.initial_step_estimate).count();
  const auto expected = std::chrono::milliseconds(
      static_cast<int64_t>(1e3 * options_.step_timeout_factor * per_token * n_tokens));
  return std::max(options_.min_step_timeout, expected);
}

absl::Status ChainSession::RunStep(std::span<const ChainHop> hops, std::span<Link> links,
                                   int64_t start, int64_t n_tokens, const float* input,
                                   std::vector<std::vector<float>>& outputs,
                                   std::vector<Clock::time_point>& arrived, int* failed) {
  *failed = -1;
  const size_t n_values = static_cast<size_t>(n_embd_ * n_tokens);
  const uint64_t step_id = next_step_id_++;
  const std::vector<uint32_t> shape = {static_cast<uint32_t>(n_embd_),
                                       static_cast<uint32_t>(n_tokens)};
  SWARM_ASSIGN_OR_RETURN(
      auto encoded, transport::EncodeActivations(std::span<const float>(input, n_values), shape,
                                                 options_.codec, &workspace_));
  transport::Step step;
  step.session_id = links[0].session_id;
  step.step_id = step_id;
  step.start_position = start;
  step.n_tokens = static_cast<int32_t>(n_tokens);
  step.tensor = encoded.desc;
  for (size_t i = 1; i < hops.size(); ++i) {
    step.route.push_back({hops[i].address, links[i].session_id, options_.codec});
  }
  SWARM_ASSIGN_OR_RETURN(auto wire, EncodeMessage(step_id, std::move(step), encoded.bytes));
  const auto sent_at = Clock::now();
  if (auto sent = links[0].socket->Send(wire); !sent.ok()) {
    *failed = 0;
    return Attribute(sent, hops[0]);
  }

  // Collect every hop's output: the copies of intermediate hops are the next hops' inputs.
  outputs.assign(hops.size(), {});
  arrived.assign(hops.size(), sent_at);
  size_t received = 0;
  const auto timeout = StepTimeout(n_tokens);
  const auto deadline = sent_at + timeout;
  // The hops' sockets, then the monitors of those that have one.
  std::vector<zmq::socket_ref> sockets;
  for (Link& link : links) sockets.push_back(link.socket->socket());
  std::vector<size_t> monitored;  // hop of sockets[links.size() + k]
  for (size_t i = 0; i < links.size(); ++i) {
    if (links[i].monitor) {
      sockets.push_back(links[i].monitor);
      monitored.push_back(i);
    }
  }
  while (received < hops.size()) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    auto readable = transport::PollReadable(sockets, std::max(left, std::chrono::milliseconds(0)));
    if (!readable.ok()) return readable.status();
    if (readable->empty()) {
      // The first hop without an output is the one that stalled (the earlier ones answered).
      for (size_t i = 0; i < hops.size(); ++i) {
        if (outputs[i].empty()) {
          *failed = static_cast<int>(i);
          return Attribute(absl::DeadlineExceededError(absl::StrCat(
                               "no output for step ", step_id, " within ", timeout.count(), " ms")),
                           hops[i]);
        }
      }
    }
    for (size_t k : *readable) {
      if (k >= links.size()) {
        // A dropped connection: the peer died (TCP closed) or froze (heartbeats unanswered).
        // Even if this hop's output is here, its cache is gone for the next step: fail now.
        const size_t i = monitored[k - links.size()];
        if (!ConnectionDropped(links[i].monitor)) continue;
        *failed = static_cast<int>(i);
        return Attribute(
            absl::UnavailableError(absl::StrCat(
                "connection lost during step ", step_id, " (closed, or heartbeats unanswered for ",
                transport::HeartbeatTimeout(options_.heartbeat_interval).count(), " ms)")),
            hops[i]);
      }
      const size_t i = k;
      while (true) {
        auto message = links[i].socket->Receive(std::chrono::milliseconds(0));
        if (!message.ok()) {
          if (absl::IsDeadlineExceeded(message.status())) break;
          *failed = static_cast<int>(i);
          return Attribute(message.status(), hops[i]);
        }
        auto decoded = DecodeMessage(*message);
        if (!decoded.ok()) {
          *failed = static_cast<int>(i);
          return Attribute(absl::DataLossError(decoded.status().message()), hops[i]);
        }
        if (auto* error = std::get_if<transport::ErrorReply>(&decoded->body)) {
          const bool ours = !error->step_id.has_value() || *error->step_id == step_id;
          if (!ours) continue;
          *failed = static_cast<int>(i);
          return Attribute(error->ToStatus(), hops[i]);
        }
        auto* output = std::get_if<transport::StepOutput>(&decoded->body);
        if (output == nullptr || output->step_id != step_id ||
            !(output->session_id == links[i].session_id) || !outputs[i].empty()) {
          continue;  // stale or unrelated
        }
        if (output->n_tokens != n_tokens || output->start_position != start) {
          *failed = static_cast<int>(i);
          return Attribute(absl::DataLossError("output for the wrong positions"), hops[i]);
        }
        auto values = transport::DecodeActivations(*decoded, &workspace_);
        if (!values.ok() || values->size() != n_values) {
          *failed = static_cast<int>(i);
          return Attribute(absl::DataLossError(values.ok() ? "output of the wrong size"
                                                           : values.status().message()),
                           hops[i]);
        }
        outputs[i] = std::move(*values);
        arrived[i] = Clock::now();
        ++received;
      }
    }
  }
  return absl::OkStatus();
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
      std::vector<std::vector<float>> outputs;
      std::vector<Clock::time_point> arrived;
      int failed_index = -1;
      last_error = RunStep(replacement, links, 0, position_, history.data(), outputs, arrived,
                           &failed_index);
      event.replay_seconds += seconds_since(phase);
      if (!last_error.ok()) {
        if (failed_index >= 0) provider_->ReportFailure(replacement[failed_index]);
        for (Link& link : links) CloseLink(link);
        continue;
      }
      links[0].history = history;
      for (size_t j = 1; j < links.size(); ++j) links[j].history = std::move(outputs[j - 1]);
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
  std::vector<std::vector<float>> outputs;
  std::vector<Clock::time_point> arrived;
  for (int attempt = 0;; ++attempt) {
    const auto start = Clock::now();
    int failed = -1;
    absl::Status status =
        RunStep(hops_, links_, position_, n_tokens, hidden_in, outputs, arrived, &failed);
    if (status.ok()) {
      links_[0].history.insert(links_[0].history.end(), hidden_in, hidden_in + n_values);
      for (size_t i = 1; i < hops_.size(); ++i) {
        links_[i].history.insert(links_[i].history.end(), outputs[i - 1].begin(),
                                 outputs[i - 1].end());
      }
      // Each hop gets what it added to the latest arrival so far: a last hop's output can reach
      // the client before the previous hop's copy (which that hop sends after its push), and then
      // it added nothing. The hops' times add up to the step's.
      auto previous = start;
      for (size_t i = 0; i < hops_.size(); ++i) {
        const auto latest = std::max(previous, arrived[i]);
        timings_[i].steps += 1;
        timings_[i].seconds += std::chrono::duration<double>(latest - previous).count();
        previous = latest;
      }
      const double per_token =
          std::chrono::duration<double>(arrived.back() - start).count() / n_tokens;
      seconds_per_token_ =
          seconds_per_token_ < 0 ? per_token : 0.8 * seconds_per_token_ + 0.2 * per_token;
      std::copy(outputs.back().begin(), outputs.back().end(), hidden_out);
      position_ += n_tokens;
      if (provider_ != nullptr) provider_->StepDone();
      return absl::OkStatus();
    }
    failed_hop_ = failed;
    if (provider_ == nullptr || failed < 0 || attempt >= options_.max_failovers_per_step) {
      return status;
    }
    // Replace the failed hop, then run the whole step again: the hops before it redo the same
    // positions (a peer truncates its cache to a step's start), which with deterministic kernels
    // gives the same outputs.
    FailoverEvent event;
    event.hop = failed;
    event.reason = std::string(status.message());
    event.detect_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    SWARM_RETURN_IF_ERROR(ReplaceHop(static_cast<size_t>(failed), std::move(event)));
  }
}

}  // namespace swarm::router
