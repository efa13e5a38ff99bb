// The swarm behind the CompletionEngine interface: each request gets its own route through the
// DHT's peers (router::SwarmHopProvider) and its own chain session with failover
// (router::ChainSession); this process holds only the client part of the model (embeddings,
// output norm, head, tokenizer). The engine keeps what its sessions measure of each peer's steps
// (router::PeerPerformance), so later requests route by measured speed. Describe() serves a view of
// the registry refreshed by a background thread. Owns the DHT client node; thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "absl/status/statusor.h"
#include "gateway/completion_engine.h"
#include "kernels/backend_factory.h"
#include "model/client_head.h"
#include "model/gguf.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "registry/dht_registry.h"
#include "router/ban_list.h"
#include "router/chain_session.h"
#include "router/peer_performance.h"
#include "router/swarm_hop_provider.h"
#include "shard/speculation.h"
#include "transport/swarm_secret.h"
#include "transport/zmq_socket.h"

namespace swarm::gateway {

struct SwarmEngineOptions {
  std::vector<std::string> initial_peers;
  std::string dht_bind = "0.0.0.0";
  kernels::BackendOptions backend;  // for the client head
  std::string codec = "f32";
  int32_t n_ctx = 0;     // 0: the model's training context
  std::string model_id;  // the id clients use; "" derives one from the GGUF
  double route_wait_s = 20;
  int64_t min_step_timeout_ms = 2000;
  int64_t max_step_timeout_ms = 300000;  // however long the prompt
  double refresh_interval_s = 2;
  // A private swarm: the DHT node is the swarm's own and every peer connection CurveZMQ.
  std::optional<transport::SwarmSecret> swarm_secret;
  double verify_share = 0.1;     // share of steps spot-checked on a replica (0: off)
  double verify_tolerance = -1;  // between backends; < 0: the built-in table
  // Speculative decoding for the requests it can serve exactly; null: plain. Borrowed, outlives
  // the engine.
  shard::Speculation* speculation = nullptr;
};

class SwarmEngine final : public CompletionEngine {
 public:
  static absl::StatusOr<std::unique_ptr<SwarmEngine>> Create(const std::string& gguf_path,
                                                             const SwarmEngineOptions& options);
  ~SwarmEngine() override;

  const ModelInfo& info() const override { return info_; }
  const model::Tokenizer& tokenizer() const override { return *tokenizer_; }
  absl::Status Generate(const GenerationRequest& request, const TokenCallback& on_token) override;
  absl::StatusOr<std::vector<model::TokenLogprob>> Score(const ScoreRequest& request) override;
  SwarmView Describe() const override;

 private:
  SwarmEngine() = default;
  // One choice of a request through its own route and chain session.
  absl::Status GenerateChoice(const GenerationRequest& request, int32_t index,
                              const TokenCallback& on_token);
  void RefreshLoop();
  // What one request runs on: a client head on its own backend (zero-copy views of the mapped
  // weights), a router and a chain session for `max_length` positions. Declared in the order
  // they must be destroyed in reverse.
  struct Chain {
    std::unique_ptr<kernels::Backend> backend;
    std::unique_ptr<model::ClientHead> head;
    std::unique_ptr<router::SwarmHopProvider> provider;
    std::unique_ptr<router::ChainSession> session;
  };
  absl::StatusOr<Chain> OpenChain(int64_t max_length);
  // The session's peer timings and verification counts, into the request's metrics.
  static void ReportChainMetrics(const router::ChainSession& session, MetricsSink* metrics);

  SwarmEngineOptions options_;
  std::unique_ptr<model::GgufFile> file_;
  model::ModelConfig config_;
  std::unique_ptr<model::Tokenizer> tokenizer_;
  model::ClientWeights client_weights_;
  ModelInfo info_;
  std::unique_ptr<registry::DhtRegistry> registry_;
  transport::ClientOptions socket_options_;  // every chain's (CurveZMQ in a private swarm)
  // Peers banned by any request (failures, and liars for BanOptions::lie) are avoided by the next.
  router::BanList bans_;
  zmq::context_t context_{1};
  router::PeerPerformance performance_;  // fed and read by every request's router

  mutable std::mutex view_mu_;
  SwarmView view_;  // guarded by view_mu_
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;  // guarded by stop_mu_
  std::thread refresher_;
};

}  // namespace swarm::gateway
