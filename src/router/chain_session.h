// A client's inference session through a chain of peers that together cover every block. A step
// goes to the first peer; each peer pushes its output straight to the next; the last returns the
// final hidden states. Every peer also returns a copy of its output, so the session keeps each
// hop's input history: what a replacement peer must replay to rebuild its KV cache.
// Each hop's session belongs to this client: it alone holds the session's owner capability, and
// each step's route is sealed layer by layer (transport/route_seal.h), so a hop learns only the
// next hop's address, session and push capability.
// Steps can be pipelined (Submit/Collect): several in flight through the chain at once, each kept
// until collected so that a failover can send it again; Rollback forgets positions on every hop.
// Owns one DEALER socket per hop. One thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "model/generator.h"
#include "router/output_check.h"
#include "router/step_verifier.h"
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
  // An opening not answered within this long is sent again (the peer answers a repeated opening
  // of the same session as the first), and at once when the connection drops: a reconnection
  // loses what was queued on the old connection. 0: never sent again (a dropped connection then
  // fails the opening).
  std::chrono::milliseconds open_resend_interval{1000};
  // A step fails when the chain has not answered within
  // max(min_step_timeout, step_timeout_factor x the expected time of the step), the expected time
  // being a running average of earlier steps' time per token (initial_step_estimate at first),
  // and never later than max_step_timeout (a long prompt would otherwise wait for hours on a
  // peer that never answers). See StepTimeout().
  std::chrono::milliseconds min_step_timeout{2000};
  std::chrono::milliseconds max_step_timeout{std::chrono::minutes(5)};
  double step_timeout_factor = 20;
  std::chrono::milliseconds initial_step_estimate{1000};
  int max_failovers_per_step = 8;
  // Liveness that does not wait for the step's deadline: ZMTP heartbeats on every hop's
  // connection (a frozen peer stops answering them and its connection is dropped after
  // transport::HeartbeatTimeout(interval): 3 intervals, at least 2 s) and the sockets'
  // disconnect watch (ClientOptions::watch_disconnects: a killed peer's connection is reported at
  // once, by its TCP close); the hop then fails at once. socket.heartbeat_interval, when set, is
  // used for the heartbeats instead. 0: off (only the deadline). The heartbeat timeout must stay
  // above the links' round-trip time.
  std::chrono::milliseconds heartbeat_interval{250};
  transport::ClientOptions socket;
  // Every hop's output is checked (output_check.h) before use; one that fails counts as a lie.
  OutputBounds output_bounds;
  // Spot checks on replicas (step_verifier.h, chain_verification.cpp); share 0: off.
  VerifyOptions verify;
};

// Finds peers to replace a failed hop: the router behind a swarm session. Failed peers are
// reported so they are not offered again (for a while).
class HopProvider {
 public:
  virtual ~HopProvider() = default;
  virtual void ReportFailure(const ChainHop& hop) = 0;
  virtual void ReportSuccess(const ChainHop& hop) = 0;
  // Hops that together run blocks [first, last), in order. Unavailable (naming the missing blocks)
  // when no peers can be found within the provider's patience.
  virtual absl::StatusOr<std::vector<ChainHop>> Replace(uint32_t first, uint32_t last) = 0;
  // Called after every successful step: a chance to keep what Replace() needs fresh, so that a
  // failure finds it ready. Must not block.
  virtual void StepDone() {}
  // After every successful step of `n_tokens` positions: each hop's share of its time, as
  // HopTiming counts it (seconds[k] for hops[k]). What routing learns peers' speed from.
  virtual void StepTimed(std::span<const ChainHop> /*hops*/, std::span<const double> /*seconds*/,
                         int64_t /*n_tokens*/) {}
  // The hop returned wrong outputs (refused by the output checks, or outvoted by replicas): not
  // to be offered again for long, nor its address (ids are free). Default: ReportFailure.
  virtual void ReportLie(const ChainHop& hop) { ReportFailure(hop); }
  // One peer that serves all of [first, last), other than the peers (ids and addresses) of
  // `exclude`: a replica to check a hop's work against. NotFound when there is none.
  virtual absl::StatusOr<ChainHop> Replica(uint32_t first, uint32_t last,
                                           std::span<const ChainHop> exclude) {
    (void)first, (void)last, (void)exclude;
    return absl::NotFoundError("no replicas without a router");
  }
};

// Per-hop timing as the client sees it: when each hop's output arrived after the step was sent.
struct HopTiming {
  int64_t steps = 0;
  // Sum over steps of how much later this hop's output arrived than every earlier hop's (0 when
  // it arrived first); over all hops, the steps' times.
  double seconds = 0;
};

// One replaced hop, timed: what a failure cost the step it hit. Recovery (failure to the next
// token) is detect + route + open + replay + the step run again.
struct FailoverEvent {
  int hop = -1;                    // index of the failed hop at the time
  std::string reason;              // why it failed
  double detect_seconds = 0;       // from sending the step to knowing it failed (0 at Open)
  double route_seconds = 0;        // asking the provider for replacements
  double open_seconds = 0;         // opening sessions on them
  double replay_seconds = 0;       // replaying the span's history through them
  int64_t replayed_positions = 0;  // the history's length
  int attempts = 0;                // replacements tried (1 when the first worked)
};

// How long a step of n_tokens may take before its hop is failed, given the measured time per
// token (< 0: none yet, options.initial_step_estimate is used): see ChainOptions. Within
// [min_step_timeout, max(min_step_timeout, max_step_timeout)].
std::chrono::milliseconds StepTimeout(const ChainOptions& options, double seconds_per_token,
                                      int64_t n_tokens);

// Asks a peer for its Info (blocks, model id, throughput).
absl::StatusOr<transport::InfoReply> QueryInfo(zmq::context_t& context, const std::string& address,
                                               std::chrono::milliseconds timeout,
                                               const transport::ClientOptions& socket = {});

class ChainSession : public model::BlockPipeline {
 public:
  // Opens a session on every hop. The hops must cover [0, n_layer) in order. With a provider,
  // a failed hop is replaced and its history replayed; without one, a failure is final.
  static absl::StatusOr<std::unique_ptr<ChainSession>> Open(zmq::context_t& context,
                                                            std::vector<ChainHop> hops,
                                                            int64_t n_layer, int64_t n_embd,
                                                            const ChainOptions& options,
                                                            HopProvider* provider = nullptr);
  ~ChainSession() override;  // closes the sessions (best effort)

  // Submit then Collect (chain_pipeline.cpp, like the four below).
  absl::Status Forward(int64_t n_tokens, const float* hidden_in, float* hidden_out) override;
  bool waits_on_peers() const override { return true; }
  // Truncates every hop's history to `position` and drops the uncollected steps; the next step is
  // sealed as a redo in every hop's layer, so each hop truncates its cache to the step's start.
  absl::Status Rollback(int64_t position) override;
  // Sends the step to the first hop at once (the route sealed, starting after every submitted
  // step) without waiting for it. A failed send surfaces at the step's Collect, which fails over.
  absl::Status Submit(int64_t n_tokens, std::span<const float> hidden_in) override;
  // Waits for the oldest uncollected step: every hop's copy, the output checks and spot checks,
  // failover as Forward does it (a replaced hop's history replayed, then every uncollected step
  // sent again in order). Appends to the hops' histories and advances position().
  absl::Status Collect(float* hidden_out) override;
  int64_t in_flight() const override { return static_cast<int64_t>(in_flight_.size()); }
  int64_t in_flight_tokens() const override;

  // Positions collected so far (every hop holds them).
  int64_t position() const { return position_; }
  // Rollbacks that dropped something, the positions they dropped (collected or in flight), and
  // the most steps that were in flight at once.
  int64_t rollbacks() const { return rollbacks_; }
  int64_t rolled_back_positions() const { return rolled_back_positions_; }
  int64_t max_in_flight() const { return max_in_flight_; }
  // After a failed Forward or Collect: the hop that failed (-1 if unknown).
  int failed_hop() const { return failed_hop_; }
  // Hops replaced so far, and the time spent replacing them (failure detection excluded).
  int failovers() const { return failovers_; }
  double failover_seconds() const { return failover_seconds_; }
  // Every replacement so far, in order, with its timing.
  const std::vector<FailoverEvent>& failover_events() const { return failover_events_; }
  const std::vector<ChainHop>& hops() const { return hops_; }
  const std::vector<HopTiming>& timings() const { return timings_; }
  // hop's inputs so far: [n_embd, position()]
  const std::vector<float>& history(size_t hop) const { return links_[hop].history; }
  // Spot checks and output checks so far: verified / unverified steps per span, mismatches, bans.
  const VerificationStats& verification() const { return verification_; }

 private:
  struct Link {
    // Watches disconnects when heartbeats are on.
    std::unique_ptr<transport::DealerClient> socket;
    transport::SessionId session_id;
    transport::SessionCapabilities capabilities;  // chosen at open; the owner one never leaves us
    std::vector<float> history;  // [n_embd, position] inputs this hop has processed
  };

  ChainSession(zmq::context_t& context, std::vector<ChainHop> hops, int64_t n_embd,
               const ChainOptions& options, HopProvider* provider)
      : context_(context),
        hops_(std::move(hops)),
        n_embd_(n_embd),
        options_(options),
        provider_(provider),
        policy_(options.verify) {}
  absl::Status OpenLink(const ChainHop& hop, size_t hop_index, Link& link);
  void CloseLink(Link& link);
  // What one step through a list of hops came to.
  struct StepResult {
    absl::Status status;
    int failed_hop = -1;  // on failure: the hop to blame, an index into the step's hops (-1: none)
    std::vector<std::vector<float>> outputs;  // on success, per hop: [n_embd, n_tokens]
    std::vector<std::chrono::steady_clock::time_point> arrived;  // per hop: when its output came
    bool lied = false;  // failed_hop's output failed the output checks
  };
  // A step sent and not yet collected: what sending it again needs, and what came back of it.
  struct InFlightStep {
    int64_t start = 0;
    int64_t n_tokens = 0;
    std::vector<float> input;  // [n_embd, n_tokens]
    // Some hops may hold these positions already (after a rollback or failover): each hop is told
    // it may roll back to `start`.
    bool redo = false;
    uint64_t step_id = 0;  // of its latest sending; outputs of earlier sendings are stale
    std::chrono::steady_clock::time_point sent_at;
    StepResult result;  // outputs as they arrive; status: the first failure
    size_t received = 0;
    // A hop that refused its input (InvalidArgument): judged once the hop before it has answered.
    std::optional<std::pair<size_t, absl::Status>> refused_input;
  };
  // Sends `step` (a new step id) to hops[0]; a failure is recorded in step.result.
  void SendStep(std::span<const ChainHop> hops, std::span<Link> links, InFlightStep& step);
  // Waits until steps.front() has every hop's output (then checked) or has failed, keeping what
  // arrives for the later steps and discarding what no step of `steps` awaits.
  void AwaitOldest(std::span<const ChainHop> hops, std::span<Link> links,
                   std::deque<InFlightStep>& steps);
  // Runs positions [start, start + n_tokens) of `input` ([n_embd, n_tokens]) through hops[0..],
  // collecting every hop's output (no other step in flight on `links`).
  StepResult RunStep(std::span<const ChainHop> hops, std::span<Link> links, int64_t start,
                     int64_t n_tokens, const float* input, bool redo = false);
  // Sends every uncollected step again, in order, the first as a redo (after a replacement).
  void ResendInFlight();
  // Forgets the uncollected steps: the next one starts at position_, as a redo.
  void DropInFlight();
  // Replaces hop i by peers from the provider and replays its history through them; `event`
  // comes with hop, reason and detection filled in.
  absl::Status ReplaceHop(size_t i, FailoverEvent event);
  std::chrono::milliseconds StepTimeout(int64_t n_tokens) const;

  // Verification (chain_verification.cpp).
  // A second session on another peer serving a hop's blocks, fed from the hop's history.
  struct Replica {
    ChainHop hop;
    Link link;
    int64_t length = 0;  // positions it has processed
  };
  using Span = std::pair<uint32_t, uint32_t>;
  // The output checks of hops[0, upto) in order; the first that fails is blamed as a liar.
  void CheckOutputs(std::span<const ChainHop> hops, const float* input, int64_t n_tokens,
                    size_t upto, StepResult& result);
  // Spot checks of a successful step (before it is committed). kRerun: a hop was caught and
  // replaced, run the step again.
  enum class Verdict { kAccepted, kRerun };
  absl::StatusOr<Verdict> VerifyStep(int64_t n_tokens, const float* input, const StepResult& step);
  // Runs hop i's step on a replica of its span (opened and caught up from the hop's history as
  // needed). Returns the replica's outputs for positions [*from, position_ + n_tokens): *from is
  // set to the first position the replica computed in this call (a kept replica), or read as the
  // first position wanted (`temporary`: a fresh session on a peer other than `exclude`'s, caught
  // up from 0 and closed afterwards, for arbitration). NotFound when no replica serves the span.
  absl::StatusOr<std::vector<float>> RunOnReplica(size_t i, int64_t n_tokens,
                                                  std::span<const float> hop_input,
                                                  std::span<const ChainHop> exclude, bool temporary,
                                                  ChainHop* used, int64_t* from);
  void BanLiar(const ChainHop& hop);
  std::string BackendOf(const ChainHop& hop);

  zmq::context_t& context_;
  std::vector<ChainHop> hops_;
  int64_t n_embd_;
  ChainOptions options_;
  std::vector<Link> links_;
  std::vector<HopTiming> timings_;
  HopProvider* provider_;
  int64_t position_ = 0;
  int failed_hop_ = -1;
  int failovers_ = 0;
  double failover_seconds_ = 0;
  std::vector<FailoverEvent> failover_events_;
  double seconds_per_token_ = -1;  // running average of step time per token; < 0: none yet
  uint64_t next_step_id_ = 1;
  std::deque<InFlightStep> in_flight_;  // oldest first
  int64_t submitted_end_ = 0;           // where the next submitted step starts
  bool redo_next_ = false;              // the next submitted step follows a rollback or failure
  std::chrono::steady_clock::time_point last_done_;  // when the last collected step completed
  int64_t rollbacks_ = 0;
  int64_t rolled_back_positions_ = 0;
  int64_t max_in_flight_ = 0;
  uint64_t next_request_id_ = 1;
  transport::CodecWorkspace workspace_;
  VerificationPolicy policy_{VerifyOptions{}};
  VerificationStats verification_;
  std::map<Span, Replica> replicas_;
  // A span whose liar was replaced: the next hop's history holds the liar's outputs before this
  // position, so a check compares the new peer's outputs from here on only.
  std::map<Span, int64_t> compare_from_;
  absl::flat_hash_map<std::string, std::string> backends_;  // by address, from Info
};

}  // namespace swarm::router
