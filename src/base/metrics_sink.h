// Where the swarm client, the transport and the in-process engine report what they measure (peer
// step latency, failovers, bytes per codec, KV-cache use). It lives in base so that any module can
// report without depending on the gateway; the gateway's MetricsRegistry implements it. An
// implementation must be thread-safe: it is called from many generation threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace swarm {

class MetricsSink {
 public:
  virtual ~MetricsSink() = default;

  // One forward step on one peer as the client saw it (send to reply), in seconds.
  virtual void ObservePeerStep(std::string_view peer_id, double seconds) = 0;
  // A failed peer was routed around during a generation.
  virtual void AddFailover() = 0;
  // Activation bytes put on the wire, after compression, per codec name ("f16", "int8+zstd", ...).
  virtual void AddBytesSent(std::string_view codec, uint64_t bytes) = 0;
  // KV-cache tokens in use and the budget, per peer (or "local" for the in-process engine), and
  // the bytes one token takes in that cache (0: unknown).
  virtual void SetKvCacheUse(std::string_view peer_id, int64_t used_tokens, int64_t capacity_tokens,
                             size_t bytes_per_token) = 0;
  // A generation's verification of peers' work, per span of blocks ("2..3", inclusive): hop-steps
  // checked against a replica and not, disagreements, outputs refused by the output checks, and
  // peers banned as liars. Default: dropped.
  virtual void AddVerification(std::string_view span, int64_t verified, int64_t unverified,
                               int64_t mismatches) {
    (void)span, (void)verified, (void)unverified, (void)mismatches;
  }
  virtual void AddLiesCaught(int64_t outputs_refused, int64_t peers_banned) {
    (void)outputs_refused, (void)peers_banned;
  }
  // Speculative decoding: drafted tokens the target verified, those it accepted, verification
  // chunks sent through the blocks and the tokens they gave; and a change in the chunks in flight
  // now (summed over generations). Default: dropped.
  virtual void AddSpeculation(int64_t drafted, int64_t accepted, int64_t traversals,
                              int64_t tokens) {
    (void)drafted, (void)accepted, (void)traversals, (void)tokens;
  }
  virtual void AddChunksInFlight(int64_t delta) { (void)delta; }
};

// Discards everything: for callers that were given no sink.
class NullMetricsSink final : public MetricsSink {
 public:
  void ObservePeerStep(std::string_view, double) override {}
  void AddFailover() override {}
  void AddBytesSent(std::string_view, uint64_t) override {}
  void SetKvCacheUse(std::string_view, int64_t, int64_t, size_t) override {}
};

}  // namespace swarm
