// Speculative decoding in-process on stories260K: greedy output identical to plain greedy decoding
// (the 200-token reference text) with the lookup drafter, the target as its own draft (acceptance
// 1) and a quantized copy as draft, also with several chunks in flight; and speculative sampling
// checked statistically against the target's exact distribution.
#include <gtest/gtest.h>

#include <cmath>
#include <deque>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "model/generator.h"
#include "model/lookup_drafter.h"
#include "model/model_drafter.h"
#include "model/quantize.h"
#include "model/speculative_generator.h"
#include "shard/local_model.h"
#include "shard/local_pipeline.h"
#include "support/files.h"
#include "support/shared_model.h"

namespace swarm {
namespace {

using test_support::kSharedModel;

std::unique_ptr<shard::LocalModel> Load(const std::string& path) {
  auto m = shard::LocalModel::Load(path, kernels::BackendOptions{.name = "cpu", .threads = 1});
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(*m) : nullptr;
}

// Queues steps at Submit and computes them at Collect, as a chain of peers returns them later:
// the loop then keeps several chunks in flight and drops them on a rejection.
class DeferredPipeline final : public model::BlockPipeline {
 public:
  explicit DeferredPipeline(model::BlockPipeline& inner) : inner_(inner) {}
  absl::Status Forward(int64_t n, const float* in, float* out) override {
    return inner_.Forward(n, in, out);
  }
  absl::Status Submit(int64_t n, std::span<const float> in) override {
    queue_.push_back({n, std::vector<float>(in.begin(), in.end())});
    max_in_flight_ = std::max<int64_t>(max_in_flight_, static_cast<int64_t>(queue_.size()));
    return absl::OkStatus();
  }
  absl::Status Collect(float* out) override {
    if (queue_.empty()) return absl::FailedPreconditionError("no step is in flight");
    Step step = std::move(queue_.front());
    queue_.pop_front();
    return inner_.Forward(step.n, step.in.data(), out);
  }
  absl::Status Rollback(int64_t position) override {
    dropped_ += static_cast<int64_t>(queue_.size());
    queue_.clear();
    return inner_.Rollback(position);
  }
  int64_t in_flight() const override { return static_cast<int64_t>(queue_.size()); }
  int64_t max_in_flight() const { return max_in_flight_; }
  int64_t dropped() const { return dropped_; }

 private:
  struct Step {
    int64_t n;
    std::vector<float> in;
  };
  model::BlockPipeline& inner_;
  std::deque<Step> queue_;
  int64_t max_in_flight_ = 0;
  int64_t dropped_ = 0;
};

struct Outcome {
  std::vector<int32_t> tokens;
  std::string text;  // as `swarm generate` prints it
  model::SpeculativeStats spec;
};

// Greedy from BOS, plain (drafter null) or speculative, optionally through a DeferredPipeline.
Outcome Greedy(shard::LocalModel& m, int n, model::Drafter* drafter, bool deferred = false,
               int64_t draft_max = 0) {
  Outcome run;
  auto pipeline = shard::LocalPipeline::Create(*m.blocks, 1 + n);
  EXPECT_TRUE(pipeline.ok()) << pipeline.status();
  if (!pipeline.ok()) return run;
  DeferredPipeline deferring(**pipeline);
  model::BlockPipeline& blocks = deferred ? static_cast<model::BlockPipeline&>(deferring)
                                          : static_cast<model::BlockPipeline&>(**pipeline);
  model::SamplingParams params;
  params.temperature = 0;
  model::Sampler sampler(params);
  model::StreamingDecoder decoder(*m.tokenizer, true);
  model::GenerateOptions options;
  options.max_new_tokens = n;
  const std::vector<int32_t> prompt = {m.tokenizer->bos_id()};
  auto on_token = [&](int32_t token) {
    run.tokens.push_back(token);
    run.text += decoder.Push(token);
    return true;
  };
  absl::StatusOr<model::GenerationStats> stats;
  if (drafter == nullptr) {
    stats = model::Generate(prompt, options, *m.head, blocks, sampler, *m.tokenizer, on_token);
  } else {
    model::SpeculativeOptions spec_options;
    spec_options.draft_max = draft_max;
    stats = model::GenerateSpeculative(prompt, options, spec_options, *m.head, blocks, sampler,
                                       *m.tokenizer, *drafter, on_token, &run.spec);
  }
  EXPECT_TRUE(stats.ok()) << stats.status();
  run.text += decoder.Finish() + "\n";
  return run;
}

class SpeculativeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    target_ = Load(kSharedModel);
    ASSERT_NE(target_, nullptr);
    reference_ = test_support::ReadFile(test_support::kSharedReferenceText);
    ASSERT_FALSE(reference_.empty());
    plain_ = Greedy(*target_, 200, nullptr);
    ASSERT_EQ(plain_.text, reference_);
  }
  // A model drafter over `draft`'s own blocks.
  std::unique_ptr<model::ModelDrafter> DrafterOf(shard::LocalModel& draft,
                                                 std::unique_ptr<shard::LocalPipeline>& pipeline,
                                                 float temperature = 0) {
    auto p = shard::LocalPipeline::Create(*draft.blocks, 256);
    EXPECT_TRUE(p.ok()) << p.status();
    pipeline = std::move(*p);
    model::SamplingParams params;
    params.temperature = temperature;
    params.top_k = 0;
    params.top_p = 1;
    params.min_p = 0;
    params.seed = 12345;
    auto d = model::ModelDrafter::Create(*draft.head, *pipeline, *draft.tokenizer,
                                         *target_->tokenizer, params, 256);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? std::move(*d) : nullptr;
  }

  std::unique_ptr<shard::LocalModel> target_;
  std::string reference_;
  Outcome plain_;
};

TEST_F(SpeculativeTest, LookupGreedyIsPlainGreedy) {
  for (bool deferred : {false, true}) {
    for (int64_t draft_max : {0, 1, 4}) {
      model::LookupDrafter lookup;
      const Outcome run = Greedy(*target_, 200, &lookup, deferred, draft_max);
      EXPECT_EQ(run.tokens, plain_.tokens) << "deferred " << deferred << " max " << draft_max;
      EXPECT_EQ(run.text, reference_);
      EXPECT_GT(run.spec.drafted, 0);
      EXPECT_GT(run.spec.accepted, 0);
      EXPECT_LT(run.spec.accepted, run.spec.drafted);  // stories do not repeat word for word
      EXPECT_EQ(run.spec.tokens, static_cast<int64_t>(run.tokens.size()) - 1);
      if (draft_max > 0) {
        EXPECT_LE(run.spec.tokens, run.spec.traversals * (draft_max + 1));
      }
    }
  }
}

TEST_F(SpeculativeTest, SelfDraftAcceptsEverythingAndPipelines) {
  auto twin = Load(kSharedModel);
  ASSERT_NE(twin, nullptr);
  for (bool deferred : {false, true}) {
    std::unique_ptr<shard::LocalPipeline> pipeline;
    auto drafter = DrafterOf(*twin, pipeline);
    ASSERT_NE(drafter, nullptr);
    const Outcome run = Greedy(*target_, 200, drafter.get(), deferred);
    EXPECT_EQ(run.text, reference_);
    EXPECT_GT(run.spec.drafted, 100);
    EXPECT_EQ(run.spec.accepted, run.spec.drafted);  // acceptance 1
    EXPECT_GT(run.spec.tokens_per_traversal(), 4.0);
    // Steps computed later than submitted: with everything accepted, the loop goes deep.
    if (deferred) {
      EXPECT_GE(run.spec.max_in_flight, 2);
    }
  }
}

TEST_F(SpeculativeTest, QuantizedDraftIsExact) {
  const std::string quantized = ::testing::TempDir() + "/stories260K-q4km.gguf";
  model::QuantizeOptions options;
  options.scheme = "Q4_K_M";
  auto report = model::QuantizeModel(kSharedModel, quantized, options);
  ASSERT_TRUE(report.ok()) << report.status();
  auto draft = Load(quantized);
  ASSERT_NE(draft, nullptr);
  for (bool deferred : {false, true}) {
    std::unique_ptr<shard::LocalPipeline> pipeline;
    auto drafter = DrafterOf(*draft, pipeline);
    ASSERT_NE(drafter, nullptr);
    const Outcome run = Greedy(*target_, 200, drafter.get(), deferred, deferred ? 6 : 0);
    EXPECT_EQ(run.tokens, plain_.tokens);
    EXPECT_EQ(run.text, reference_);
    EXPECT_GT(run.spec.acceptance(), 0.5);
  }
  std::filesystem::remove(quantized);
}

// Proposes the same token every time, as a point mass (the shape of a lookup draft).
class FixedDrafter final : public model::Drafter {
 public:
  explicit FixedDrafter(int32_t token) : token_(token) {}
  absl::Status Draft(std::span<const int32_t>, int64_t max_tokens,
                     std::vector<model::DraftToken>& out) override {
    for (int64_t i = 0; i < max_tokens; ++i) out.push_back({token_, {}});
    return absl::OkStatus();
  }
  std::string name() const override { return "fixed"; }

 private:
  int32_t token_;
};

// The chi-square statistic's upper 1e-4 quantile for `df` degrees of freedom (Wilson-Hilferty).
double ChiSquareCritical(int df) {
  const double z = 3.719;  // the standard normal's upper 1e-4 quantile
  const double a = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - a + z * std::sqrt(a), 3);
}

// Speculative sampling keeps the target's distribution. The second generated token is decided by
// verification against one drafted token (--draft-max 1); over thousands of seeds its empirical
// distribution must match the exact marginal sum_t1 p(t1) p(t2 | t1) of the target's sampler
// (temperature 1, top-k 40, top-p 0.95, min-p 0.05), for a model draft at temperature 2 (q spread
// wider than p) and for a point-mass draft.
TEST_F(SpeculativeTest, SpeculativeSamplingKeepsTheTargetDistribution) {
  model::SamplingParams params;
  params.temperature = 1.0f;
  const std::vector<int32_t> prompt = [&] {
    std::vector<int32_t> p = {target_->tokenizer->bos_id()};
    for (int32_t id : target_->tokenizer->Encode("Once upon a time, there was a", false, false)) {
      p.push_back(id);
    }
    return p;
  }();
  const int64_t n_vocab = target_->config.n_vocab, n_embd = target_->config.n_embd;
  // The target's distribution after `tokens`, through its own sampler's transforms.
  auto distribution = [&](const std::vector<int32_t>& tokens) {
    auto pipeline = shard::LocalPipeline::Create(*target_->blocks, 64);
    EXPECT_TRUE(pipeline.ok());
    const int64_t n = static_cast<int64_t>(tokens.size());
    std::vector<float> hidden(static_cast<size_t>(n_embd * n)), logits(n_vocab);
    EXPECT_TRUE(target_->head->Embed(tokens, hidden.data()).ok());
    EXPECT_TRUE((*pipeline)->Forward(n, hidden.data(), hidden.data()).ok());
    EXPECT_TRUE(target_->head->Logits(hidden.data() + (n - 1) * n_embd, logits.data()).ok());
    model::Sampler sampler(params);
    std::vector<model::TokenProb> dist;
    sampler.Distribution(logits, tokens, dist);
    return dist;
  };
  std::map<int32_t, double> exact;  // t2 -> probability
  for (const model::TokenProb& first : distribution(prompt)) {
    std::vector<int32_t> tokens = prompt;
    tokens.push_back(first.id);
    for (const model::TokenProb& second : distribution(tokens)) {
      exact[second.id] += first.p * second.p;
    }
  }
  ASSERT_GT(exact.size(), 5u);

  auto twin = Load(kSharedModel);
  ASSERT_NE(twin, nullptr);
  const int32_t likely = std::max_element(exact.begin(), exact.end(), [](auto& a, auto& b) {
                           return a.second < b.second;
                         })->first;
  constexpr int kRuns = 4000;
  for (const bool model_draft : {true, false}) {
    std::map<int32_t, int> seen;
    model::SpeculativeStats total;
    for (int seed = 0; seed < kRuns; ++seed) {
      std::unique_ptr<model::Drafter> drafter;
      std::unique_ptr<shard::LocalPipeline> draft_pipeline;
      if (model_draft) {
        auto p = shard::LocalPipeline::Create(*twin->blocks, 64);
        ASSERT_TRUE(p.ok());
        draft_pipeline = std::move(*p);
        model::SamplingParams draft_params;
        draft_params.temperature = 2.0f;
        draft_params.top_k = 0;
        draft_params.top_p = 1;
        draft_params.min_p = 0;
        draft_params.seed = 1000003ULL * static_cast<uint64_t>(seed) + 7;
        auto d = model::ModelDrafter::Create(*twin->head, *draft_pipeline, *twin->tokenizer,
                                             *target_->tokenizer, draft_params, 64);
        ASSERT_TRUE(d.ok()) << d.status();
        drafter = std::move(*d);
      } else {
        drafter = std::make_unique<FixedDrafter>(likely);
      }
      auto pipeline = shard::LocalPipeline::Create(*target_->blocks, 64);
      ASSERT_TRUE(pipeline.ok());
      model::SamplingParams target_params = params;
      target_params.seed = static_cast<uint64_t>(seed);
      model::Sampler sampler(target_params);
      model::GenerateOptions options;
      options.max_new_tokens = 3;
      options.stop_at_end_of_generation = false;
      model::SpeculativeOptions spec_options;
      spec_options.draft_max = 1;
      std::vector<int32_t> out;
      model::SpeculativeStats spec;
      auto stats = model::GenerateSpeculative(
          prompt, options, spec_options, *target_->head, **pipeline, sampler, *target_->tokenizer,
          *drafter,
          [&](int32_t t) {
            out.push_back(t);
            return true;
          },
          &spec);
      ASSERT_TRUE(stats.ok()) << stats.status();
      ASSERT_EQ(out.size(), 3u);
      ++seen[out[1]];
      total.drafted += spec.drafted;
      total.accepted += spec.accepted;
    }
    // Every second token was verified against a draft, and both outcomes happened often.
    EXPECT_GE(total.drafted, kRuns);
    EXPECT_GT(total.accepted, kRuns / 10);
    EXPECT_LT(total.accepted, total.drafted - kRuns / 10);
    // Chi-square over the exact marginal, the rare tokens pooled (expected count >= 5 each).
    double chi2 = 0, pooled_expected = 0, pooled_seen = 0, tv = 0;
    int cells = 0;
    for (const auto& [id, p] : exact) {
      const double expected = p * kRuns;
      const double got = seen.count(id) ? seen[id] : 0;
      tv += std::abs(got / kRuns - p) / 2;
      if (expected < 5) {
        pooled_expected += expected;
        pooled_seen += got;
        continue;
      }
      chi2 += (got - expected) * (got - expected) / expected;
      ++cells;
    }
    if (pooled_expected > 0) {
      chi2 += (pooled_seen - pooled_expected) * (pooled_seen - pooled_expected) /
              std::max(pooled_expected, 1e-9);
      ++cells;
    }
    int outside = 0;  // tokens the target can never choose here
    for (const auto& [id, n] : seen) outside += exact.count(id) ? 0 : n;
    EXPECT_EQ(outside, 0);
    const double critical = ChiSquareCritical(cells - 1);
    EXPECT_LT(chi2, critical) << (model_draft ? "model" : "point-mass") << " draft: chi2 " << chi2
                              << " over " << cells << " cells, total variation " << tv;
    std::printf("%s draft: acceptance %.3f, chi2 %.1f (critical %.1f, %d cells), TV %.4f\n",
                model_draft ? "model (temperature 2)" : "point-mass",
                static_cast<double>(total.accepted) / total.drafted, chi2, critical, cells, tv);
  }
}

}  // namespace
}  // namespace swarm
