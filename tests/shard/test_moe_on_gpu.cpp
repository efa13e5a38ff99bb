// Mixture-of-experts models on the CUDA backend: synthetic Mixtral and Qwen3-MoE models run
// greedily in-process with every block and the head on the GPU, their tokens and logits compared
// with the CPU reference backend's on the same file: prompts (tokens grouped by expert, gathered
// by GetRows, scattered back by AddScaledColumns), one-token decode steps (only the chosen
// experts read), and a prompt too short for every expert to be chosen. Skipped, with the reason,
// where no GPU is present; tests/kernels/cuda_emulation builds it for the emulated GPU too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "base/status_macros.h"
#include "kernels/backend_factory.h"
#include "kernels/kv_types.h"
#include "model/synthetic_model.h"
#include "shard/local_model.h"
#include "shard/local_pipeline.h"
#include "support/files.h"
#if SWARM_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

#if SWARM_HAVE_CUDA && defined(__SANITIZE_ADDRESS__)
// See tests/kernels/test_cuda_backend.cpp: lets the CUDA driver start under ASan.
extern "C" const char* __asan_default_options() { return "protect_shadow_gap=0"; }
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libcuda.so\nleak:libcudart.so\nleak:libcublas\nleak:libnccl.so\n";
}
#endif

namespace swarm::shard {
namespace {

#if SWARM_HAVE_CUDA

struct Run {
  std::string backend;  // the backend's name, e.g. "cuda:0"
  bool moe = false;     // the loaded configuration is a mixture of experts
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;  // [step][n_vocab]
};

// Mixtral (experts as wide as n_ff) or Qwen3-MoE (per-head q/k norms, NeoX RoPE, narrower
// experts): 8 experts, 2 chosen per token.
model::SyntheticModelSpec MoeSpec(const std::string& arch) {
  model::SyntheticModelSpec s;
  s.arch = arch;
  if (arch == "qwen3moe") s.n_ff_exp = 48;
  s.n_layer = 3, s.n_embd = 64, s.n_ff = 96, s.n_head = 4, s.n_head_kv = 2, s.n_vocab = 320;
  s.n_expert = 8, s.n_expert_used = 2;
  s.type = kernels::GgmlType::kF32;  // float products on both sides: the router's choice agrees
  s.seed = 11;
  s.n_threads = 1;
  return s;
}

// The prompt as one step, then `n_decode` one-token steps, each fed the greedy token.
absl::StatusOr<Run> Greedy(const std::string& path, const std::string& backend,
                           const std::vector<int32_t>& prompt, int n_decode) {
  kernels::BackendOptions options;
  options.name = backend;
  options.threads = 1;
  SWARM_ASSIGN_OR_RETURN(
      std::unique_ptr<LocalModel> m,
      LocalModel::Load(path, options, /*load_blocks=*/true,
                       kernels::KvTypes{kernels::GgmlType::kF32, kernels::GgmlType::kF32}));
  SWARM_ASSIGN_OR_RETURN(
      std::unique_ptr<LocalPipeline> pipeline,
      LocalPipeline::Create(*m->blocks, static_cast<int64_t>(prompt.size()) + n_decode));
  const int64_t n_embd = m->config.n_embd;
  Run run;
  run.backend = m->backend->name();
  run.moe = m->config.is_moe();
  std::vector<int32_t> step = prompt;
  for (int i = 0; i <= n_decode; ++i) {
    std::vector<float> in(static_cast<size_t>(n_embd) * step.size()), out(in.size());
    SWARM_RETURN_IF_ERROR(m->head->Embed(step, in.data()));
    SWARM_RETURN_IF_ERROR(
        pipeline->Forward(static_cast<int64_t>(step.size()), in.data(), out.data()));
    std::vector<float> logits(static_cast<size_t>(m->config.n_vocab));
    SWARM_RETURN_IF_ERROR(m->head->Logits(out.data() + (step.size() - 1) * n_embd, logits.data()));
    const auto best =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    run.tokens.push_back(best);
    run.logits.push_back(std::move(logits));
    step = {best};
  }
  return run;
}

struct MoeCase {
  std::string arch;
  std::vector<int32_t> prompt;
  std::string label;
};

class MoeOnGpuTest : public ::testing::TestWithParam<MoeCase> {
 protected:
  void SetUp() override {
    auto count = kernels::CudaDeviceCount();
    if (!count.ok()) GTEST_SKIP() << "no CUDA GPU: " << count.status().message();
  }
};

TEST_P(MoeOnGpuTest, GreedyTokensAndLogitsEqualTheCpuReference) {
  constexpr int kDecode = 6;
  test_support::ScratchDir dir;
  const std::string path = dir.File("moe.gguf");
  ASSERT_TRUE(model::WriteSyntheticModel(MoeSpec(GetParam().arch), path).ok());
  auto reference = Greedy(path, "reference", GetParam().prompt, kDecode);
  ASSERT_TRUE(reference.ok()) << reference.status();
  auto gpu = Greedy(path, "cuda", GetParam().prompt, kDecode);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_EQ(gpu->backend.rfind("cuda", 0), 0u) << gpu->backend;
  EXPECT_TRUE(gpu->moe);
  EXPECT_EQ(gpu->tokens, reference->tokens);
  // Float sums in another order than the CPU's: last-bit differences, grown through 3 blocks.
  ASSERT_EQ(gpu->logits.size(), reference->logits.size());
  double max_error = 0;
  for (size_t i = 0; i < gpu->logits.size(); ++i) {
    ASSERT_EQ(gpu->logits[i].size(), reference->logits[i].size());
    for (size_t v = 0; v < gpu->logits[i].size(); ++v) {
      const double want = reference->logits[i][v];
      const double error = std::fabs(gpu->logits[i][v] - want);
      max_error = std::max(max_error, error / (1 + std::fabs(want)));
    }
  }
  EXPECT_LT(max_error, 1e-4);
  // The logits differ from step to step: a forward that ignored the experts' outputs, or the
  // cache, would repeat itself.
  EXPECT_NE(gpu->logits.front(), gpu->logits.back());
}

INSTANTIATE_TEST_SUITE_P(
    Models, MoeOnGpuTest,
    ::testing::Values(
        MoeCase{"mixtral", {1, 300, 17, 260, 42, 99, 7, 150, 3, 271, 64, 200}, "Prompt"},
        // Two tokens choose at most 4 of the 8 experts: the others are skipped on the GPU.
        MoeCase{"mixtral", {1, 300}, "ExpertsNoTokenChose"},
        MoeCase{"qwen3moe", {1, 300, 17, 260, 42, 99, 7, 150, 3, 271, 64, 200}, "Prompt"},
        MoeCase{"qwen3moe", {1, 300}, "ExpertsNoTokenChose"}),
    [](const ::testing::TestParamInfo<MoeCase>& info) {
      return info.param.arch + "_" + info.param.label;
    });

#else

TEST(MoeOnGpu, Skipped) { GTEST_SKIP() << "this build has no CUDA backend (no toolkit found)"; }

#endif  // SWARM_HAVE_CUDA

}  // namespace
}  // namespace swarm::shard
