#include "router/chain_session.h"

#include <algorithm>
#include <variant>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "transport/request_reply.h"
#include "transport/route_seal.h"

namespace swarm::router {
namespace {

using Clock = std::chrono::steady_clock;
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

}  // namespace swarm::router
