#include "model/synthetic_model.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <numbers>
#include <system_error>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "base/status_macros.h"
#include "kernels/quant_reference.h"
#include "model/gguf.h"
#include "model/gguf_writer.h"

namespace swarm::model {

namespace {

using kernels::GgmlType;

// Rows are generated and quantized in batches of about this many output bytes, so memory stays
// bounded whatever the model's size.
constexpr size_t kBatchBytes = size_t{8} << 20;
// Below this many elements a batch is not worth spreading over threads.
constexpr int64_t kParallelThreshold = int64_t{1} << 16;

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t HashName(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

// kNearOne: 1 + uniform (a norm whose weights matter); kGiven: TensorPlan::values.
enum class Fill { kOnes, kUniform, kNearOne, kGiven };

struct TensorPlan {
  std::string name;
  GgmlType type;
  std::vector<int64_t> ne;  // [n_in], [n_in, n_out] or [n_in, n_out, n_expert]
  Fill fill;
  float scale;                // half-width of the uniform distribution
  std::vector<float> values;  // kGiven: the 1-D tensor's contents
};

// Where a synthetic model of `arch` gets its shape facts (file architecture, head size, RoPE).
// Mixtral files are "llama" files with experts.
std::string FileArch(const SyntheticModelSpec& s) {
  return s.arch == "llama3" || s.arch == "mixtral" ? "llama" : s.arch;
}

bool IsMoe(const SyntheticModelSpec& s) { return s.arch == "mixtral" || s.arch == "qwen3moe"; }
bool IsQwen3(const SyntheticModelSpec& s) { return s.arch == "qwen3" || s.arch == "qwen3moe"; }
int64_t ExpertWidth(const SyntheticModelSpec& s) { return s.n_ff_exp > 0 ? s.n_ff_exp : s.n_ff; }

int64_t HeadDim(const SyntheticModelSpec& s) {
  if (s.head_dim > 0) return s.head_dim;
  return IsQwen3(s) ? 2 * (s.n_embd / s.n_head) : s.n_embd / s.n_head;
}

float RopeBase(const SyntheticModelSpec& s) {
  if (s.arch == "llama3") return 500000.0f;
  return s.arch == "llama" ? 10000.0f : 1000000.0f;
}

// Llama 3.1's frequency factors (its published rope-scaling rule: factor 8, low-frequency factor
// 1, high-frequency factor 4) for an original context of n_ctx / 8, so that at this synthetic
// model's short context most low frequencies are slowed down.
std::vector<float> Llama3RopeFactors(const SyntheticModelSpec& s) {
  const int64_t d = HeadDim(s);
  const double factor = 8.0, low = 1.0, high = 4.0;
  const double original = std::max<double>(16.0, static_cast<double>(s.n_ctx) / 8.0);
  const double low_wavelen = original / low, high_wavelen = original / high;
  std::vector<float> f;
  for (int64_t i = 0; i < d / 2; ++i) {
    const double freq = std::pow(static_cast<double>(RopeBase(s)), -2.0 * i / d);
    const double wavelen = 2.0 * std::numbers::pi / freq;
    if (wavelen < high_wavelen) {
      f.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      f.push_back(static_cast<float>(factor));
    } else {
      const double smooth = (original / wavelen - low) / (high - low);
      f.push_back(static_cast<float>(1.0 / ((1.0 - smooth) / factor + smooth)));
    }
  }
  return f;
}

// llama.cpp's LLAMA_FTYPE for a file whose matrices are all of one type.
uint32_t FileType(GgmlType t) {
  switch (t) {
    case GgmlType::kF32:
      return 0;
    case GgmlType::kF16:
      return 1;
    case GgmlType::kQ4_0:
      return 2;
    case GgmlType::kQ8_0:
      return 7;
    case GgmlType::kQ4_1:
      return 3;
    case GgmlType::kQ5_0:
      return 8;
    case GgmlType::kQ5_1:
      return 9;
    case GgmlType::kIQ4_NL:
      return 25;
    case GgmlType::kQ4_K:
      return 14;  // Q4_K_S
    case GgmlType::kQ5_K:
      return 16;  // Q5_K_S
    case GgmlType::kQ6_K:
      return 18;
    case GgmlType::kQ2_K:
      return 10;
    case GgmlType::kQ3_K:
      return 11;  // Q3_K_S
    case GgmlType::kIQ4_XS:
      return 30;
    case GgmlType::kBF16:
      return 32;
    default:
      return 0;
  }
}

// The requested type if rows of n_in fit its blocks; else the fallback llama.cpp would pick.
GgmlType MatrixType(GgmlType requested, int64_t n_in) {
  if (kernels::RowBytes(requested, n_in).ok()) return requested;
  if (n_in % kernels::kQK8_0 == 0) return GgmlType::kQ8_0;
  return GgmlType::kF16;
}

absl::Status Validate(const SyntheticModelSpec& s) {
  if (s.arch != "llama" && s.arch != "llama3" && s.arch != "qwen2" && s.arch != "qwen3" &&
      !IsMoe(s)) {
    return absl::InvalidArgumentError(
        absl::StrCat("architecture '", s.arch,
                     "' is not one of llama, llama3, qwen2, qwen3, mixtral, qwen3moe"));
  }
  if (IsMoe(s) && (s.n_expert < 1 || s.n_expert > 1024 || s.n_expert_used < 1 ||
                   s.n_expert_used > s.n_expert || s.n_ff_exp < 0 || s.n_ff_exp > (1 << 18))) {
    return absl::InvalidArgumentError(
        absl::StrCat("experts ", s.n_expert, " (used ", s.n_expert_used, ", width ", s.n_ff_exp,
                     ") expected 1..1024 experts, 1..experts used, width 0..262144"));
  }
  if (!s.rope_scaling.empty() && s.rope_scaling != "none" && s.rope_scaling != "linear" &&
      s.rope_scaling != "yarn") {
    return absl::InvalidArgumentError(
        absl::StrCat("RoPE scaling '", s.rope_scaling, "' is not one of none, linear, yarn"));
  }
  if (!(s.rope_scaling_factor >= 1.0f && s.rope_scaling_factor <= 1024.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("RoPE scaling factor ", s.rope_scaling_factor, " is not in [1, 1024]"));
  }
  struct Bound {
    const char* name;
    int64_t value, max;
  };
  for (const Bound& b :
       {Bound{"n_layer", s.n_layer, 4096}, Bound{"n_embd", s.n_embd, 1 << 16},
        Bound{"n_ff", s.n_ff, 1 << 18}, Bound{"n_head", s.n_head, 1024},
        Bound{"n_head_kv", s.n_head_kv, 1024}, Bound{"n_ctx", s.n_ctx, int64_t{1} << 24}}) {
    if (b.value <= 0 || b.value > b.max) {
      return absl::InvalidArgumentError(
          absl::StrCat(b.name, " is ", b.value, ", expected 1..", b.max));
    }
  }
  if (s.head_dim < 0 || s.head_dim > 1024 || s.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("head_dim ", s.head_dim, " is not an even number in 0..1024"));
  }
  if (s.head_dim == 0 && (s.n_embd % s.n_head != 0 || (s.n_embd / s.n_head) % 2 != 0)) {
    return absl::InvalidArgumentError(absl::StrCat("n_embd ", s.n_embd, " must be n_head (",
                                                   s.n_head, ") times an even head dimension"));
  }
  if (s.n_head % s.n_head_kv != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("n_head ", s.n_head, " is not a multiple of n_head_kv ", s.n_head_kv));
  }
  if (!kernels::IsWeightType(s.type)) {
    return absl::InvalidArgumentError(absl::StrCat("type ", ToAbsl(kernels::GgmlTypeName(s.type)),
                                                   " is not a weight type (",
                                                   kernels::WeightTypeNames(), ")"));
  }
  return absl::OkStatus();
}

// tokenizer.* metadata: copied from a GGUF, or a small SPM vocabulary. Returns n_vocab.
absl::StatusOr<int64_t> WriteVocabulary(const SyntheticModelSpec& s, GgufWriter& w) {
  if (!s.vocab_path.empty()) {
    SWARM_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> vocab, GgufFile::Open(s.vocab_path));
    SWARM_ASSIGN_OR_RETURN(std::vector<std::string_view> tokens,
                           vocab->GetStringArray("tokenizer.ggml.tokens"));
    if (tokens.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(s.vocab_path, " has no tokens"));
    }
    for (const auto& [key, value] : vocab->metadata()) {
      if (key.rfind("tokenizer.", 0) == 0) SWARM_RETURN_IF_ERROR(w.SetValue(key, value));
    }
    return static_cast<int64_t>(tokens.size());
  }
  const int64_t n = s.n_vocab;
  if (n < 259 || n > (1 << 22)) {
    return absl::InvalidArgumentError(
        absl::StrCat("n_vocab is ", n,
                     ": the built-in vocabulary needs 259..4194304 tokens "
                     "(<unk>, <s>, </s> and 256 byte tokens); or pass a vocabulary GGUF"));
  }
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};  // unknown, control, control
  for (int b = 0; b < 256; ++b) {
    static constexpr char kHex[] = "0123456789ABCDEF";  // upper case, as SentencePiece writes
    tokens.push_back(absl::StrCat("<0x", std::string{kHex[b >> 4], kHex[b & 15]}, ">"));
    types.push_back(6);  // byte
  }
  // Pieces SentencePiece merges reach: "▁", printable ASCII, "▁x", then two-letter pairs; the rest
  // are unique fillers that no text produces.
  const std::string space = "\xE2\x96\x81";
  std::vector<std::string> pieces = {space};
  for (char c = '!'; c <= '~'; ++c) pieces.push_back(std::string(1, c));
  for (char c = 'a'; c <= 'z'; ++c) pieces.push_back(space + c);
  for (char a = 'a'; a <= 'z'; ++a) {
    for (char b = 'a'; b <= 'z'; ++b) pieces.push_back(std::string{a, b});
  }
  for (char a = 'a'; a <= 'z'; ++a) {
    for (char b = 'a'; b <= 'z'; ++b) pieces.push_back(space + a + b);
  }
  for (size_t i = 0; tokens.size() < static_cast<size_t>(n); ++i) {
    tokens.push_back(i < pieces.size() ? pieces[i] : absl::StrCat("<filler_", i, ">"));
    types.push_back(1);  // normal
  }
  std::vector<float> scores(tokens.size(), 0.0f);
  for (size_t i = 259; i < scores.size(); ++i) scores[i] = -static_cast<float>(i - 259);
  w.SetString("tokenizer.ggml.model", "llama");
  w.SetString("tokenizer.ggml.pre", "default");
  w.SetStringArray("tokenizer.ggml.tokens", tokens);
  w.SetFloat32Array("tokenizer.ggml.scores", scores);
  w.SetInt32Array("tokenizer.ggml.token_type", types);
  w.SetUint32("tokenizer.ggml.unknown_token_id", 0);
  w.SetUint32("tokenizer.ggml.bos_token_id", 1);
  w.SetUint32("tokenizer.ggml.eos_token_id", 2);
  w.SetBool("tokenizer.ggml.add_bos_token", true);
  w.SetBool("tokenizer.ggml.add_eos_token", false);
  return n;
}

std::vector<TensorPlan> PlanTensors(const SyntheticModelSpec& s, int64_t n_vocab) {
  const int64_t e = s.n_embd, hd = HeadDim(s), q = hd * s.n_head, kv = hd * s.n_head_kv;
  const int64_t ff = s.n_ff;
  // Uniform in [-a, a] has standard deviation a / sqrt(3): a = sqrt(3 / n_in) gives 1/sqrt(n_in),
  // which keeps each matrix product at unit scale, so activations stay finite through any depth.
  auto matrix = [&](std::string name, int64_t n_in, int64_t n_out) {
    return TensorPlan{std::move(name),
                      MatrixType(s.type, n_in),
                      {n_in, n_out},
                      Fill::kUniform,
                      std::sqrt(3.0f / static_cast<float>(n_in)),
                      {}};
  };
  auto norm = [](std::string name, int64_t n) {
    return TensorPlan{std::move(name), GgmlType::kF32, {n}, Fill::kOnes, 0.0f, {}};
  };
  auto bias = [](std::string name, int64_t n) {
    return TensorPlan{std::move(name), GgmlType::kF32, {n}, Fill::kUniform, 0.1f, {}};
  };
  std::vector<TensorPlan> t = {matrix("token_embd.weight", e, n_vocab),
                               norm("output_norm.weight", e), matrix("output.weight", e, n_vocab)};
  if (s.arch == "llama3") {
    t.push_back(TensorPlan{
        "rope_freqs.weight", GgmlType::kF32, {hd / 2}, Fill::kGiven, 0.0f, Llama3RopeFactors(s)});
  }
  for (int64_t il = 0; il < s.n_layer; ++il) {
    const std::string p = absl::StrCat("blk.", il, ".");
    t.push_back(norm(p + "attn_norm.weight", e));
    t.push_back(matrix(p + "attn_q.weight", e, q));
    t.push_back(matrix(p + "attn_k.weight", e, kv));
    t.push_back(matrix(p + "attn_v.weight", e, kv));
    if (s.arch == "qwen2") {
      t.push_back(bias(p + "attn_q.bias", q));
      t.push_back(bias(p + "attn_k.bias", kv));
      t.push_back(bias(p + "attn_v.bias", kv));
    }
    if (IsQwen3(s)) {
      t.push_back(
          TensorPlan{p + "attn_q_norm.weight", GgmlType::kF32, {hd}, Fill::kNearOne, 0.25f, {}});
      t.push_back(
          TensorPlan{p + "attn_k_norm.weight", GgmlType::kF32, {hd}, Fill::kNearOne, 0.25f, {}});
    }
    t.push_back(matrix(p + "attn_output.weight", q, e));
    t.push_back(norm(p + "ffn_norm.weight", e));
    if (IsMoe(s)) {
      // As llama.cpp writes them: the router stays f32; experts are [n_in, n_out, n_expert].
      const int64_t ne = s.n_expert;
      TensorPlan router = matrix(p + "ffn_gate_inp.weight", e, ne);
      router.type = GgmlType::kF32;
      t.push_back(router);
      auto experts = [&](std::string name, int64_t n_in, int64_t n_out) {
        TensorPlan plan = matrix(std::move(name), n_in, n_out);
        plan.ne.push_back(ne);
        return plan;
      };
      const int64_t fe = ExpertWidth(s);
      t.push_back(experts(p + "ffn_gate_exps.weight", e, fe));
      t.push_back(experts(p + "ffn_down_exps.weight", fe, e));
      t.push_back(experts(p + "ffn_up_exps.weight", e, fe));
      continue;
    }
    t.push_back(matrix(p + "ffn_gate.weight", e, ff));
    t.push_back(matrix(p + "ffn_up.weight", e, ff));
    t.push_back(matrix(p + "ffn_down.weight", ff, e));
  }
  return t;
}

// out: [n_in] values of row `row` of tensor `plan`, a function of (seed, name, row) only.
void FillRow(const TensorPlan& plan, uint64_t seed, int64_t row, float* out) {
  const int64_t n = plan.ne[0];
  if (plan.fill == Fill::kOnes) {
    std::fill(out, out + n, 1.0f);
    return;
  }
  if (plan.fill == Fill::kGiven) {
    std::copy(plan.values.begin(), plan.values.end(), out);
    return;
  }
  uint64_t state =
      seed ^ HashName(plan.name) ^ (static_cast<uint64_t>(row) * 0xd1342543de82ef95ull);
  SplitMix64(state);
  for (int64_t i = 0; i < n; i += 2) {
    const uint64_t r = SplitMix64(state);
    // Two 24-bit uniforms in [-1, 1) per 64 random bits.
    out[i] = (static_cast<float>(r >> 40) * 0x1p-23f - 1.0f) * plan.scale;
    if (i + 1 < n)
      out[i + 1] = (static_cast<float>((r >> 8) & 0xffffff) * 0x1p-23f - 1.0f) * plan.scale;
  }
  if (plan.fill == Fill::kNearOne) {
    for (int64_t i = 0; i < n; ++i) out[i] += 1.0f;
  }
}

// Quantizes rows [first, last) of `plan` into dst (row r at dst + (r - first) * row_bytes), using
// `row`: [n_in] as scratch. Allocates nothing, so it cannot throw inside a worker thread.
void MakeRows(const TensorPlan& plan, uint64_t seed, int64_t first, int64_t last, size_t row_bytes,
              float* row, uint8_t* dst) {
  for (int64_t r = first; r < last; ++r) {
    FillRow(plan, seed, r, row);
    kernels::QuantizeRow(plan.type, row, dst + static_cast<size_t>(r - first) * row_bytes,
                         plan.ne[0]);
  }
}

absl::Status WriteTensor(const TensorPlan& plan, uint64_t seed, int n_threads, GgufWriter& w) {
  SWARM_ASSIGN_OR_RETURN(size_t row_bytes, kernels::RowBytes(plan.type, plan.ne[0]));
  int64_t n_rows = 1;
  for (size_t d = 1; d < plan.ne.size(); ++d) n_rows *= plan.ne[d];
  const int64_t batch_rows =
      std::clamp<int64_t>(static_cast<int64_t>(kBatchBytes / row_bytes), 1, n_rows);
  std::vector<uint8_t> buffer(static_cast<size_t>(batch_rows) * row_bytes);
  const size_t n_in = static_cast<size_t>(plan.ne[0]);
  std::vector<float> scratch(n_in * static_cast<size_t>(std::max(1, n_threads)));
  for (int64_t start = 0; start < n_rows; start += batch_rows) {
    const int64_t rows = std::min(batch_rows, n_rows - start);
    const int workers = rows * plan.ne[0] < kParallelThreshold
                            ? 1
                            : static_cast<int>(std::min<int64_t>(n_threads, rows));
    if (workers <= 1) {
      MakeRows(plan, seed, start, start + rows, row_bytes, scratch.data(), buffer.data());
    } else {
      std::vector<std::thread> threads;
      threads.reserve(static_cast<size_t>(workers));
      try {
        for (int k = 0; k < workers; ++k) {
          const int64_t lo = start + rows * k / workers, hi = start + rows * (k + 1) / workers;
          uint8_t* dst = buffer.data() + static_cast<size_t>(lo - start) * row_bytes;
          float* row = scratch.data() + static_cast<size_t>(k) * n_in;
          threads.emplace_back([&plan, seed, lo, hi, row_bytes, row, dst] {
            MakeRows(plan, seed, lo, hi, row_bytes, row, dst);
          });
        }
      } catch (...) {
        for (std::thread& t : threads) t.join();  // a joinable thread must not be destroyed
        throw;
      }
      for (std::thread& t : threads) t.join();
    }
    SWARM_RETURN_IF_ERROR(
        w.WriteTensorData({buffer.data(), static_cast<size_t>(rows) * row_bytes}));
  }
  return absl::OkStatus();
}

absl::StatusOr<SyntheticModelSummary> Write(const SyntheticModelSpec& spec,
                                            const std::string& path) {
  SWARM_RETURN_IF_ERROR(Validate(spec));
  GgufWriter w;
  const std::string a = FileArch(spec);
  w.SetString("general.architecture", a);
  w.SetString("general.name",
              spec.name.empty()
                  ? absl::StrCat("synthetic ", spec.arch, " ", spec.n_layer, "x", spec.n_embd, " ",
                                 ToAbsl(kernels::GgmlTypeName(spec.type)), " seed ", spec.seed)
                  : spec.name);
  w.SetUint32("general.file_type", FileType(spec.type));
  if (kernels::GetTypeTraits(spec.type)->block_size > 1) {
    w.SetUint32("general.quantization_version", 2);
  }
  w.SetUint32(a + ".block_count", static_cast<uint32_t>(spec.n_layer));
  w.SetUint32(a + ".context_length", static_cast<uint32_t>(spec.n_ctx));
  w.SetUint32(a + ".embedding_length", static_cast<uint32_t>(spec.n_embd));
  w.SetUint32(a + ".feed_forward_length", static_cast<uint32_t>(spec.n_ff));
  w.SetUint32(a + ".attention.head_count", static_cast<uint32_t>(spec.n_head));
  w.SetUint32(a + ".attention.head_count_kv", static_cast<uint32_t>(spec.n_head_kv));
  w.SetFloat32(a + ".attention.layer_norm_rms_epsilon", a == "llama" ? 1e-5f : 1e-6f);
  w.SetFloat32(a + ".rope.freq_base", RopeBase(spec));
  w.SetUint32(a + ".rope.dimension_count", static_cast<uint32_t>(HeadDim(spec)));
  if (spec.head_dim > 0 || IsQwen3(spec)) {
    w.SetUint32(a + ".attention.key_length", static_cast<uint32_t>(HeadDim(spec)));
    w.SetUint32(a + ".attention.value_length", static_cast<uint32_t>(HeadDim(spec)));
  }
  if (!spec.rope_scaling.empty()) {
    w.SetString(a + ".rope.scaling.type", spec.rope_scaling);
    if (spec.rope_scaling != "none") {
      w.SetFloat32(a + ".rope.scaling.factor", spec.rope_scaling_factor);
    }
    if (spec.rope_scaling == "yarn") {
      w.SetUint32(
          a + ".rope.scaling.original_context_length",
          static_cast<uint32_t>(std::max<int64_t>(
              1, static_cast<int64_t>(static_cast<float>(spec.n_ctx) / spec.rope_scaling_factor))));
    }
  }
  if (IsMoe(spec)) {
    w.SetUint32(a + ".expert_count", static_cast<uint32_t>(spec.n_expert));
    w.SetUint32(a + ".expert_used_count", static_cast<uint32_t>(spec.n_expert_used));
    if (spec.arch == "qwen3moe") {
      w.SetUint32(a + ".expert_feed_forward_length", static_cast<uint32_t>(ExpertWidth(spec)));
    }
  }
  w.SetUint64("swarm.synthetic_seed", spec.seed);
  SWARM_ASSIGN_OR_RETURN(int64_t n_vocab, WriteVocabulary(spec, w));

  SyntheticModelSummary summary;
  summary.n_vocab = n_vocab;
  const std::vector<TensorPlan> plans = PlanTensors(spec, n_vocab);
  for (const TensorPlan& p : plans) {
    SWARM_RETURN_IF_ERROR(w.AddTensor(p.name, p.type, p.ne));
    const bool router = p.name.ends_with(".ffn_gate_inp.weight");  // f32 by choice, not fallback
    if (p.ne.size() > 1 && p.type != spec.type && !router) {
      summary.fallbacks.push_back(
          absl::StrCat(p.name, ": ", ToAbsl(kernels::GgmlTypeName(p.type))));
    }
  }
  const int n_threads = spec.n_threads > 0
                            ? spec.n_threads
                            : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  SWARM_RETURN_IF_ERROR(w.Begin(path));
  for (size_t i = 0; i < plans.size(); ++i) {
    SWARM_RETURN_IF_ERROR(WriteTensor(plans[i], spec.seed, n_threads, w));
    summary.tensor_bytes += w.tensor_bytes(i);
  }
  SWARM_RETURN_IF_ERROR(w.Finish());
  summary.n_tensors = plans.size();
  return summary;
}

}  // namespace

absl::StatusOr<SyntheticModelSpec> SyntheticPreset(std::string_view preset) {
  SyntheticModelSpec s;
  if (preset == "tinyllama-1.1b") {
    s.n_layer = 22, s.n_embd = 2048, s.n_ff = 5632, s.n_head = 32, s.n_head_kv = 4;
    s.n_vocab = 32000, s.n_ctx = 2048;
  } else if (preset == "llama-7b") {
    s.n_layer = 32, s.n_embd = 4096, s.n_ff = 11008, s.n_head = 32, s.n_head_kv = 32;
    s.n_vocab = 32000, s.n_ctx = 4096;
  } else if (preset == "stories260k-shape") {
    s.n_layer = 5, s.n_embd = 64, s.n_ff = 172, s.n_head = 8, s.n_head_kv = 4;
    s.n_vocab = 512, s.n_ctx = 512;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown preset '", ToAbsl(preset), "' (tinyllama-1.1b, llama-7b, stories260k-shape)"));
  }
  return s;
}

absl::StatusOr<SyntheticModelSummary> WriteSyntheticModel(const SyntheticModelSpec& spec,
                                                          const std::string& path) {
  // Thread creation and large buffers can throw; nothing else here does.
  try {
    return Write(spec, path);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory while writing the synthetic model");
  } catch (const std::system_error& e) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot start worker threads: ", e.what()));
  }
}

}  // namespace swarm::model
