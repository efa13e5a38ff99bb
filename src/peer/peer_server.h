// The serving loop of a peer: a ZeroMQ ROUTER that answers Info/Ping, opens and closes sessions,
// and runs steps through the peer's blocks (a ServingStack: a BlockStack on one backend, or a
// MultiGpuStack over several). Steps of different sessions that arrive together run as one batch
// (weights read once per batch). Each step's output is pushed straight to the next hop of its
// route (peer to peer) and a copy goes back to the client that opened the session.
// Everything received is validated; a bad message gets an error reply and the peer keeps serving.
// Each client is held to quotas (peer::Admission: sessions, KV positions and queued steps per
// connection and per identity) and its route may name only tcp:// hops; what breaks a limit is
// refused with an error naming it while everyone else is served.
// A session belongs to the client that opened it (peer/session_access.h): a step, close or opening
// without the right capability is refused with PERMISSION_DENIED and changes nothing.
// Single-threaded: Run() owns every socket; Stop() may be called from any thread or a signal.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "peer/admission.h"
#include "peer/session_access.h"
#include "peer/session_table.h"
#include "shard/serving_stack.h"
#include "transport/protocol.h"
#include "transport/zmq_socket.h"

namespace swarm::peer {

struct PeerServerOptions {
  std::string listen = "tcp://127.0.0.1:0";
  std::string peer_id;
  std::string model_id;
  SessionLimits limits;
  int64_t max_batch_tokens = 2048;  // tokens of one batched forward
  // The ROUTER (limits, CurveZMQ). Create() lowers its max_message_bytes to what the model's
  // shapes allow (MaxMessageBytes).
  transport::ServerOptions server;
  // DEALERs to the next hops. A push never waits (send_timeout is ignored): a next hop whose
  // queue is full fails that step, it does not stall the loop.
  transport::ClientOptions downstream;
  // Measured throughput, reported by Info (filled in by whoever measured it).
  double forward_tokens_per_sec = 0;
  double inference_steps_per_sec = 0;
  // Echoed to a DialBackProbe: the secret the peer's reachability check waits for (0: none).
  uint64_t dial_back_nonce = 0;
};

struct PeerServerStats {
  int64_t steps = 0;
  int64_t tokens = 0;
  int64_t batches = 0;
  double compute_seconds = 0;
  int64_t errors_sent = 0;
};

class PeerServer {
 public:
  static absl::StatusOr<std::unique_ptr<PeerServer>> Create(zmq::context_t& context,
                                                            shard::ServingStack& stack,
                                                            const PeerServerOptions& options);
  // With a ROUTER bound beforehand (options.listen unused): a peer can announce its address
  // while it is still loading its blocks. Messages that arrive meanwhile wait in the socket.
  static std::unique_ptr<PeerServer> Create(zmq::context_t& context, shard::ServingStack& stack,
                                            const PeerServerOptions& options,
                                            std::unique_ptr<transport::RouterServer> router);
  ~PeerServer();

  const std::string& endpoint() const { return router_->endpoint(); }
  // Serves until Stop(). Returns an error only when the socket itself fails. On Stop() every
  // open session's client is told (Unavailable, no step id) so it fails over at once instead
  // of waiting for a deadline.
  absl::Status Run();
  void Stop() { stop_.store(true); }
  // Only after Run() returned (the loop thread writes them).
  const PeerServerStats& stats() const { return stats_; }
  // Readable from any thread while Run() serves (for announcements).
  int64_t free_cache_tokens() const { return free_cache_tokens_.load(); }
  int64_t active_sessions() const { return active_sessions_.load(); }

 private:
  struct PendingStep {
    transport::Step step;
    AuthorizedStep access;     // who sent it, and this hop's layer of its route
    std::vector<float> input;  // [n_embd, n_tokens]
    Admission::Ticket quota;   // the session owner's share of the queue, until the step runs
  };

  PeerServer(zmq::context_t& context, shard::ServingStack& stack, const PeerServerOptions& options,
             std::unique_ptr<transport::RouterServer> router);

  void Handle(const std::string& routing_id, const std::string& identity,
              const absl::StatusOr<transport::WireMessage>& message);
  void HandleStep(const std::string& routing_id, uint64_t request_id,
                  transport::DecodedMessage& message);
  void RunBatch();
  void Reply(const std::string& routing_id, uint64_t request_id, transport::Message body,
             std::optional<transport::Payload> tensor = std::nullopt);
  void ReplyError(const std::string& routing_id, uint64_t request_id, const absl::Status& status,
                  std::optional<transport::SessionId> session = std::nullopt,
                  std::optional<uint64_t> step = std::nullopt);
  absl::Status PushDownstream(const transport::Hop& next, transport::Step step,
                              const transport::Payload& tensor);
  absl::StatusOr<transport::DealerClient*> Downstream(const std::string& address);
  void DrainDownstream();
  void CloseSessionsForShutdown();

  zmq::context_t& context_;
  shard::ServingStack& stack_;
  PeerServerOptions options_;
  std::unique_ptr<transport::RouterServer> router_;
  Admission admission_;  // before what holds its tickets: it outlives them
  SessionTable sessions_;
  absl::flat_hash_map<std::string, std::unique_ptr<transport::DealerClient>> downstream_;
  std::vector<PendingStep> pending_;
  transport::CodecWorkspace codec_workspace_;
  PeerServerStats stats_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> free_cache_tokens_{0};
  std::atomic<int64_t> active_sessions_{0};
};

}  // namespace swarm::peer
