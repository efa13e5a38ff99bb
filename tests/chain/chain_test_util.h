// Helpers for the chain tests: real `swarm serve` processes on loopback (SWARM_BINARY, started by
// peer::LocalSwarm), the
// in-process client (router::ChainSession + a LocalModel), the stories260K reference, and a
// pipeline that runs the chain and the in-process engine side by side on the same inputs to
// measure the error the chain introduces. One thread uses each object.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "base/subprocess.h"
#include "model/generator.h"
#include "peer/local_swarm.h"
#include "router/chain_session.h"
#include "shard/local_model.h"
#include "shard/local_pipeline.h"
#include "support/files.h"
#include "support/nmse.h"
#include "support/shared_model.h"

namespace swarm::chain_test {

inline const std::string& kModel = test_support::kSharedModel;
inline const std::string& kReferenceText = test_support::kSharedReferenceText;
inline constexpr int kReferenceTokens = 200;

using test_support::ReadFile;

// One `swarm serve` process (peer::LocalPeer). Its stderr goes to a file in the test's temporary
// folder, removed with the Peer (after the process, which is killed if it still runs).
using Peer = peer::LocalPeer;

// Starts one peer per range (all at once, then waits for every ready line), each a
// `binary serve` process (by default the `swarm` binary).
inline std::vector<Peer> StartPeers(const std::string& model,
                                    const std::vector<std::pair<uint32_t, uint32_t>>& ranges,
                                    const std::vector<std::string>& extra_args = {},
                                    const std::string& binary = SWARM_BINARY) {
  peer::LocalSwarm swarm({.binary = binary,
                          .serve_args = {"-m", model},
                          .log_dir = ::testing::TempDir(),
                          .log_name = "chain-peer",
                          .remove_logs = true,
                          .ready_timeout = std::chrono::seconds(120)});
  std::vector<std::vector<std::string>> args;
  for (const auto& [first, last] : ranges) {
    args.push_back({"--blocks", absl::StrCat(first, ":", last), "--listen", "tcp://127.0.0.1:0"});
    args.back().insert(args.back().end(), extra_args.begin(), extra_args.end());
  }
  const absl::Status started = swarm.StartAll(args);
  EXPECT_TRUE(started.ok()) << started;
  return swarm.Release();
}

// SIGTERM, then the exit status (0: stopped cleanly; under ASan also: no leak found).
inline int StopPeer(Peer& peer) {
  if (peer.process == nullptr) return -1;
  (void)peer.process->Signal(SIGTERM);
  auto code = peer.process->Wait(std::chrono::seconds(60));
  return code.ok() ? *code : -1;
}

inline std::vector<router::ChainHop> HopsOf(const std::vector<const Peer*>& chain) {
  std::vector<router::ChainHop> hops;
  for (const Peer* peer : chain) {
    hops.push_back({peer->ready.address, peer->ready.first_block, peer->ready.last_block, ""});
  }
  return hops;
}

// Runs `chain` and, when set, `reference` on the same inputs; the chain's outputs go on.
// Accumulates the error of the chain's final hidden states against the reference's.
class ComparingPipeline : public model::BlockPipeline {
 public:
  ComparingPipeline(model::BlockPipeline& chain, model::BlockPipeline* reference, int64_t n_embd)
      : chain_(chain), reference_(reference), n_embd_(n_embd) {}

  absl::Status Forward(int64_t n_tokens, const float* hidden_in, float* hidden_out) override {
    const size_t n = static_cast<size_t>(n_embd_ * n_tokens);
    input_.assign(hidden_in, hidden_in + n);  // hidden_in may alias hidden_out
    absl::Status status = chain_.Forward(n_tokens, input_.data(), hidden_out);
    if (!status.ok() || reference_ == nullptr) return status;
    expected_.resize(n);
    status = reference_->Forward(n_tokens, input_.data(), expected_.data());
    if (!status.ok()) return status;
    nmse_.Add(hidden_out, expected_.data(), n);
    return absl::OkStatus();
  }
  // sum((chain - reference)^2) / sum(reference^2) over every position so far.
  double nmse() const { return nmse_.nmse(); }

 private:
  model::BlockPipeline& chain_;
  model::BlockPipeline* reference_;
  int64_t n_embd_;
  std::vector<float> input_, expected_;
  test_support::NmseAccumulator nmse_;
};

struct Generation {
  std::vector<int32_t> tokens;
  std::string text;  // as `swarm generate` prints it (ends with a newline)
  double nmse = 0;   // only when run against a reference
};

// Greedy generation from BOS, the way `swarm generate -p "" --temp 0` runs it.
inline absl::StatusOr<Generation> GenerateGreedy(shard::LocalModel& client,
                                                 model::BlockPipeline& blocks, int n_tokens,
                                                 model::BlockPipeline* reference = nullptr) {
  ComparingPipeline pipeline(blocks, reference, client.config.n_embd);
  model::SamplingParams params;
  params.temperature = 0;
  model::Sampler sampler(params);
  model::StreamingDecoder decoder(*client.tokenizer);
  model::GenerateOptions options;
  options.max_new_tokens = n_tokens;
  Generation out;
  const std::vector<int32_t> prompt = {client.tokenizer->bos_id()};
  auto stats = model::Generate(prompt, options, *client.head, pipeline, sampler, *client.tokenizer,
                               [&](int32_t token) {
                                 out.tokens.push_back(token);
                                 out.text += decoder.Push(token);
                                 return true;
                               });
  if (!stats.ok()) return stats.status();
  out.text += decoder.Finish() + "\n";
  out.nmse = pipeline.nmse();
  return out;
}

// Greedy generation from BOS through a chain opened over `hops`, long enough for n_tokens.
inline absl::StatusOr<Generation> GenerateThroughChain(zmq::context_t& zmq,
                                                       shard::LocalModel& client,
                                                       const std::vector<router::ChainHop>& hops,
                                                       int n_tokens) {
  router::ChainOptions options;
  options.max_length = 1 + n_tokens;
  SWARM_ASSIGN_OR_RETURN(auto chain, router::ChainSession::Open(zmq, hops, client.config.n_layer,
                                                                client.config.n_embd, options));
  return GenerateGreedy(client, *chain, n_tokens);
}

// Tokens equal before the first divergence.
inline int Agreement(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return static_cast<int>(i);
}

}  // namespace swarm::chain_test
