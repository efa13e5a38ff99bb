// Verification against real lying peers: `swarm serve` processes on one DHT serve stories260K's
// blocks (two honest replicas of 0:2 and 2:4, one peer for 4:5), and a swarm_lying_peer
// (SWARM_LYING_PEER: the real peer code, its blocks' outputs corrupted) serves 2:4 too. The
// client's chain goes through the liar; with spot checks on, the liar is outvoted by two replicas,
// banned and replaced, and the greedy text is exactly the in-process reference. NaN or zeros are
// refused by the output checks even with spot checks off. The single-peer span is unverified.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "model/generator.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "peer/local_swarm.h"
#include "registry/dht_registry.h"
#include "router/chain_session.h"
#include "router/swarm_hop_provider.h"
#include "shard/local_model.h"
#include "support/files.h"
#include "support/shared_model.h"

namespace swarm::swarm_test {
namespace {

const std::string& kModel = test_support::kSharedModel;
constexpr int kTokens = 200;

std::string ReferenceText() {
  std::string text = test_support::ReadFile(test_support::kSharedReferenceText);
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

std::vector<std::string> CommonServeArgs() {
  return {"-m",           kModel,      "--listen",  "tcp://127.0.0.1:0",   "--dht-bind",
          "127.0.0.1",    "--backend", "reference", "--announce-interval", "0.2",
          "--record-ttl", "3"};
}

peer::LocalSwarmOptions Options(const std::string& binary, const std::string& name) {
  return {.binary = binary,
          .serve_args = CommonServeArgs(),
          .log_dir = ::testing::TempDir(),
          .log_name = name,
          .ready_timeout = std::chrono::seconds(120)};
}

std::string Bootstrap(const peer::LocalPeer& p) {
  return absl::StrCat("127.0.0.1:", p.ready.dht_port);
}

struct Result {
  absl::Status status;
  std::string text;
  router::VerificationStats verification;
  std::vector<router::ChainHop> final_hops;
  // Per hop but the last: the smallest and largest rms(output) / rms(input) over the tokens (the
  // figures behind router::OutputBounds).
  std::vector<std::pair<double, double>> rms_ratios;
};

double Rms(const float* x, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  return std::sqrt(sum / n);
}

class VerifiedSwarm : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    honest_ = new peer::LocalSwarm(Options(SWARM_BINARY, "swarm-verify-peer"));
    auto first = honest_->Start({"--blocks", "0:2"});
    ASSERT_TRUE(first.ok()) << first.status();
    const std::string bootstrap = Bootstrap(**first);
    std::vector<std::vector<std::string>> rest;
    for (const char* blocks : {"0:2", "2:4", "2:4", "4:5"}) {
      rest.push_back({"--blocks", blocks, "--initial-peers", bootstrap});
    }
    const absl::Status started = honest_->StartAll(rest);
    ASSERT_TRUE(started.ok()) << started;
  }
  static void TearDownTestSuite() {
    delete honest_;
    honest_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(honest_, nullptr);
    bootstrap_ = Bootstrap(honest_->peer(0));
    auto local = shard::LocalModel::Load(kModel, kernels::BackendOptions{.name = "reference"},
                                         /*load_blocks=*/false);
    ASSERT_TRUE(local.ok()) << local.status();
    model_ = std::move(*local);
    registry::DhtRegistryOptions options;
    options.bind_address = "127.0.0.1";
    options.initial_peers = {bootstrap_};
    options.client_only = true;
    options.op_timeout = absl::Seconds(2);
    auto registry = registry::DhtRegistry::Create(options);
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = std::move(*registry);
  }

  // The liar leaves (SIGTERM: it announces itself offline), so later tests do not route to it.
  void TearDown() override {
    if (liars_ != nullptr) liars_->StopAll(std::chrono::seconds(10));
  }

  // Starts a lying peer for blocks 2:4 with `lie_args` and waits until the client's registry
  // shows it and every honest peer online.
  peer::LocalPeer* StartLiar(std::vector<std::string> lie_args, const char* blocks = "2:4") {
    liars_ = std::make_unique<peer::LocalSwarm>(Options(SWARM_LYING_PEER, "swarm-liar"));
    std::vector<std::string> args = {"--blocks", blocks, "--initial-peers", bootstrap_};
    args.insert(args.end(), lie_args.begin(), lie_args.end());
    auto liar = liars_->Start(args);
    EXPECT_TRUE(liar.ok()) << liar.status();
    if (!liar.ok()) return nullptr;
    WaitOnline(honest_->size() + 1);
    return *liar;
  }

  void WaitOnline(size_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      auto snapshot = registry_->Snapshot(model_->config.model_id);
      size_t online = 0;
      if (snapshot.ok()) {
        for (const auto& r : *snapshot) online += r.state == registry::PeerState::kOnline;
      }
      if (online >= n) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "fewer than " << n << " peers online";
  }

  // Greedy BOS-only generation. The chain's hop for the blocks of `forced` is that peer when
  // given (the router would pick any of the replicas), with the router behind it for replicas
  // and replacements.
  Result Generate(const router::VerifyOptions& verify, const peer::LocalPeer* forced) {
    Result result;
    const auto started = std::chrono::steady_clock::now();
    const model::ModelConfig& config = model_->config;
    router::SwarmHopProviderOptions provider_options;
    provider_options.model_id = config.model_id;
    provider_options.n_blocks = config.n_layer;
    provider_options.cache_tokens_needed = kTokens + 1;
    provider_options.route_wait = absl::Seconds(5);
    router::SwarmHopProvider provider(*registry_, provider_options);
    auto hops = provider.InitialRoute();
    if (!hops.ok()) {
      result.status = hops.status();
      return result;
    }
    if (forced != nullptr) {
      const uint32_t first = forced->ready.first_block, last = forced->ready.last_block;
      std::vector<router::ChainHop> chain;
      for (const router::ChainHop& hop : *hops) {
        for (uint32_t b = hop.first_block; b < hop.last_block; ++b) {
          if (b < first || b >= last) {
            if (chain.empty() || chain.back().address != hop.address ||
                chain.back().last_block != b) {
              chain.push_back({hop.address, b, b + 1, hop.peer_id});
            } else {
              chain.back().last_block = b + 1;
            }
          } else if (b == first) {
            chain.push_back({forced->ready.address, first, last, forced->ready.peer_id});
          }
        }
      }
      *hops = chain;
    }
    router::ChainOptions options;
    options.max_length = kTokens + 1;
    options.verify = verify;
    zmq::context_t context(1);
    auto session = router::ChainSession::Open(context, *hops, config.n_layer, config.n_embd,
                                              options, &provider);
    if (!session.ok()) {
      result.status = session.status();
      return result;
    }
    const model::Tokenizer& tokenizer = *model_->tokenizer;
    std::vector<int32_t> prompt = {tokenizer.bos_id()};
    model::SamplingParams params;
    params.temperature = 0;
    model::Sampler sampler(params);
    model::StreamingDecoder decoder(tokenizer, /*at_start=*/true);
    model::GenerateOptions generate_options;
    generate_options.max_new_tokens = kTokens;
    auto stats = model::Generate(prompt, generate_options, *model_->head, **session, sampler,
                                 tokenizer, [&](int32_t token) {
                                   result.text += decoder.Push(token);
                                   return true;
                                 });
    result.text += decoder.Finish();
    result.status = stats.status();
    result.verification = (*session)->verification();
    result.final_hops = (*session)->hops();
    const int64_t n_embd = config.n_embd;
    for (size_t i = 0; i + 1 < result.final_hops.size(); ++i) {
      const std::vector<float>& in = (*session)->history(i);
      const std::vector<float>& out = (*session)->history(i + 1);
      double lo = INFINITY, hi = 0;
      for (size_t t = 0; (t + 1) * n_embd <= in.size() && (t + 1) * n_embd <= out.size(); ++t) {
        const double ratio = Rms(&out[t * n_embd], n_embd) / Rms(&in[t * n_embd], n_embd);
        lo = std::min(lo, ratio);
        hi = std::max(hi, ratio);
      }
      result.rms_ratios.push_back({lo, hi});
      std::printf("hop %zu (blocks %u..%u): rms(out)/rms(in) in [%.3g, %.3g]\n", i,
                  result.final_hops[i].first_block, result.final_hops[i].last_block - 1, lo, hi);
    }
    std::printf("%s (%.2f s)\n", result.verification.Summary().c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    for (const router::FailoverEvent& e : (*session)->failover_events()) {
      std::printf("replaced hop %d (%s): detect %.3f s, route %.3f s, open %.3f s, replay %.3f s\n",
                  e.hop, e.reason.c_str(), e.detect_seconds, e.route_seconds, e.open_seconds,
                  e.replay_seconds);
    }
    return result;
  }

  static bool Routed(const Result& r, const peer::LocalPeer& p) {
    for (const router::ChainHop& hop : r.final_hops) {
      if (hop.address == p.ready.address) return true;
    }
    return false;
  }

  static peer::LocalSwarm* honest_;
  std::string bootstrap_;
  std::unique_ptr<shard::LocalModel> model_;
  std::unique_ptr<registry::DhtRegistry> registry_;
  std::unique_ptr<peer::LocalSwarm> liars_;
};
peer::LocalSwarm* VerifiedSwarm::honest_ = nullptr;

// Noise from position 3 on: checked as a new peer's steps, outvoted, banned, replaced.
TEST_F(VerifiedSwarm, NoisyLiarIsOutvotedBannedAndTheTextStaysExact) {
  peer::LocalPeer* liar = StartLiar({"--lie", "noise", "--lie-after", "3"});
  ASSERT_NE(liar, nullptr);
  Result r = Generate({.share = 0.1, .new_peer_steps = 8, .seed = 1}, liar);
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.text, ReferenceText());
  EXPECT_GE(r.verification.mismatches, 1);
  EXPECT_GE(r.verification.peers_banned, 1);
  EXPECT_FALSE(Routed(r, *liar));
}

// A small perturbation (1e-3 of each token's rms, from position 20): within any norm bound, so
// only the comparison catches it; every step is checked (share 1).
TEST_F(VerifiedSwarm, SubtlePerturbationIsCaughtBySpotChecks) {
  peer::LocalPeer* liar =
      StartLiar({"--lie", "perturb", "--lie-scale", "1e-3", "--lie-after", "20"});
  ASSERT_NE(liar, nullptr);
  Result r = Generate({.share = 1.0, .new_peer_steps = 8, .seed = 2}, liar);
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.text, ReferenceText());
  EXPECT_EQ(r.verification.mismatches, 1);
  EXPECT_EQ(r.verification.peers_banned, 1);
  EXPECT_EQ(r.verification.output_refused, 0);
  EXPECT_FALSE(Routed(r, *liar));
}

// One lie, at position 30, on a step that spot checks (share 0.1) may well not draw: the next
// check's replica recomputes the positions it had not seen, and the hop's outputs for them (the
// next hop's input history) are compared too, so the liar is found and banned. The token of the
// lie may be wrong (it was out before the check); the liar is gone for the rest.
TEST_F(VerifiedSwarm, ALieOnAnUncheckedStepIsFoundAtTheNextCheck) {
  peer::LocalPeer* liar =
      StartLiar({"--lie", "noise", "--lie-after", "30", "--lie-every", "1000000"});
  ASSERT_NE(liar, nullptr);
  Result r = Generate({.share = 0.1, .new_peer_steps = 8, .seed = 5}, liar);
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.verification.mismatches, 1);
  EXPECT_EQ(r.verification.peers_banned, 1);
  EXPECT_FALSE(Routed(r, *liar));
}

// Spot checks off: NaN and zeros are refused by the output checks, the liar banned and replaced.
TEST_F(VerifiedSwarm, NanOutputsAreRefusedWithoutSpotChecks) {
  peer::LocalPeer* liar = StartLiar({"--lie", "nan", "--lie-after", "5"});
  ASSERT_NE(liar, nullptr);
  Result r = Generate({.share = 0}, liar);
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.text, ReferenceText());
  EXPECT_EQ(r.verification.output_refused, 1);
  EXPECT_EQ(r.verification.peers_banned, 1);
  EXPECT_EQ(r.verification.verified_steps(), 0);
  EXPECT_FALSE(Routed(r, *liar));
}

TEST_F(VerifiedSwarm, ZeroOutputsAreRefusedWithoutSpotChecks) {
  peer::LocalPeer* liar = StartLiar({"--lie", "zeros", "--lie-after", "5"});
  ASSERT_NE(liar, nullptr);
  Result r = Generate({.share = 0}, liar);
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.text, ReferenceText());
  EXPECT_EQ(r.verification.output_refused, 1);
  EXPECT_EQ(r.verification.peers_banned, 1);
  EXPECT_FALSE(Routed(r, *liar));
}

// Honest peers only, every step checked: no false alarm between replicas of the same backend
// (bit-identical), and the span that one peer serves is reported unverified.
TEST_F(VerifiedSwarm, HonestReplicasAgreeAndASinglePeerSpanIsUnverified) {
  // Every replica must be in the client's first snapshot: the router reads it once per route, and
  // a replica announced later is seen only at the next refresh.
  WaitOnline(honest_->size());
  Result r = Generate({.share = 1.0, .seed = 3}, nullptr);
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.text, ReferenceText());
  EXPECT_EQ(r.verification.mismatches, 0);
  EXPECT_EQ(r.verification.peers_banned, 0);
  int64_t single_unverified = 0, single_verified = 0, replicated_verified = 0;
  for (const auto& [span, c] : r.verification.spans) {
    if (span.first >= 4) {
      single_unverified += c.no_replica_steps;
      single_verified += c.verified_steps;
    } else {
      replicated_verified += c.verified_steps;
      EXPECT_EQ(c.unverified_steps, 0) << span.first << ".." << span.second;
    }
  }
  EXPECT_GE(single_unverified, kTokens - 1);  // the prompt step and each token but the last
  EXPECT_EQ(single_verified, 0);
  EXPECT_GE(replicated_verified, kTokens);
}

// One honest peer and one liar for the whole model: a disagreement has no third peer to decide
// it, so the generation stops with a clear error instead of trusting either, and every token it
// produced before is the reference's.
class LoneReplica : public VerifiedSwarm {
 protected:
  static void SetUpTestSuite() {
    honest_ = new peer::LocalSwarm(Options(SWARM_BINARY, "swarm-verify-lone"));
    auto first = honest_->Start({"--blocks", "0:5"});
    ASSERT_TRUE(first.ok()) << first.status();
  }
};

TEST_F(LoneReplica, DisagreementWithoutAThirdPeerFailsClearly) {
  peer::LocalPeer* liar = StartLiar({"--lie", "noise", "--lie-after", "3"}, "0:5");
  ASSERT_NE(liar, nullptr);
  Result r = Generate({.share = 0.1, .new_peer_steps = 8, .seed = 4}, liar);
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDataLoss) << r.status;
  EXPECT_NE(r.status.message().find("no third peer"), std::string::npos) << r.status;
  EXPECT_EQ(r.verification.mismatches, 1);
  EXPECT_EQ(r.verification.peers_banned, 0);
  // Positions 0..2 were checked and right: three tokens, the reference's.
  EXPECT_FALSE(r.text.empty());
  EXPECT_EQ(ReferenceText().substr(0, r.text.size()), r.text);
}

}  // namespace
}  // namespace swarm::swarm_test
