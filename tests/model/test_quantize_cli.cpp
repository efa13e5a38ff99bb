// `swarm quantize` as a user runs it: a synthetic F32 model (`swarm make-model`) quantized by each
// scheme; the output loads and generates, its Q8_0 tensors equal the reference quantizer on the
// source rows, every tensor has the type llama.cpp's rules give it (read back with `swarm
// inspect`, expected types written out here independently of the engine), and bad input fails
// with a clear error.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gguf_test_util.h"
#include "kernels/ggml_type.h"
#include "kernels/quant_reference.h"
#include "model/gguf.h"

namespace swarm::model {
namespace {

using ::testing::HasSubstr;

struct Result {
  int status = -1;
  std::string out;
  std::string err;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// 8 blocks so that the per-layer rules differ between layers; rows of 256 for the K types;
// 4 heads sharing one KV head (grouped-query attention, n_gqa 4).
constexpr int kLayers = 8;
const char* kShape =
    "--n-layer 8 --n-embd 256 --n-ff 512 --n-head 4 --n-head-kv 1 --n-vocab 300 --context 128";

class QuantizeCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test_support::ScratchDir();
    Result r = Run(absl::StrCat("make-model ", kShape, " --type f32 --seed 3 -o '",
                                dir_->File("f32.gguf"), "'"));
    ASSERT_EQ(r.status, 0) << r.err;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static Result Run(const std::string& args) {
    const std::string out = dir_->File("stdout"), err = dir_->File("stderr");
    const std::string command = std::string("'") + SWARM_BINARY + "' " + args + " > '" + out +
                                "' 2> '" + err + "' < /dev/null";
    const int raw = std::system(command.c_str());
    Result r;
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    r.out = Slurp(out);
    r.err = Slurp(err);
    return r;
  }
  static std::string Source() { return dir_->File("f32.gguf"); }
  static Result Quantize(const std::string& type, const std::string& out) {
    return Run(absl::StrCat("quantize -t 2 '", Source(), "' '", out, "' ", type));
  }
  // name -> type as `swarm inspect` prints them (lower case).
  static std::map<std::string, std::string> InspectTypes(const std::string& path) {
    Result r = Run("inspect '" + path + "'");
    EXPECT_EQ(r.status, 0) << r.err;
    std::map<std::string, std::string> types;
    std::istringstream lines(r.out);
    std::string line;
    bool in_tensors = false;
    while (std::getline(lines, line)) {
      if (line.rfind("tensors (", 0) == 0) {
        in_tensors = true;
        continue;
      }
      if (line.rfind("model config", 0) == 0) in_tensors = false;
      std::istringstream fields(line);
      std::string index, name, type;
      if (in_tensors && fields >> index >> name >> type && index != "#") {
        types[name] = absl::AsciiStrToLower(type);
      }
    }
    return types;
  }
  static test_support::ScratchDir* dir_;
};
test_support::ScratchDir* QuantizeCli::dir_ = nullptr;

TEST_F(QuantizeCli, EveryImplementedTypeLoadsAndGenerates) {
  for (const char* type : {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
                           "Q6_K", "IQ4_NL", "IQ4_XS", "F16", "BF16"}) {
    const std::string out = dir_->File(absl::StrCat("m-", type, ".gguf"));
    Result r = Quantize(type, out);
    ASSERT_EQ(r.status, 0) << type << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("blk.7.ffn_down.weight")) << "one line per tensor";
    r = Run("generate -m '" + out + "' -p '' -n 8 --temp 0 --backend reference");
    EXPECT_EQ(r.status, 0) << type << ": " << r.err;
    EXPECT_FALSE(r.out.empty()) << type;
  }
}

TEST_F(QuantizeCli, Q8_0TensorsEqualTheReferenceQuantizerOnTheSourceRows) {
  const std::string out = dir_->File("q8.gguf");
  Result r = Quantize("q8_0", out);  // names are case-insensitive
  ASSERT_EQ(r.status, 0) << r.err;
  auto src = GgufFile::Open(Source());
  auto dst = GgufFile::Open(out);
  ASSERT_TRUE(src.ok() && dst.ok());
  EXPECT_EQ(*(*dst)->GetUint("general.file_type"), 7u);  // LLAMA_FTYPE_MOSTLY_Q8_0
  EXPECT_EQ((*dst)->metadata().size(), (*src)->metadata().size() + 1)
      << "every key copied, general.quantization_version added";
  EXPECT_EQ(*(*dst)->GetString("general.name"), *(*src)->GetString("general.name"));
  ASSERT_EQ((*dst)->tensors().size(), (*src)->tensors().size());
  int quantized = 0;
  for (const GgufTensorInfo& t : (*dst)->tensors()) {
    const GgufTensorInfo* s = (*src)->FindTensor(t.name);
    ASSERT_NE(s, nullptr) << t.name;
    const auto src_bytes = (*src)->TensorData(*s);
    const auto dst_bytes = (*dst)->TensorData(t);
    if (s->n_dims == 1) {
      EXPECT_EQ(t.type, kernels::GgmlType::kF32) << t.name;
      EXPECT_TRUE(
          std::equal(src_bytes.begin(), src_bytes.end(), dst_bytes.begin(), dst_bytes.end()))
          << t.name;
      continue;
    }
    ASSERT_EQ(t.type, kernels::GgmlType::kQ8_0) << t.name;
    const int64_t n = t.ne[0], rows = t.n_elements() / n;
    std::vector<uint8_t> expected(static_cast<size_t>(rows) * (n / 32) * 34);
    const auto* f = reinterpret_cast<const float*>(src_bytes.data());
    for (int64_t r = 0; r < rows; ++r) {
      kernels::QuantizeRow(kernels::GgmlType::kQ8_0, f + r * n, expected.data() + r * (n / 32) * 34,
                           n);
    }
    EXPECT_TRUE(std::equal(expected.begin(), expected.end(), dst_bytes.begin(), dst_bytes.end()))
        << t.name;
    ++quantized;
  }
  EXPECT_EQ(quantized, 2 + 7 * kLayers);  // token_embd, output and 7 matrices per block
}

// The per-layer rule of the _M schemes: more bits for the first and last eighth and every third.
bool MoreBits(int i) {
  return i < kLayers / 8 || i >= 7 * kLayers / 8 || (i - kLayers / 8) % 3 == 2;
}

// llama.cpp's choice for each tensor of the model above (n_gqa 4, 8 blocks), written out.
std::map<std::string, std::string> ExpectedTypes(const std::string& scheme) {
  std::map<std::string, std::string> t;
  // The type most matrices get: the scheme's name up to the _S/_M suffix.
  std::string base = absl::AsciiStrToLower(scheme);
  if (base.size() > 4 && (base.ends_with("_m") || base.ends_with("_s"))) base.resize(4);
  t["token_embd.weight"] = base;
  t["output.weight"] = scheme == "Q8_0" ? "q8_0" : "q6_k";
  t["output_norm.weight"] = "f32";
  for (int i = 0; i < kLayers; ++i) {
    const std::string b = absl::StrCat("blk.", i, ".");
    t[b + "attn_norm.weight"] = t[b + "ffn_norm.weight"] = "f32";
    auto& q = t[b + "attn_q.weight"];
    auto& k = t[b + "attn_k.weight"];
    auto& v = t[b + "attn_v.weight"];
    auto& o = t[b + "attn_output.weight"];
    auto& gate = t[b + "ffn_gate.weight"];
    auto& up = t[b + "ffn_up.weight"];
    auto& down = t[b + "ffn_down.weight"];
    q = k = v = o = gate = up = down = base;
    if (scheme == "Q4_K_M" || scheme == "Q5_K_M") {
      v = down = MoreBits(i) ? "q6_k" : base;
    } else if (scheme == "Q4_K_S") {
      if (i < 4) v = "q5_k";               // the first four attn_v
      if (i < kLayers / 8) down = "q5_k";  // the first eighth of ffn_down
    } else if (scheme == "Q3_K_M") {
      v = i < 2 ? "q5_k" : "q4_k";
      down = i < kLayers / 16 ? "q5_k" : "q4_k";
      o = "q4_k";
    } else if (scheme == "Q2_K") {
      v = "q4_k";  // n_gqa >= 4
      down = o = "q3_k";
    } else if (scheme == "IQ4_XS" || scheme == "IQ4_NL") {
      v = "q5_k";  // n_gqa >= 4
      if (i < kLayers / 8) down = "q5_k";
    }
  }
  return t;
}

TEST_F(QuantizeCli, MixturesGiveEachTensorLlamaCppsType) {
  for (const std::string scheme :
       {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_M", "Q4_K_S", "Q4_K_M", "Q5_K_S",
        "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"}) {
    SCOPED_TRACE(scheme);
    const std::string out = dir_->File("mix-" + scheme + ".gguf");
    Result r = Quantize(scheme, out);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(InspectTypes(out), ExpectedTypes(scheme));
  }
  // llama-quantize's aliases: the same file as the _M scheme, file type included.
  for (const std::string alias : {"Q3_K", "Q4_K", "Q5_K"}) {
    SCOPED_TRACE(alias);
    const std::string out = dir_->File("alias-" + alias + ".gguf");
    ASSERT_EQ(Quantize(alias, out).status, 0);
    const std::string m = Slurp(dir_->File("mix-" + alias + "_M.gguf"));
    ASSERT_FALSE(m.empty());
    EXPECT_TRUE(Slurp(out) == m) << "differs from " << alias << "_M";
  }
}

TEST_F(QuantizeCli, RowsNotWholeBlocksFallBackOrFailNamingTheType) {
  // Rows of 64: no K type fits. Q6_K falls back to Q8_0 (the output to Q8_0 as well).
  const std::string narrow = dir_->File("narrow.gguf");
  Result r = Run("make-model --preset stories260k-shape --type f32 -o '" + narrow + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string out = dir_->File("narrow-q6.gguf");
  r = Run("quantize '" + narrow + "' '" + out + "' Q6_K");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("Q8_0 instead"));
  // ffn_down's rows of 172 are not whole Q8_0 blocks either: F16.
  for (const auto& [name, type] : InspectTypes(out)) {
    const bool norm = name.find("norm") != std::string::npos;
    const bool down = name.find("ffn_down") != std::string::npos;
    EXPECT_EQ(type, norm ? "f32" : down ? "f16" : "q8_0") << name;
  }
  // Q4_K's fallback is Q5_0.
  const std::string q4k = dir_->File("narrow-q4k.gguf");
  r = Run("quantize '" + narrow + "' '" + q4k + "' Q4_K_M");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("Q5_0 instead"));
  // Q5_K's is Q5_1, Q3_K's and Q2_K's IQ4_NL (llama.cpp's): the model loads and generates.
  for (const auto& [scheme, fallback] : {std::pair<std::string, std::string>{"Q5_K_S", "q5_1"},
                                         {"Q3_K_M", "iq4_nl"},
                                         {"Q2_K", "iq4_nl"}}) {
    SCOPED_TRACE(scheme);
    const std::string path = dir_->File("narrow-" + scheme + ".gguf");
    r = Run("quantize '" + narrow + "' '" + path + "' " + scheme);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_THAT(r.err, HasSubstr(absl::AsciiStrToUpper(fallback) + " instead"));
    int with_fallback = 0;
    for (const auto& [name, type] : InspectTypes(path)) with_fallback += type == fallback;
    EXPECT_GT(with_fallback, 0);
    r = Run("generate -m '" + path + "' -p '' -n 4 --temp 0");
    EXPECT_EQ(r.status, 0) << r.err;
  }
}

TEST_F(QuantizeCli, BadInputGivesAClearError) {
  Result r = Quantize("Q9_9", dir_->File("x.gguf"));
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown quantization type \"Q9_9\""));
  EXPECT_THAT(r.err, HasSubstr("Q4_K_M"));

  const std::string truncated = dir_->File("truncated.gguf");
  const std::string whole = Slurp(Source());
  std::ofstream(truncated, std::ios::binary) << whole.substr(0, whole.size() / 2);
  r = Run("quantize '" + truncated + "' '" + dir_->File("y.gguf") + "' Q8_0");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, HasSubstr("error: "));
  EXPECT_THAT(r.err, HasSubstr("truncated.gguf"));
  EXPECT_EQ(Slurp(dir_->File("y.gguf")), "");

  r = Run("quantize '" + dir_->File("missing.gguf") + "' '" + dir_->File("y.gguf") + "' Q8_0");
  EXPECT_EQ(r.status, 1);
  r = Run("quantize /dev/null '" + dir_->File("y.gguf") + "' Q8_0");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, HasSubstr("error: "));

  // A quantized source is refused (requantizing loses precision).
  const std::string q8 = dir_->File("src-q8.gguf");
  ASSERT_EQ(Quantize("Q8_0", q8).status, 0);
  r = Run("quantize '" + q8 + "' '" + dir_->File("z.gguf") + "' Q4_0");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, HasSubstr("reads F32, F16 or BF16 models"));
}

}  // namespace
}  // namespace swarm::model
