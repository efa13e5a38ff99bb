// The engine against an independent reference: tests/reference/run_reference.py, a float64 numpy
// forward that reads the GGUF itself (own reader, own dequantizers). On small synthetic models of
// each architecture (llama; llama3 with rope_freqs and YaRN or linear scaling, at prompts long
// enough for the factors to matter; qwen3 with its q/k norms and a head size other than
// n_embd / n_head), greedy tokens must be equal and every step's logits within an NMSE bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/subprocess.h"
#include "model/synthetic_model.h"
#include "shard/local_model.h"
#include "shard/local_pipeline.h"
#include "support/files.h"
#include "support/nmse.h"

namespace swarm::shard {
namespace {

using kernels::GgmlType;

// Quantized weights meet activations rounded to 8 bits in the optimized CPU backend (as in
// llama.cpp), and the engine computes in float, the reference in double: the logits' NMSE stays
// far below this bound (measured values are printed), while leaving out the RoPE factors or the
// scaling moves it above 1e-2.
constexpr double kLogitsNmseBound = 1e-4;

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
  auto process = Subprocess::Start({.argv = argv});
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return {};
  auto out = (*process)->ReadAll(std::chrono::seconds(240));
  EXPECT_TRUE(out.ok()) << out.status();
  auto code = (*process)->Wait(std::chrono::seconds(10));
  EXPECT_TRUE(code.ok() && *code == 0) << "run_reference.py failed";
  std::vector<Step> steps;
  if (!out.ok()) return steps;
  for (std::string_view line : absl::StrSplit(*out, '\n', absl::SkipEmpty())) {
    std::vector<std::string_view> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (words.size() < 6 || words[0] != "step" || words[2] != "token" || words[4] != "logits") {
      ADD_FAILURE() << "unexpected reference output: " << line.substr(0, 80);
      return {};
    }
    Step step;
    EXPECT_TRUE(absl::SimpleAtoi(words[3], &step.token));
    for (size_t i = 5; i < words.size(); ++i) {
      float v = 0;
      EXPECT_TRUE(absl::SimpleAtof(words[i], &v));
      step.logits.push_back(v);
    }
    steps.push_back(std::move(step));
  }
  return steps;
}

// The engine's greedy steps, in-process: the prompt in one multi-token forward, then one token
// per step.
std::vector<Step> RunEngine(const std::string& path, const std::vector<int32_t>& prompt, int n,
                            const std::string& backend) {
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
    input = {step.token};
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
  for (const std::string backend : {"cpu", "reference"}) {
    const std::vector<Step> engine = RunEngine(path, prompt, c.new_tokens, backend);
    ASSERT_EQ(engine.size(), reference.size());
    test_support::NmseAccumulator all;
    for (size_t i = 0; i < engine.size(); ++i) {
      ASSERT_EQ(engine[i].logits.size(), reference[i].logits.size());
      const double nmse = test_support::Nmse(engine[i].logits, reference[i].logits);
      all.Add(engine[i].logits.data(), reference[i].logits.data(), engine[i].logits.size());
      EXPECT_LE(nmse, kLogitsNmseBound) << c.name << " " << backend << " step " << i;
      EXPECT_EQ(engine[i].token, reference[i].token) << c.name << " " << backend << " step " << i;
    }
    std::printf("%s, %s backend: logits NMSE %.3g over %zu steps\n", c.name.c_str(),
                backend.c_str(), all.nmse(), engine.size());
    if (backend != "cpu") continue;
    // Each ablation (the reference without the factors, or without the scaling) must be far off:
    // the prompt is long enough that what it leaves out matters.
    for (const std::string& flag : c.ablations) {
      const std::vector<Step> ablated = RunReference(path, prompt, 1, flag);
      ASSERT_EQ(ablated.size(), 1u);
      const double nmse = test_support::Nmse(engine[0].logits, ablated[0].logits);
      std::printf("%s: reference %s: logits NMSE %.3g\n", c.name.c_str(), flag.c_str(), nmse);
      EXPECT_GT(nmse, 100 * kLogitsNmseBound) << c.name << " " << flag;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, NumpyReferenceTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace swarm::shard
