// Mixture-of-experts models against an independent reference: synthetic Mixtral and Qwen3-MoE
// models (F32, F16 and Q8_0 weights) run greedily in-process on each CPU backend, and their tokens
// and logits compared with tests/reference/run_reference.py, a numpy forward that reads the GGUF
// itself (its mixture-of-experts FFN: tests/reference/moe_ffn.py). Also the router's choice
// (RouteTokens) on hand-made logits.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/subprocess.h"
#include "kernels/backend_factory.h"
#include "kernels/cpu_reference_backend.h"
#include "model/gguf.h"
#include "model/slice.h"
#include "model/synthetic_model.h"
#include "shard/local_model.h"
#include "shard/local_pipeline.h"
#include "shard/moe_forward.h"
#include "shard/multi_gpu_stack.h"
#include "support/files.h"

namespace swarm::shard {
namespace {

struct Run {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;  // [n_generated][n_vocab]
};

const std::vector<int32_t> kPrompt = {1, 300, 17, 260, 42, 99, 7, 150, 3, 271, 64, 200};
constexpr int kGenerate = 8;

// Mixtral (llama attention, experts as wide as n_ff) or Qwen3-MoE (qwen3 attention: per-head q/k
// norms, NeoX RoPE, head size 2 * n_embd / n_head; experts narrower than n_ff).
model::SyntheticModelSpec MixtralSpec(kernels::GgmlType type, const std::string& arch = "mixtral") {
  model::SyntheticModelSpec s;
  s.arch = arch;
  if (arch == "qwen3moe") s.n_ff_exp = 48;
  s.n_layer = 3, s.n_embd = 64, s.n_ff = 96, s.n_head = 4, s.n_head_kv = 2, s.n_vocab = 320;
  s.n_expert = 8, s.n_expert_used = 2;
  s.type = type;
  s.seed = 11;
  s.n_threads = 1;
  return s;
}

// Greedy generation in-process: the prompt as one step (tokens grouped by expert), then one token
// per step (only the chosen experts read).
absl::StatusOr<Run> RunEngine(const std::string& path, const std::string& backend_name) {
  kernels::BackendOptions options;
  options.name = backend_name;
  options.threads = 2;
  auto local = LocalModel::Load(path, options, /*load_blocks=*/true,
                                kernels::KvTypes{kernels::GgmlType::kF32, kernels::GgmlType::kF32});
  if (!local.ok()) return local.status();
  LocalModel& m = **local;
  auto pipeline =
      LocalPipeline::Create(*m.blocks, static_cast<int64_t>(kPrompt.size()) + kGenerate);
  if (!pipeline.ok()) return pipeline.status();
  const int64_t n_embd = m.config.n_embd;
  Run run;
  std::vector<int32_t> step = kPrompt;
  for (int i = 0; i < kGenerate; ++i) {
    std::vector<float> in(static_cast<size_t>(n_embd) * step.size()), out(in.size());
    if (auto s = m.head->Embed(step, in.data()); !s.ok()) return s;
    if (auto s = (*pipeline)->Forward(static_cast<int64_t>(step.size()), in.data(), out.data());
        !s.ok()) {
      return s;
    }
    std::vector<float> logits(static_cast<size_t>(m.config.n_vocab));
    if (auto s = m.head->Logits(out.data() + (step.size() - 1) * n_embd, logits.data()); !s.ok()) {
      return s;
    }
    int32_t best = 0;
    for (size_t v = 1; v < logits.size(); ++v) {
      if (logits[v] > logits[best]) best = static_cast<int32_t>(v);
    }
    run.tokens.push_back(best);
    run.logits.push_back(std::move(logits));
    step = {best};
  }
  return run;
}

absl::StatusOr<Run> RunNumpyReference(const std::string& path) {
  Subprocess::Options options;
  options.argv = {"/usr/bin/python3",
                  SWARM_SOURCE_DIR "/tests/reference/run_reference.py",
                  path,
                  "--tokens",
                  absl::StrJoin(kPrompt, ","),
                  "-n",
                  absl::StrCat(kGenerate)};
  auto child = Subprocess::Start(options);
  if (!child.ok()) return child.status();
  auto text = (*child)->ReadAll(std::chrono::seconds(120));
  if (!text.ok()) return text.status();
  auto code = (*child)->Wait(std::chrono::seconds(10));
  if (!code.ok()) return code.status();
  if (*code != 0) return absl::InternalError(absl::StrCat("the reference exited with ", *code));
  // One line per token: "step I token T logits L0 L1 ...".
  Run run;
  std::istringstream lines(*text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string step, token, logits;
    int index = 0;
    int32_t id = 0;
    if (!(words >> step >> index >> token >> id >> logits) || logits != "logits") continue;
    run.tokens.push_back(id);
    run.logits.emplace_back();
    for (float v; words >> v;) run.logits.back().push_back(v);
  }
  return run;
}

struct ReferenceCase {
  std::string arch;
  kernels::GgmlType type;
};

class MoeReferenceTest : public ::testing::TestWithParam<ReferenceCase> {};

TEST_P(MoeReferenceTest, GreedyTokensAndLogitsMatchNumpy) {
  test_support::ScratchDir dir;
  const std::string path = dir.File("mixtral.gguf");
  ASSERT_TRUE(model::WriteSyntheticModel(MixtralSpec(GetParam().type, GetParam().arch), path).ok());
  auto reference = RunNumpyReference(path);
  ASSERT_TRUE(reference.ok()) << reference.status();
  ASSERT_EQ(reference->tokens.size(), static_cast<size_t>(kGenerate));
  ASSERT_EQ(reference->logits.size(), static_cast<size_t>(kGenerate));
  // The engine computes in float (the numpy reference in double); quantized weights' matrix
  // products also quantize the activations to 8 bits, as llama.cpp does.
  // With quantized activations a router's near-tie can go the other way than in the reference
  // (a different expert, a different output: as in llama.cpp), so the optimized backends are
  // held to the reference on quantized weights by the MatMul conformance tests instead.
  const bool quantized = kernels::GetTypeTraits(GetParam().type)->block_size > 1;
  const double tolerance = 1e-4;
  std::vector<const char*> backends = {"reference"};
  if (!quantized) backends.insert(backends.end(), {"cpu:generic", "cpu:avx2", "cpu"});
  for (const char* backend : backends) {
    auto run = RunEngine(path, backend);
    ASSERT_TRUE(run.ok()) << backend << ": " << run.status();
    EXPECT_EQ(run->tokens, reference->tokens) << backend;
    double max_error = 0, max_ref = 0;
    int reported = 0;
    for (size_t i = 0; i < run->logits.size(); ++i) {
      ASSERT_EQ(run->logits[i].size(), reference->logits[i].size());
      for (size_t v = 0; v < run->logits[i].size(); ++v) {
        const double got = run->logits[i][v], want = reference->logits[i][v];
        const double error = std::fabs(got - want);
        max_error = std::max(max_error, error);
        max_ref = std::max(max_ref, std::fabs(want));
        if (error > tolerance * (1 + std::fabs(want)) && reported++ < 5) {
          ADD_FAILURE() << backend << ": token " << i << " logit " << v << ": " << got
                        << " vs reference " << want;
        }
      }
    }
    std::printf("%s %s %s: max |logit error| %.3g (logits up to %.3g)\n", GetParam().arch.c_str(),
                backend, std::string(kernels::GgmlTypeName(GetParam().type)).c_str(), max_error,
                max_ref);
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, MoeReferenceTest,
                         ::testing::Values(ReferenceCase{"mixtral", kernels::GgmlType::kF32},
                                           ReferenceCase{"mixtral", kernels::GgmlType::kF16},
                                           ReferenceCase{"mixtral", kernels::GgmlType::kQ8_0},
                                           ReferenceCase{"qwen3moe", kernels::GgmlType::kF32},
                                           ReferenceCase{"qwen3moe", kernels::GgmlType::kQ8_0}),
                         [](const ::testing::TestParamInfo<ReferenceCase>& info) {
                           return info.param.arch + "_" +
                                  std::string(kernels::GgmlTypeName(info.param.type));
                         });

// A peer batches sessions: two sequences in one step (their tokens grouped by expert together)
// give each the bits it gets alone, on every CPU backend; and a MultiGpuStack over two backends
// (the MoE block's host synchronization on each) gives BlockStack's bits.
TEST(MoeBatchTest, BatchedSequencesEqualSequencesAloneBitForBit) {
  test_support::ScratchDir dir;
  const std::string path = dir.File("mixtral.gguf");
  ASSERT_TRUE(model::WriteSyntheticModel(MixtralSpec(kernels::GgmlType::kQ8_0), path).ok());
  const std::vector<int32_t> a = {1, 300, 17, 260, 42}, b = {1, 99, 7};
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    kernels::BackendOptions options;
    options.name = backend;
    auto m = LocalModel::Load(path, options);
    ASSERT_TRUE(m.ok()) << m.status();
    BlockStack& stack = *(*m)->blocks;
    const int64_t n_embd = (*m)->config.n_embd;
    auto embed = [&](const std::vector<int32_t>& tokens) {
      std::vector<float> x(static_cast<size_t>(n_embd) * tokens.size());
      EXPECT_TRUE((*m)->head->Embed(tokens, x.data()).ok());
      return x;
    };
    const std::vector<float> xa = embed(a), xb = embed(b);
    auto alone = [&](const std::vector<float>& x, int64_t n) {
      auto cache = *stack.NewCache(16);
      std::vector<float> out(x.size());
      const SequenceStep step{cache.get(), n};
      EXPECT_TRUE(stack.Forward({&step, 1}, x.data(), out.data()).ok());
      return out;
    };
    std::vector<float> expected = alone(xa, 5), expected_b = alone(xb, 3);
    expected.insert(expected.end(), expected_b.begin(), expected_b.end());
    std::vector<float> x = xa;
    x.insert(x.end(), xb.begin(), xb.end());
    auto ca = *stack.NewCache(16), cb = *stack.NewCache(16);
    const SequenceStep both[] = {{ca.get(), 5}, {cb.get(), 3}};
    std::vector<float> batched(x.size());
    ASSERT_TRUE(stack.Forward(both, x.data(), batched.data()).ok());
    EXPECT_EQ(batched, expected);

    auto host_blocks = model::LoadBlockWeights(*(*m)->file, (*m)->config, 0, 3);
    ASSERT_TRUE(host_blocks.ok()) << host_blocks.status();
    auto first = kernels::MakeBackend(options), second = kernels::MakeBackend(options);
    ASSERT_TRUE(first.ok() && second.ok());
    std::vector<kernels::Backend*> backends = {first->get(), second->get()};
    auto multi = MultiGpuStack::Create(backends, (*m)->config, *host_blocks);
    ASSERT_TRUE(multi.ok()) << multi.status();
    auto ma = *(*multi)->NewCache(16), mb = *(*multi)->NewCache(16);
    const SequenceStep spread[] = {{ma.get(), 5}, {mb.get(), 3}};
    std::vector<float> across(x.size());
    ASSERT_TRUE((*multi)->Forward(spread, x.data(), across.data()).ok());
    EXPECT_EQ(across, expected);
  }
}

// The reference backend, counting the matrix products run with each weight.
class CountingBackend : public kernels::CpuReferenceBackend {
 public:
  void MatMul(const kernels::Weight& w, const float* x, int64_t n_tokens, float* y) override {
    ++uses[w.data];
    CpuReferenceBackend::MatMul(w, x, n_tokens, y);
  }
  std::map<const void*, int> uses;
};

// Each expert's weights are read at most once per step, whatever the number of tokens (a prompt
// groups its tokens by expert); a one-token decode step reads exactly the chosen experts.
TEST(MoeReadsTest, EachChosenExpertOncePerStepAndOnlyTheChosenOnes) {
  test_support::ScratchDir dir;
  const std::string path = dir.File("mixtral.gguf");
  const model::SyntheticModelSpec spec = MixtralSpec(kernels::GgmlType::kF32);
  ASSERT_TRUE(model::WriteSyntheticModel(spec, path).ok());
  kernels::BackendOptions options;
  options.name = "reference";
  auto m = LocalModel::Load(path, options, /*load_blocks=*/false);
  ASSERT_TRUE(m.ok()) << m.status();
  auto host = model::LoadBlockWeights(*(*m)->file, (*m)->config, 0, spec.n_layer);
  ASSERT_TRUE(host.ok()) << host.status();
  CountingBackend counting;
  auto stack = BlockStack::Create(counting, (*m)->config, *host);
  ASSERT_TRUE(stack.ok()) << stack.status();
  auto cache = *(*stack)->NewCache(32);
  // Experts read per block in one step: each must have had gate, up and down once.
  auto experts_read = [&](const std::vector<int32_t>& tokens) {
    std::vector<float> x(static_cast<size_t>(spec.n_embd) * tokens.size()), y(x.size());
    EXPECT_TRUE((*m)->head->Embed(tokens, x.data()).ok());
    counting.uses.clear();
    const SequenceStep step{cache.get(), static_cast<int64_t>(tokens.size())};
    EXPECT_TRUE((*stack)->Forward({&step, 1}, x.data(), y.data()).ok());
    std::vector<int> read_per_block;
    for (const model::BlockWeights& b : (*stack)->resident_weights()) {
      int read = 0;
      for (size_t e = 0; e < b.gate_exps.size(); ++e) {
        const int gate = counting.uses[b.gate_exps[e].data], up = counting.uses[b.up_exps[e].data],
                  down = counting.uses[b.down_exps[e].data];
        EXPECT_EQ(gate, up);
        EXPECT_EQ(gate, down);
        EXPECT_LE(gate, 1) << "expert " << e << " read " << gate << " times in one step";
        read += gate;
      }
      read_per_block.push_back(read);
    }
    return read_per_block;
  };
  const std::vector<int> prompt = experts_read({1, 300, 17, 260, 42, 99, 7, 150, 3, 271, 64, 200});
  for (int read : prompt) {
    EXPECT_GE(read, 2);  // 12 tokens choose at least 2 experts, each read once
    EXPECT_LE(read, 8);
  }
  for (int32_t token : {5, 77, 301}) {
    for (int read : experts_read({token})) EXPECT_EQ(read, 2);  // exactly the 2 chosen
  }
}

// `swarm slice` of a mixture of experts: the slice keeps the expert keys and the 3-D expert
// tensors of its blocks, byte for byte, and refuses nothing.
TEST(MoeSliceTest, SliceKeepsExpertsOfItsBlocks) {
  test_support::ScratchDir dir;
  const std::string path = dir.File("mixtral.gguf"), part = dir.File("part.gguf");
  ASSERT_TRUE(model::WriteSyntheticModel(MixtralSpec(kernels::GgmlType::kQ8_0), path).ok());
  auto full = model::GgufFile::Open(path);
  ASSERT_TRUE(full.ok()) << full.status();
  model::SliceOptions options;
  options.blocks = {1, 3};
  ASSERT_TRUE(model::WriteSlice(**full, options, part).ok());
  auto slice = model::GgufFile::Open(part);
  ASSERT_TRUE(slice.ok()) << slice.status();
  auto full_config = model::ReadModelConfig(**full);
  auto config = model::ReadModelConfig(**slice);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->n_expert, 8);
  EXPECT_EQ(config->n_expert_used, 2);
  EXPECT_EQ(config->model_id, full_config->model_id);
  auto sliced = model::LoadBlockWeights(**slice, *config, 1, 3);
  ASSERT_TRUE(sliced.ok()) << sliced.status();
  auto original = model::LoadBlockWeights(**full, *full_config, 1, 3);
  ASSERT_TRUE(original.ok()) << original.status();
  EXPECT_FALSE(model::LoadBlockWeights(**slice, *config, 0, 1).ok());
  for (size_t b = 0; b < 2; ++b) {
    const model::BlockWeights &s = (*sliced)[b], &o = (*original)[b];
    ASSERT_EQ(s.down_exps.size(), 8u);
    for (size_t e = 0; e < 8; ++e) {
      for (auto [a, c] :
           {std::pair{&s.gate_exps[e], &o.gate_exps[e]}, std::pair{&s.up_exps[e], &o.up_exps[e]},
            std::pair{&s.down_exps[e], &o.down_exps[e]}}) {
        const size_t bytes = *kernels::RowBytes(a->type, a->n_in) * static_cast<size_t>(a->n_out);
        EXPECT_EQ(std::memcmp(a->data, c->data, bytes), 0) << "block " << b << " expert " << e;
      }
    }
  }
}

TEST(RouteTokensTest, ChoosesTopKAndRenormalisesAndGroupsByExpert) {
  // 4 experts, 2 used, 3 tokens: logits [n_expert, T].
  const std::vector<float> logits = {
      0.0f, 1.0f, 2.0f, 3.0f,   // token 0: experts 3, 2
      5.0f, 0.0f, 5.0f, -1.0f,  // token 1: a tie between 0 and 2: both chosen
      1.0f, 4.0f, 0.5f, 3.9f,   // token 2: experts 1, 3
  };
  MoeRouting r;
  RouteTokens(logits.data(), 4, 2, 3, r);
  EXPECT_EQ(r.tokens[0], (std::vector<int32_t>{1}));
  EXPECT_EQ(r.tokens[1], (std::vector<int32_t>{2}));
  EXPECT_EQ(r.tokens[2], (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(r.tokens[3], (std::vector<int32_t>{0, 2}));
  // Token 0: softmax over all four, renormalised over {2, 3}: e^3 / (e^2 + e^3).
  const double w3 = std::exp(3.0) / (std::exp(2.0) + std::exp(3.0));
  EXPECT_NEAR(r.weights[3][0], w3, 1e-6);
  EXPECT_NEAR(r.weights[2][0], 1 - w3, 1e-6);
  EXPECT_NEAR(r.weights[0][0], 0.5, 1e-6);
  EXPECT_NEAR(r.weights[2][1], 0.5, 1e-6);
  const double w1 = std::exp(4.0) / (std::exp(4.0) + std::exp(3.9));
  EXPECT_NEAR(r.weights[1][0], w1, 1e-6);
  EXPECT_NEAR(r.weights[3][1], 1 - w1, 1e-6);

  // Equal logits: the lower index wins; a NaN is never preferred.
  const std::vector<float> ties = {1.0f, 1.0f, 1.0f, std::nanf("")};
  RouteTokens(ties.data(), 4, 2, 1, r);
  EXPECT_EQ(r.tokens[0], (std::vector<int32_t>{0}));
  EXPECT_EQ(r.tokens[1], (std::vector<int32_t>{0}));
  EXPECT_TRUE(r.tokens[2].empty());
}

}  // namespace
}  // namespace swarm::shard
