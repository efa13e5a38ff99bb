// A client's inference session through a chain of peers that together cover every block. A step
// goes to the first peer; each peer pushes its output straight to the next; the last returns the
// final hidden states. Every peer also returns a copy of its output, so the session keeps each
// hop's input history: what a replacement peer must replay to rebuild its KV cache.
// Owns one DEALER socket per hop. One thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/generator.h"
#include "transport/codec.h"
#include "transport/protocol.h"
#include "transport/zmq_socket.h"

namespace swarm::router {

// One hop: a peer and the blocks [first_block, last_block) it runs for this session.
struct ChainHop {
  std::string address;  // ZeroMQ endpoint
  uint32_t first_block = 0;
  uint32_t last_block = 0;
  std::string peer_id;  // as the peer reported it (may be empty)
};

struct ChainOptions {
  transport::Codec codec;  // activations on every link and in the copies back
  int64_t max_length = 512;
  std::chrono::milliseconds open_timeout{10000};
  std::chrono::milliseconds step_timeout{60000};
  transport::ClientOptions socket;
};

// Per-hop timing as the client sees it: when each hop's output arrived after the step was sent.
struct HopTiming {
  int64_t steps = 0;
  double seconds = 0;  // sum over steps of (this hop's output time - previous hop's output time)
};

// Asks a peer for its Info (blocks, model id, throughput).
absl::StatusOr<transport::InfoReply> QueryInfo(zmq::context_t& context, const std::string& address,
                                               std::chrono::milliseconds timeout,
                                               const transport::ClientOptions& socket = {});

class ChainSession : public model::BlockPipeline {
 public:
  // Opens a session on every hop. The hops must cover [0, n_layer) in order.
  static absl::StatusOr<std::unique_ptr<ChainSession>> Open(zmq::context_t& context,
                                                            std::vector<ChainHop> hops,
                                                            int64_t n_layer, int64_t n_embd,
                                                            const ChainOptions& options);
  ~ChainSession() override;  // closes the sessions (best effort)

  absl::Status Forward(int64_t n_tokens, const float* hidden_in, float* hidden_out) override;

  int64_t position() const { return position_; }
  // After a failed Forward: the hop that failed (-1 if unknown).
  int failed_hop() const { return failed_hop_; }
  const std::vector<ChainHop>& hops() const { return hops_; }
  const std::vector<HopTiming>& timings() const { return timings_; }
  // hop's inputs so far: [n_embd, position()]
  const std::vector<float>& history(size_t hop) const { return links_[hop].history; }

 private:
  struct Link {
    std::unique_ptr<transport::DealerClient> socket;
    transport::SessionId session_id;
    std::vector<float> history;  // [n_embd, position] inputs this hop has processed
  };

  ChainSession(zmq::context_t& context, std::vector<ChainHop> hops, int64_t n_embd,
               const ChainOptions& options)
      : context_(context), hops_(std::move(hops)), n_embd_(n_embd), options_(options) {}
  absl::Status OpenLink(size_t hop);
  void CloseLink(size_t hop);

  zmq::context_t& context_;
  std::vector<ChainHop> hops_;
  int64_t n_embd_;
  ChainOptions options_;
  std::vector<Link> links_;
  std::vector<HopTiming> timings_;
  int64_t position_ = 0;
  int failed_hop_ = -1;
  uint64_t next_step_id_ = 1;
  uint64_t next_request_id_ = 1;
  transport::CodecWorkspace workspace_;
};

}  // namespace swarm::router
