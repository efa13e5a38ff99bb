// The engine against an independent reference: tests/reference/run_reference.py, a float64 numpy
// forward that reads the GGUF itself (own reader, own dequantizers). On small synthetic models of
// each architecture (llama; llama3 with rope_freqs and YaRN or linear scaling, at prompts long
// enough for the factors to matter; qwen3 with its q/k norms and a head size other than
// n_embd / n_head), greedy tokens must be equal and every step's logits within an NMSE bound (see
// the bounds below for each backend).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/subprocess.h"
#include "model/synthetic_model.h"
#include "shard/local_model.h"
#include "shard/local_pipeline.h"
#include "support/files.h"
#include "support/nmse.h"

namespace swarm::shard {
namespace {

using kernels::GgmlType;

// The engine's reference backend accumulates in double like the numpy forward: its logits agree to
// rounding (measured NMSE about 1e-13), so tokens are compared as generated.
constexpr double kReferenceBackendNmse = 1e-10;
// The optimized CPU backend rounds activations to 8 bits before quantized dot products, as
// llama.cpp does: its logits differ by an NMSE of about 1e-4 to 1e-3 (printed), enough to flip a
// near-tie between two tokens of these random models. It runs on the reference's tokens, and its
// choice must equal the reference's wherever the reference's top two logits are further apart
// than kClearMargin times their RMS.
constexpr double kCpuBackendNmse = 1e-2;
constexpr double kClearMargin = 0.2;
// Leaving out the RoPE factors or the scaling moves the logits by an NMSE of 0.3 to 0.9.
constexpr double kAblationNmse = 1e-2;

struct Case {
  std::string name;
  model::SyntheticModelSpec spec;
  int prompt_tokens;
  int new_tokens;
  std::vector<std::string> ablations;  // reference flags that must change the logits
};

model::SyntheticModelSpec Small(const std::string& arch, int64_t n_embd, GgmlType type) {
  model::SyntheticModelSpec s;
  s.arch = arch;
  s.n_layer = 2;
  s.n_embd = n_embd;
  s.n_ff = n_embd == 64 ? 128 : 256;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.n_vocab = 300;
  s.n_ctx = 2048;
  s.type = type;
  s.seed = 11;
  s.n_threads = 1;
  return s;
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  cases.push_back({"llama_q8_0", Small("llama", 64, GgmlType::kQ8_0), 24, 8, {}});
  cases.push_back({"llama_q6_k", Small("llama", 256, GgmlType::kQ6_K), 24, 6, {}});
  Case yarn{"llama3_yarn_f16",
            Small("llama3", 64, GgmlType::kF16),
            300,
            6,
            {"--ignore-rope-freqs", "--ignore-rope-scaling"}};
  yarn.spec.rope_scaling = "yarn";
  yarn.spec.rope_scaling_factor = 4.0f;
  cases.push_back(yarn);
  Case linear{"llama3_linear_q4_0",
              Small("llama3", 64, GgmlType::kQ4_0),
              300,
              6,
              {"--ignore-rope-freqs", "--ignore-rope-scaling"}};
  linear.spec.rope_scaling = "linear";
  linear.spec.rope_scaling_factor = 2.0f;
  cases.push_back(linear);
  cases.push_back({"qwen3_q4_k", Small("qwen3", 256, GgmlType::kQ4_K), 40, 6, {}});
  cases.push_back({"qwen3_f32", Small("qwen3", 64, GgmlType::kF32), 40, 6, {}});
  // The other weight types, each against its dequantizer in tests/reference/dequantize.py.
  cases.push_back({"llama_q4_1", Small("llama", 64, GgmlType::kQ4_1), 24, 6, {}});
  cases.push_back({"llama_q5_0", Small("llama", 64, GgmlType::kQ5_0), 24, 6, {}});
  cases.push_back({"llama_q5_1", Small("llama", 64, GgmlType::kQ5_1), 24, 6, {}});
  cases.push_back({"qwen3_iq4_nl", Small("qwen3", 64, GgmlType::kIQ4_NL), 24, 6, {}});
  cases.push_back({"llama_q2_k", Small("llama", 256, GgmlType::kQ2_K), 24, 6, {}});
  cases.push_back({"llama_q3_k", Small("llama", 256, GgmlType::kQ3_K), 24, 6, {}});
  cases.push_back({"qwen3_q5_k", Small("qwen3", 256, GgmlType::kQ5_K), 24, 6, {}});
  cases.push_back({"qwen3_iq4_xs", Small("qwen3", 256, GgmlType::kIQ4_XS), 24, 6, {}});
  return cases;
}

// A fixed pseudo-random prompt over the non-special tokens.
std::vector<int32_t> Prompt(int n, int64_t n_vocab) {
  std::vector<int32_t> tokens = {1};  // BOS
  uint32_t state = 12345;
  while (static_cast<int>(tokens.size()) < n) {
    state = state * 1664525u + 1013904223u;
    tokens.push_back(3 + static_cast<int32_t>((state >> 8) % static_cast<uint32_t>(n_vocab - 3)));
  }
  return tokens;
}

struct Step {
  int32_t token = -1;
  std::vector<float> logits;
};

// run_reference.py's steps: `step <i> token <id> logits <v>...`.
std::vector<Step> RunReference(const std::string& model, const std::vector<int32_t>& prompt, int n,
                               const std::string& extra_flag = "") {
  std::vector<std::string> argv = {SWARM_PYTHON3,
                                   SWARM_SOURCE_DIR "/tests/reference/run_reference.py",
                                   model,
                                   "--tokens",
                                   absl::StrJoin(prompt, ","),
                                   "-n",
                                   absl::StrCat(n)};
  if (!extra_flag.empty()) argv.push_back(extra_flag);
  Subprocess::Options options;
  options.argv = argv;
  auto process = Subprocess::Start(options);
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return {};
  auto out = (*process)->ReadAll(std::chrono::seconds(240));
  EXPECT_TRUE(out.ok()) << out.status();
  auto code = (*process)->Wait(std::chrono::seconds(10));
  EXPECT_TRUE(code.ok() && *code == 0) << "run_reference.py failed";
  std::vector<Step> steps;
  if (!out.ok()) return steps;
  std::istringstream lines(*out);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string step_word, token_word, logits_word;
    int index = 0;
    Step step;
    words >> step_word >> index >> token_word >> step.token >> logits_word;
    if (!words || step_word != "step" || token_word != "token" || logits_word != "logits") {
      ADD_FAILURE() << "unexpected reference output: " << line.substr(0, 80);
      return {};
    }
    float v = 0;
    while (words >> v) step.logits.push_back(v);
    steps.push_back(std::move(step));
  }
  return steps;
}

// The engine's greedy steps, in-process: the prompt in one multi-token forward, then one token
// per step: its own choice, or forced[i] when given.
std::vector<Step> RunEngine(const std::string& path, const std::vector<int32_t>& prompt, int n,
                            const std::string& backend, const std::vector<int32_t>& forced = {}) {
  const kernels::KvTypes f32_cache{GgmlType::kF32, GgmlType::kF32};
  auto m = LocalModel::Load(path, {.name = backend, .threads = 1}, true, f32_cache);
  EXPECT_TRUE(m.ok()) << m.status();
  if (!m.ok()) return {};
  auto pipeline =
      LocalPipeline::Create(*(*m)->blocks, static_cast<int64_t>(prompt.size()) + n, f32_cache);
  EXPECT_TRUE(pipeline.ok()) << pipeline.status();
  if (!pipeline.ok()) return {};
  const int64_t n_embd = (*m)->config.n_embd, n_vocab = (*m)->config.n_vocab;
  std::vector<int32_t> input = prompt;
  std::vector<Step> steps;
  for (int i = 0; i < n; ++i) {
    const int64_t t = static_cast<int64_t>(input.size());
    std::vector<float> hidden(static_cast<size_t>(n_embd * t)), out(hidden.size());
    EXPECT_TRUE((*m)->head->Embed(input, hidden.data()).ok());
    EXPECT_TRUE((*pipeline)->Forward(t, hidden.data(), out.data()).ok());
    Step step;
    step.logits.resize(static_cast<size_t>(n_vocab));
    EXPECT_TRUE((*m)->head->Logits(out.data() + (t - 1) * n_embd, step.logits.data()).ok());
    step.token = static_cast<int32_t>(std::max_element(step.logits.begin(), step.logits.end()) -
                                      step.logits.begin());
    input = {forced.empty() ? step.token : forced[static_cast<size_t>(i)]};
    steps.push_back(std::move(step));
  }
  return steps;
}

class NumpyReferenceTest : public ::testing::TestWithParam<Case> {};

TEST_P(NumpyReferenceTest, GreedyTokensAndLogitsMatch) {
  ASSERT_STRNE(SWARM_PYTHON3, "")
      << "no Python 3 with NumPy was found at configure time: install python3-numpy "
         "(scripts/setup.sh) and reconfigure";
  const Case& c = GetParam();
  test_support::ScratchDir dir;
  const std::string path = dir.File(c.name + ".gguf");
  auto summary = model::WriteSyntheticModel(c.spec, path);
  ASSERT_TRUE(summary.ok()) << summary.status();
  const std::vector<int32_t> prompt = Prompt(c.prompt_tokens, summary->n_vocab);

  const std::vector<Step> reference = RunReference(path, prompt, c.new_tokens);
  ASSERT_EQ(static_cast<int>(reference.size()), c.new_tokens);
  std::vector<int32_t> reference_tokens;
  for (const Step& step : reference) reference_tokens.push_back(step.token);

  // The engine's reference backend: greedy on its own, the same tokens and logits.
  const std::vector<Step> exact = RunEngine(path, prompt, c.new_tokens, "reference");
  ASSERT_EQ(exact.size(), reference.size());
  test_support::NmseAccumulator exact_all;
  for (size_t i = 0; i < exact.size(); ++i) {
    EXPECT_LE(test_support::Nmse(exact[i].logits, reference[i].logits), kReferenceBackendNmse)
        << c.name << " step " << i;
    EXPECT_EQ(exact[i].token, reference[i].token) << c.name << " step " << i;
    exact_all.Add(exact[i].logits.data(), reference[i].logits.data(), exact[i].logits.size());
  }
  std::printf("%s, reference backend: %d greedy tokens equal, logits NMSE %.3g\n", c.name.c_str(),
              c.new_tokens, exact_all.nmse());

  // The optimized CPU backend on the reference's tokens.
  const std::vector<Step> cpu = RunEngine(path, prompt, c.new_tokens, "cpu", reference_tokens);
  ASSERT_EQ(cpu.size(), reference.size());
  test_support::NmseAccumulator cpu_all;
  int clear = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const std::vector<float>& want = reference[i].logits;
    EXPECT_LE(test_support::Nmse(cpu[i].logits, want), kCpuBackendNmse) << c.name << " step " << i;
    cpu_all.Add(cpu[i].logits.data(), want.data(), want.size());
    std::vector<float> sorted = want;
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
    double energy = 0;
    for (float v : want) energy += static_cast<double>(v) * v;
    const double rms = std::sqrt(energy / static_cast<double>(want.size()));
    if (sorted[0] - sorted[1] > kClearMargin * rms) {
      ++clear;
      EXPECT_EQ(cpu[i].token, reference[i].token) << c.name << " step " << i;
    }
  }
  std::printf("%s, cpu backend: logits NMSE %.3g, %d of %d clear choices checked\n", c.name.c_str(),
              cpu_all.nmse(), clear, c.new_tokens);

  // Each ablation (the reference without the factors, or without the scaling) is far off: the
  // prompt is long enough that what it leaves out matters.
  for (const std::string& flag : c.ablations) {
    const std::vector<Step> ablated = RunReference(path, prompt, 1, flag);
    ASSERT_EQ(ablated.size(), 1u);
    const double nmse = test_support::Nmse(exact[0].logits, ablated[0].logits);
    std::printf("%s: reference %s: logits NMSE %.3g\n", c.name.c_str(), flag.c_str(), nmse);
    EXPECT_GT(nmse, kAblationNmse) << c.name << " " << flag;
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, NumpyReferenceTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace swarm::shard
