#include "model/rope_config.h"

#include <cmath>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "base/status_macros.h"
#include "model/gguf.h"

namespace swarm::model {

namespace {

// A float key in (lo, hi), or default_value when absent.
absl::StatusOr<float> FloatIn(const GgufFile& file, const std::string& key, double lo, double hi,
                              float default_value) {
  if (!file.Has(key)) return default_value;
  SWARM_ASSIGN_OR_RETURN(double v, file.GetFloat(key));
  if (!(v > lo && v < hi)) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, " is ", v, ", expected (", lo, ", ", hi, ")"));
  }
  return static_cast<float>(v);
}

// rope_freqs.weight: [head_dim / 2] f32 divisors of each pair's frequency (Llama 3.1+).
absl::Status ReadFreqFactors(const GgufFile& file, int64_t head_dim, kernels::RopeParams& p) {
  const GgufTensorInfo* t = file.FindTensor("rope_freqs.weight");
  if (t == nullptr) return absl::OkStatus();
  if (t->type != kernels::GgmlType::kF32 || t->n_dims != 1 || t->ne[0] != head_dim / 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope_freqs.weight must be f32 [", head_dim / 2, "] (half the head size)"));
  }
  const auto bytes = file.TensorData(*t);
  if (bytes.size() < static_cast<size_t>(head_dim / 2) * sizeof(float)) {
    return absl::InvalidArgumentError("rope_freqs.weight is truncated");
  }
  p.freq_factors.resize(static_cast<size_t>(head_dim / 2));
  std::memcpy(p.freq_factors.data(), bytes.data(), p.freq_factors.size() * sizeof(float));
  for (float f : p.freq_factors) {
    if (!(f > 0.0f && f < 1e6f)) {
      return absl::InvalidArgumentError(
          absl::StrCat("rope_freqs.weight holds ", f, ", expected factors in (0, 1e6)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<kernels::RopeParams> ReadRopeParams(const GgufFile& file, const std::string& arch,
                                                   int64_t head_dim, int64_t n_ctx_train) {
  const std::string p = arch + ".";
  kernels::RopeParams r;
  r.style = arch == "llama" ? kernels::RopeStyle::kAdjacentPairs : kernels::RopeStyle::kNeox;
  SWARM_ASSIGN_OR_RETURN(r.freq_base, FloatIn(file, p + "rope.freq_base", 1.0, 1e12, 10000.0f));
  SWARM_RETURN_IF_ERROR(ReadFreqFactors(file, head_dim, r));

  // llama.cpp: the type defaults to linear; the factor is rope.scaling.factor, else the older
  // rope.scale_linear; 0 or absent means none.
  std::string type = "linear";
  if (file.Has(p + "rope.scaling.type")) {
    SWARM_ASSIGN_OR_RETURN(std::string_view t, file.GetString(p + "rope.scaling.type"));
    type = std::string(t);
  }
  if (type != "none" && type != "linear" && type != "yarn") {
    return absl::UnimplementedError(absl::StrCat(p, "rope.scaling.type '", type,
                                                 "' is not supported (none, linear, yarn are)"));
  }
  float factor = 0.0f;
  for (const char* key : {"rope.scaling.factor", "rope.scale_linear"}) {
    if (!file.Has(p + key)) continue;
    SWARM_ASSIGN_OR_RETURN(double f, file.GetFloat(p + key));
    if (!(f >= 0.0 && f < 1e6)) {
      return absl::InvalidArgumentError(absl::StrCat(p, key, " is ", f, ", expected [0, 1e6)"));
    }
    factor = static_cast<float>(f);
    break;
  }
  r.freq_scale = (type == "none" || factor == 0.0f) ? 1.0f : 1.0f / factor;
  SWARM_ASSIGN_OR_RETURN(r.attn_factor,
                         FloatIn(file, p + "rope.scaling.attn_factor", 0.0, 1e3, 1.0f));
  if (type == "yarn") {
    SWARM_ASSIGN_OR_RETURN(float yarn_attn,
                           FloatIn(file, p + "rope.scaling.yarn_attn_factor", 0.0, 1e3, 1.0f));
    r.attn_factor *= yarn_attn;
    SWARM_ASSIGN_OR_RETURN(r.ext_factor,
                           FloatIn(file, p + "rope.scaling.yarn_ext_factor", -1e-9, 1e3, 1.0f));
    SWARM_ASSIGN_OR_RETURN(r.beta_fast,
                           FloatIn(file, p + "rope.scaling.yarn_beta_fast", 0.0, 1e6, 32.0f));
    SWARM_ASSIGN_OR_RETURN(r.beta_slow,
                           FloatIn(file, p + "rope.scaling.yarn_beta_slow", 0.0, 1e6, 1.0f));
    r.n_ctx_orig = n_ctx_train;
    if (file.Has(p + "rope.scaling.original_context_length")) {
      SWARM_ASSIGN_OR_RETURN(r.n_ctx_orig, file.GetInt(p + "rope.scaling.original_context_length"));
      if (r.n_ctx_orig <= 0 || r.n_ctx_orig > (int64_t{1} << 24)) {
        return absl::InvalidArgumentError(absl::StrCat(
            p, "rope.scaling.original_context_length is ", r.n_ctx_orig, ", expected 1..2^24"));
      }
    }
    if (file.Has(p + "rope.scaling.yarn_log_multiplier")) {
      SWARM_ASSIGN_OR_RETURN(double mul, file.GetFloat(p + "rope.scaling.yarn_log_multiplier"));
      if (mul != 0.0) {
        return absl::UnimplementedError(
            absl::StrCat(p, "rope.scaling.yarn_log_multiplier ", mul,
                         " (DeepSeek-style YaRN attention scaling) is not supported"));
      }
    }
  }
  return r;
}

}  // namespace swarm::model
