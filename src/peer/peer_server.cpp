#include "peer/peer_server.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "peer/batch_scheduler.h"
#include "peer/session_access.h"

namespace swarm::peer {

using namespace swarm::transport;  // the wire this file speaks
namespace {

bool AllFinite(const std::vector<float>& x) {
  return std::all_of(x.begin(), x.end(), [](float v) { return std::isfinite(v); });
}

// What a queued step holds in memory: its decoded input and its sealed route.
int64_t QueuedBytes(const Step& step, int64_t n_embd) {
  return static_cast<int64_t>(sizeof(float)) * n_embd * step.n_tokens +
         static_cast<int64_t>(step.sealed_route.size());
}

constexpr std::chrono::milliseconds kIdlePoll{50};
constexpr std::chrono::milliseconds kExpirySweep{1000};
// How long the goodbye messages to clients may take to leave when the peer stops.
constexpr std::chrono::milliseconds kShutdownLinger{200};

}  // namespace

absl::StatusOr<std::unique_ptr<PeerServer>> PeerServer::Create(zmq::context_t& context,
                                                               shard::ServingStack& stack,
                                                               const PeerServerOptions& options) {
  ServerOptions server = options.server;
  server.max_message_bytes =
      std::min(server.max_message_bytes,
               MaxMessageBytes(stack.config().n_embd, options.limits.max_session_length));
  SWARM_ASSIGN_OR_RETURN(auto router, RouterServer::Bind(context, options.listen, server));
  return std::unique_ptr<PeerServer>(new PeerServer(context, stack, options, std::move(router)));
}

std::unique_ptr<PeerServer> PeerServer::Create(zmq::context_t& context, shard::ServingStack& stack,
                                               const PeerServerOptions& options,
                                               std::unique_ptr<RouterServer> router) {
  return std::unique_ptr<PeerServer>(new PeerServer(context, stack, options, std::move(router)));
}

PeerServer::PeerServer(zmq::context_t& context, shard::ServingStack& stack,
                       const PeerServerOptions& options, std::unique_ptr<RouterServer> router)
    : context_(context),
      stack_(stack),
      options_(options),
      router_(std::move(router)),
      admission_(options.limits.quotas, options.limits.cache_tokens,
                 options.limits.max_session_length),
      sessions_(stack, options.limits) {
  options_.downstream.send_timeout = std::chrono::milliseconds(0);
  free_cache_tokens_.store(sessions_.free_cache_tokens());
}

PeerServer::~PeerServer() = default;

absl::Status PeerServer::Run() {
  auto last_expiry = std::chrono::steady_clock::now();
  // Often enough that an unstarted session ends close to its timeout.
  const auto sweep = std::min<std::chrono::milliseconds>(
      kExpirySweep, std::max<std::chrono::milliseconds>(options_.limits.unstarted_timeout / 4,
                                                        std::chrono::milliseconds(10)));
  while (!stop_.load()) {
    // With work queued, only drain what has already arrived, then compute: steps that arrive
    // during a batch are batched together next time.
    const auto timeout = pending_.empty() ? kIdlePoll : std::chrono::milliseconds(0);
    const zmq::socket_ref sockets[] = {router_->socket()};
    auto readable = PollReadable(sockets, timeout);
    if (!readable.ok()) {
      if (stop_.load()) break;
      return readable.status();
    }
    // A message arrived, most likely a step: the backend's threads start waking while it is read.
    if (!readable->empty()) stack_.Unpark();
    while (true) {
      auto received = router_->Receive(std::chrono::milliseconds(0));
      if (!received.ok()) break;  // DeadlineExceeded: nothing more queued
      Handle(received->routing_id,
             IdentityOf(received->user_id, received->peer_address, received->routing_id),
             received->message);
    }
    DrainDownstream();
    if (!pending_.empty()) {
      RunBatch();
      // Nothing left to compute: the next step comes from the network, so the backend's threads
      // sleep now rather than spin while the next peer of the chain computes.
      if (pending_.empty()) stack_.Park();
    }
    free_cache_tokens_.store(sessions_.free_cache_tokens());
    active_sessions_.store(static_cast<int64_t>(sessions_.size()));
    const auto now = std::chrono::steady_clock::now();
    if (now - last_expiry > sweep) {
      sessions_.ExpireIdle(now);  // their queued steps are skipped when their batch comes
      last_expiry = now;
    }
  }
  CloseSessionsForShutdown();
  return absl::OkStatus();
}

void PeerServer::CloseSessionsForShutdown() {
  if (sessions_.size() == 0) return;
  const absl::Status leaving = absl::UnavailableError("peer is shutting down");
  pending_.clear();
  for (const auto& session : sessions_.CloseAll()) {
    ReplyError(session->owner, 0, leaving, session->id);
  }
  free_cache_tokens_.store(sessions_.free_cache_tokens());
  active_sessions_.store(0);
  // The socket otherwise closes with linger 0, which could drop the messages just queued.
  try {
    router_->socket().set(zmq::sockopt::linger, static_cast<int>(kShutdownLinger.count()));
  } catch (const zmq::error_t&) {
  }
}

void PeerServer::Reply(const std::string& routing_id, uint64_t request_id, Message body,
                       std::optional<Payload> tensor) {
  auto wire = EncodeMessage(request_id, std::move(body), std::move(tensor));
  if (!wire.ok()) return;  // our own message broke a limit: nothing sensible to send
  // Unavailable (the client left) or ResourceExhausted (its queue is full): drop, as UDP would.
  (void)router_->Send(routing_id, *wire);
}

void PeerServer::ReplyError(const std::string& routing_id, uint64_t request_id,
                            const absl::Status& status, std::optional<SessionId> session,
                            std::optional<uint64_t> step) {
  ++stats_.errors_sent;
  Reply(routing_id, request_id, ErrorReply::FromStatus(status, session, step));
}

void PeerServer::Handle(const std::string& routing_id, const std::string& identity,
                        const absl::StatusOr<WireMessage>& message) {
  if (!message.ok()) {
    ReplyError(routing_id, 0, message.status());
    return;
  }
  auto decoded = DecodeMessage(*message);
  if (!decoded.ok()) {
    ReplyError(routing_id, PeekRequestId(message->header.bytes()).value_or(0), decoded.status());
    return;
  }
  const uint64_t request_id = decoded->request_id;
  const shard::ServingStack& stack = stack_;
  if (std::holds_alternative<InfoRequest>(decoded->body)) {
    InfoReply info;
    info.peer_id = options_.peer_id;
    info.model_id = options_.model_id;
    info.first_block = static_cast<uint32_t>(stack.first_block());
    info.last_block = static_cast<uint32_t>(stack.last_block());
    info.backend = stack.devices();
    // A long list of devices must not cost the answer (the field has a bounded length).
    if (info.backend.size() > kMaxShortTextBytes) {
      info.backend.resize(kMaxShortTextBytes - 3);
      info.backend += "...";
    }
    info.forward_tokens_per_sec = options_.forward_tokens_per_sec;
    info.inference_steps_per_sec = options_.inference_steps_per_sec;
    info.free_cache_tokens =
        static_cast<uint64_t>(std::max<int64_t>(0, sessions_.free_cache_tokens()));
    info.max_session_length = static_cast<uint32_t>(options_.limits.max_session_length);
    Reply(routing_id, request_id, info);
  } else if (auto* ping = std::get_if<Ping>(&decoded->body)) {
    Reply(routing_id, request_id, Pong{ping->nonce, ping->send_time_ns});
  } else if (std::holds_alternative<transport::DialBackProbe>(decoded->body)) {
    // A helper checking that this peer is reachable at its address, for the peer itself
    // (peer/reachability.h): only this process knows the nonce.
    Reply(routing_id, request_id, transport::DialBackProbeReply{options_.dial_back_nonce});
  } else if (auto* open = std::get_if<OpenSession>(&decoded->body)) {
    if (open->first_block < stack.first_block() || open->last_block > stack.last_block() ||
        open->first_block >= open->last_block) {
      ReplyError(routing_id, request_id,
                 absl::InvalidArgumentError(
                     absl::StrCat("blocks [", open->first_block, ", ", open->last_block,
                                  ") are not inside this peer's blocks [", stack.first_block(),
                                  ", ", stack.last_block(), ")")),
                 open->session_id);
      return;
    }
    const SessionRoute route{open->first_block, open->last_block, open->hop_index,
                             open->return_outputs, open->output_codec};
    Session* existing = sessions_.Find(open->session_id);
    if (existing != nullptr) {
      // Only its owner may open it again: anyone else would take its outputs.
      if (auto owner = AuthorizeOwner(*existing, open->capabilities.owner, "open"); !owner.ok()) {
        ReplyError(routing_id, request_id, owner, open->session_id);
        return;
      }
    }
    if (existing != nullptr && existing->cache->capacity() == open->max_length &&
        existing->route.first_block == open->first_block &&
        existing->route.last_block == open->last_block &&
        existing->capabilities == open->capabilities) {
      // The same opening again: the client resent it because the first reply was late or lost
      // (a reconnection drops what was queued). Same answer; the session is left as it is, and
      // answers go to the connection the client uses now (which holds its quota from now on).
      existing->owner = routing_id;
      existing->quota.Transfer({routing_id, identity});
      Reply(routing_id, request_id, OpenSessionReply{open->session_id, true, open->max_length, ""});
      return;
    }
    auto quota = admission_.AdmitSession({routing_id, identity}, open->max_length);
    if (!quota.ok()) {
      ReplyError(routing_id, request_id, quota.status(), open->session_id);
      return;
    }
    auto session = sessions_.Open(open->session_id, routing_id, route, open->max_length,
                                  std::chrono::steady_clock::now());
    if (!session.ok()) {
      ReplyError(routing_id, request_id, session.status(), open->session_id);
      return;
    }
    (*session)->quota = std::move(*quota);
    (*session)->capabilities = open->capabilities;
    Reply(routing_id, request_id, OpenSessionReply{open->session_id, true, open->max_length, ""});
  } else if (auto* close = std::get_if<CloseSession>(&decoded->body)) {
    if (const Session* session = sessions_.Find(close->session_id); session != nullptr) {
      if (auto owner = AuthorizeOwner(*session, close->owner_capability, "close"); !owner.ok()) {
        ReplyError(routing_id, request_id, owner, close->session_id);
        return;
      }
    }
    // Steps still queued for it are dropped.
    std::erase_if(pending_,
                  [&](const PendingStep& p) { return p.step.session_id == close->session_id; });
    sessions_.Close(close->session_id);
    Reply(routing_id, request_id, CloseSessionReply{close->session_id});
  } else if (std::holds_alternative<Step>(decoded->body)) {
    HandleStep(routing_id, request_id, *decoded);
  } else {
    ReplyError(routing_id, request_id,
               absl::InvalidArgumentError(absl::StrCat("a peer does not accept ",
                                                       std::string(MessageName(decoded->body)))));
  }
}

void PeerServer::HandleStep(const std::string& routing_id, uint64_t request_id,
                            DecodedMessage& message) {
  Step& step = std::get<Step>(message.body);
  Session* session = sessions_.Find(step.session_id);
  if (session == nullptr) {
    ReplyError(routing_id, request_id,
               absl::NotFoundError(absl::StrCat("no session ", step.session_id.ToString(),
                                                " (never opened, closed or expired)")),
               step.session_id, step.step_id);
    return;
  }
  // Whoever may not send this step hears so, and nothing else happens: its client is not told (the
  // sender could otherwise fail the client's step by naming its id).
  auto access = AuthorizeStep(*session, step);
  if (!access.ok()) {
    ReplyError(routing_id, request_id, access.status(), step.session_id, step.step_id);
    return;
  }
  // From here on errors go to the session's client, who can act on them, not to the upstream
  // peer that pushed the step.
  const std::string& client = session->owner;
  const int64_t n_embd = stack_.config().n_embd;
  if (step.tensor.shape.size() != 2 || step.tensor.shape[0] != n_embd ||
      step.tensor.shape[1] != static_cast<uint32_t>(step.n_tokens)) {
    ReplyError(client, step.step_id,
               absl::InvalidArgumentError(absl::StrCat("step tensor must be [", n_embd, ", ",
                                                       step.n_tokens, "] f32 activations")),
               step.session_id, step.step_id);
    return;
  }
  if (step.start_position + step.n_tokens > session->cache->capacity()) {
    ReplyError(client, step.step_id,
               absl::OutOfRangeError(absl::StrCat(
                   "positions [", step.start_position, ", ", step.start_position + step.n_tokens,
                   ") exceed the session's max_length ", session->cache->capacity())),
               step.session_id, step.step_id);
    return;
  }
  // The next hop must be one a peer should reach: checked before any work is done for it.
  if (access->layer && access->layer->next) {
    if (absl::Status allowed = ValidatePushEndpoint(access->layer->next->address); !allowed.ok()) {
      ReplyError(client, step.step_id,
                 absl::InvalidArgumentError(absl::StrCat("next hop: ", allowed.message())),
                 step.session_id, step.step_id);
      return;
    }
  }
  // Charged to the session's owner by what the step will take decoded, before it is decoded:
  // a compressed frame costs what it inflates to.
  auto quota = admission_.AdmitStep(session->quota.holder(), QueuedBytes(step, n_embd));
  if (!quota.ok()) {
    ReplyError(client, step.step_id, quota.status(), step.session_id, step.step_id);
    return;
  }
  auto input = DecodeActivations(message, &codec_workspace_);
  if (!input.ok()) {
    ReplyError(client, step.step_id, input.status(), step.session_id, step.step_id);
    return;
  }
  if (!AllFinite(*input)) {
    ReplyError(client, step.step_id,
               absl::InvalidArgumentError("step activations hold NaN or infinity"), step.session_id,
               step.step_id);
    return;
  }
  session->last_used = std::chrono::steady_clock::now();
  session->started = true;
  NoteAccepted(*session, step, *access);
  pending_.push_back(
      PendingStep{std::move(step), std::move(*access), std::move(*input), std::move(*quota)});
}

void PeerServer::RunBatch() {
  std::vector<QueuedStep> queue;
  queue.reserve(pending_.size());
  for (const PendingStep& p : pending_) queue.push_back({p.step.session_id, p.step.n_tokens});
  const std::vector<size_t> chosen = ChooseBatch(queue, options_.max_batch_tokens);
  std::vector<PendingStep> batch;
  std::vector<PendingStep> later;
  for (size_t i = 0, next = 0; i < pending_.size(); ++i) {
    if (next < chosen.size() && chosen[next] == i) {
      batch.push_back(std::move(pending_[i]));
      ++next;
    } else {
      later.push_back(std::move(pending_[i]));
    }
  }
  pending_ = std::move(later);

  const int64_t n_embd = stack_.config().n_embd;
  // Validate positions now: earlier steps of the same session have run by this point.
  std::vector<PendingStep*> runnable;
  std::vector<Session*> sessions;  // of runnable[i]; none ends before the batch is done
  std::vector<StepBlocks> blocks;
  for (PendingStep& p : batch) {
    Session* session = sessions_.Find(p.step.session_id);
    if (session == nullptr) continue;  // closed meanwhile
    const int64_t length = session->cache->length();
    if (auto position = CheckStepPosition(p.step, p.access, length); !position.ok()) {
      ReplyError(session->owner, p.step.step_id, position, p.step.session_id, p.step.step_id);
      continue;
    }
    // A step that starts earlier redoes positions (a retried step): forget what follows.
    if (p.step.start_position < length) (void)session->cache->Truncate(p.step.start_position);
    runnable.push_back(&p);
    sessions.push_back(session);
    blocks.push_back({session->route.first_block, session->route.last_block});
  }

  // Sessions using the same blocks run as one forward.
  for (const ForwardGroup& group : GroupByBlocks(blocks)) {
    std::vector<shard::SequenceStep> steps;
    std::vector<float> input;
    for (size_t i : group.steps) {
      const PendingStep& p = *runnable[i];
      steps.push_back({sessions[i]->cache.get(), p.step.n_tokens});
      input.insert(input.end(), p.input.begin(), p.input.end());
    }
    std::vector<float> output(input.size());
    const auto start = std::chrono::steady_clock::now();
    const absl::Status status =
        stack_.Forward(steps, group.first_block, group.last_block, input.data(), output.data());
    stats_.compute_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ++stats_.batches;

    size_t offset = 0;
    for (size_t i : group.steps) {
      const PendingStep& p = *runnable[i];
      const Session* session = sessions[i];
      const SessionRoute& route = session->route;
      const size_t n = static_cast<size_t>(p.step.n_tokens * n_embd);
      if (!status.ok()) {
        ReplyError(session->owner, p.step.step_id, status, p.step.session_id, p.step.step_id);
        continue;
      }
      ++stats_.steps;
      stats_.tokens += p.step.n_tokens;
      std::span<const float> out(output.data() + offset, n);
      offset += n;
      const std::vector<uint32_t> shape = {static_cast<uint32_t>(n_embd),
                                           static_cast<uint32_t>(p.step.n_tokens)};
      // Push to the next hop first: it is on the critical path; the client's copy is not.
      const Hop* next_hop =
          p.access.layer && p.access.layer->next ? &*p.access.layer->next : nullptr;
      if (next_hop != nullptr) {
        const Hop& next = *next_hop;
        auto encoded = EncodeActivations(out, shape, next.codec, &codec_workspace_);
        absl::Status pushed = encoded.ok() ? absl::OkStatus() : encoded.status();
        if (pushed.ok()) {
          Step forwarded;
          forwarded.session_id = next.session_id;
          forwarded.step_id = p.step.step_id;
          forwarded.start_position = p.step.start_position;
          forwarded.n_tokens = p.step.n_tokens;
          forwarded.tensor = encoded->desc;
          forwarded.capability = next.push_capability;
          forwarded.sealed_route = p.access.layer->sealed_next;
          pushed = PushDownstream(next, std::move(forwarded), encoded->bytes);
        }
        if (!pushed.ok()) {
          ReplyError(session->owner, p.step.step_id,
                     absl::UnavailableError(absl::StrCat("cannot push to the next hop ",
                                                         next.address, ": ", pushed.message())),
                     p.step.session_id, p.step.step_id);
        }
      }
      if (route.return_outputs || next_hop == nullptr) {
        auto encoded = EncodeActivations(out, shape, route.output_codec, &codec_workspace_);
        if (!encoded.ok()) {
          ReplyError(session->owner, p.step.step_id, encoded.status(), p.step.session_id,
                     p.step.step_id);
          continue;
        }
        StepOutput copy;
        copy.session_id = p.step.session_id;
        copy.step_id = p.step.step_id;
        copy.start_position = p.step.start_position;
        copy.n_tokens = p.step.n_tokens;
        copy.hop_index = route.hop_index;
        copy.first_block = route.first_block;
        copy.last_block = route.last_block;
        copy.tensor = encoded->desc;
        Reply(session->owner, p.step.step_id, std::move(copy), encoded->bytes);
      }
    }
  }
}

absl::StatusOr<DealerClient*> PeerServer::Downstream(const std::string& address) {
  auto it = downstream_.find(address);
  if (it != downstream_.end()) return it->second.get();
  if (downstream_.size() >= 256) downstream_.clear();  // bound the connections a route can make
  SWARM_ASSIGN_OR_RETURN(auto client,
                         DealerClient::Connect(context_, address, options_.downstream));
  DealerClient* raw = client.get();
  downstream_.emplace(address, std::move(client));
  return raw;
}

absl::Status PeerServer::PushDownstream(const Hop& next, Step step, const Payload& tensor) {
  SWARM_ASSIGN_OR_RETURN(DealerClient * client, Downstream(next.address));
  SWARM_ASSIGN_OR_RETURN(auto wire, EncodeMessage(step.step_id, std::move(step), tensor));
  return client->Send(wire);
}

void PeerServer::DrainDownstream() {
  // A downstream peer answers a pushed step only when it could not read it; the session's client
  // hears about failures directly, so these replies are dropped.
  for (auto& [address, client] : downstream_) {
    while (client->Receive(std::chrono::milliseconds(0)).ok()) {
    }
  }
}

}  // namespace swarm::peer
