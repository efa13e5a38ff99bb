// Spot checks of peers' work, the parts that decide and compare: which hop-steps a client runs a
// second time on a replica (a share of steps, every step of a peer it has not yet checked enough,
// every step once any peer was caught), whether two outputs agree (bit for bit between peers of
// the same backend, within a per-codec tolerance otherwise), and the counters. The I/O (replica
// sessions, arbitration, bans) is ChainSession's (chain_verification.cpp). One thread at a time.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <span>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "transport/codec.h"

namespace swarm::router {

struct VerifyOptions {
  // Share of steps run again on a replica, per hop (0: spot checks off; the output checks stay).
  double share = 0;
  // Every step of a peer is checked until it has passed this many checks in this session.
  int new_peer_steps = 8;
  // Once any hop disagreed with its replicas, every later step of every hop is checked.
  bool check_all_after_mismatch = true;
  // Relative tolerance between peers of different backends (ToleranceFor); <0: the built-in table.
  double cross_backend_tolerance = -1;
  uint64_t seed = 0;  // 0: drawn from std::random_device
};

// Counters of one span of blocks [first, last).
struct SpanVerification {
  int64_t verified_steps = 0;    // agreed with a replica
  int64_t unverified_steps = 0;  // not checked: not drawn, or no replica
  int64_t no_replica_steps = 0;  // of the unverified: drawn, but no other peer serves the span
  int64_t mismatches = 0;        // disagreed with a replica
};

struct VerificationStats {
  std::map<std::pair<uint32_t, uint32_t>, SpanVerification> spans;
  int64_t mismatches = 0;              // disagreements between a hop and a replica
  int64_t output_refused = 0;          // outputs that failed the output checks (output_check.h)
  int64_t peers_banned = 0;            // peers banned as liars (by a check or by arbitration)
  double max_cross_backend_error = 0;  // largest relative error seen between agreeing backends

  int64_t verified_steps() const;
  int64_t unverified_steps() const;
  // "verified 190/200 steps (2 spans unverified: 4..4), 1 mismatch, 1 peer banned" style, one line.
  std::string Summary() const;
};

// Largest relative L2 error over the tokens: max_t ||a_t - b_t|| / ||b_t|| (a_t, b_t: token t's
// n_embd values; a token whose b is all zeros counts ||a_t||). 0 for identical spans.
double MaxRelativeError(std::span<const float> a, std::span<const float> b, int64_t n_embd);

// The relative error two honest peers' outputs may differ by: 0 (bit-identical) for the same CPU
// backend (deterministic, independent of threads and batching); else the cross-backend error of
// f32 arithmetic (larger when a GPU runs cuBLAS on multi-token steps) plus the codec's rounding
// (docs/VERIFICATION.md has the figures).
double ToleranceFor(const std::string& backend_a, const std::string& backend_b,
                    const transport::Codec& codec, double cross_backend_tolerance = -1);

// Whether a and b agree: bit for bit when tolerance is 0, else MaxRelativeError <= tolerance.
// Sizes that differ never agree.
bool OutputsAgree(std::span<const float> a, std::span<const float> b, int64_t n_embd,
                  double tolerance);

// Which hop-steps to check.
class VerificationPolicy {
 public:
  explicit VerificationPolicy(const VerifyOptions& options);

  // Spot checks run at all (share > 0); new and suspect peers are checked only then.
  bool enabled() const { return options_.share > 0; }
  // Whether this step of the peer (its id, or address when it has none) is checked. Draws the
  // random share once per call.
  bool ShouldCheck(const std::string& peer);
  // The peer passed a check.
  void Passed(const std::string& peer) { ++passed_[peer]; }
  // A hop disagreed with its replicas: everything is checked from now on.
  void MismatchSeen() { suspicious_ = true; }
  bool suspicious() const { return suspicious_; }
  const VerifyOptions& options() const { return options_; }

 private:
  VerifyOptions options_;
  std::mt19937_64 rng_;
  absl::flat_hash_map<std::string, int64_t> passed_;
  bool suspicious_ = false;
};

}  // namespace swarm::router
