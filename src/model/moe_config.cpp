#include "model/moe_config.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "model/gguf.h"

namespace swarm::model {

namespace {

// Qwen3-235B has 128 experts, DeepSeek-V3 256: far below this bound, which keeps the per-block
// tensor counts and the router's [n_expert, T] logits small.
constexpr int64_t kMaxExperts = 1024;
constexpr int64_t kMaxFf = 1 << 18;

absl::StatusOr<int64_t> GetIntOr(const GgufFile& file, const std::string& key, int64_t fallback) {
  if (!file.Has(key)) return fallback;
  return file.GetInt(key);
}

}  // namespace

absl::Status ReadMoeConfig(const GgufFile& file, const std::string& p, ModelConfig& c) {
  SWARM_ASSIGN_OR_RETURN(const int64_t experts, GetIntOr(file, p + "expert_count", 0));
  SWARM_ASSIGN_OR_RETURN(const int64_t used, GetIntOr(file, p + "expert_used_count", 0));
  if (experts < 0 || experts > kMaxExperts) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, "expert_count is ", experts, ", expected 0..", kMaxExperts));
  }
  // The tensors must agree with the keys: expert tensors without expert_count would be ignored,
  // dense feed-forward tensors beside experts likewise.
  bool expert_tensors = false, dense_tensors = false;
  for (const GgufTensorInfo& t : file.tensors()) {
    const std::string_view name = t.name;
    if (!name.starts_with("blk.")) continue;
    expert_tensors = expert_tensors || name.ends_with(".ffn_gate_inp.weight");
    dense_tensors = dense_tensors || name.ends_with(".ffn_gate.weight");
  }
  if (experts == 0 && expert_tensors) {
    return absl::InvalidArgumentError(
        absl::StrCat("the file has expert tensors (ffn_gate_inp) but no ", p, "expert_count"));
  }
  if (experts > 0 && dense_tensors) {
    return absl::UnimplementedError(absl::StrCat(
        "the file has both experts (", p,
        "expert_count) and dense feed-forward tensors (ffn_gate.weight): blocks of both kinds "
        "are not supported"));
  }
  if (experts == 0) {
    if (used != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(p, "expert_used_count is ", used, " but the model has no experts"));
    }
    if (file.Has(p + "expert_feed_forward_length")) {
      return absl::InvalidArgumentError(
          absl::StrCat(p, "expert_feed_forward_length is set but the model has no experts"));
    }
    return absl::OkStatus();
  }
  if (used < 1 || used > experts) {
    return absl::InvalidArgumentError(absl::StrCat(p, "expert_used_count is ", used,
                                                   ", expected 1..expert_count (", experts, ")"));
  }
  SWARM_ASSIGN_OR_RETURN(const int64_t ff_exp,
                         GetIntOr(file, p + "expert_feed_forward_length", c.n_ff));
  if (ff_exp < 1 || ff_exp > kMaxFf) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, "expert_feed_forward_length is ", ff_exp, ", expected 1..", kMaxFf));
  }
  // Routing variants of other MoE families (DeepSeek, Qwen2-MoE, Llama 4): none is implemented,
  // so a file that asks for one is refused rather than run with the wrong routing.
  SWARM_ASSIGN_OR_RETURN(const int64_t shared, GetIntOr(file, p + "expert_shared_count", 0));
  if (shared != 0) {
    return absl::UnimplementedError(
        absl::StrCat(p, "expert_shared_count is ", shared, ": shared experts are not supported"));
  }
  // Keys that may state the routing implemented here (llama.cpp's values: gating function 1 is
  // softmax) are accepted when they do; any other value is refused.
  const std::string routing =
      "softmax over the experts, top-k, weights renormalised over the chosen ones";
  SWARM_ASSIGN_OR_RETURN(const int64_t gating, GetIntOr(file, p + "expert_gating_func", 1));
  if (gating != 1) {
    return absl::UnimplementedError(absl::StrCat(p, "expert_gating_func is ", gating,
                                                 ": only softmax gating (1) is supported"));
  }
  if (file.Has(p + "expert_weights_norm")) {
    SWARM_ASSIGN_OR_RETURN(const bool norm, file.GetBool(p + "expert_weights_norm"));
    if (!norm) {
      return absl::UnimplementedError(absl::StrCat(
          p, "expert_weights_norm is false: only renormalised expert weights are supported"));
    }
  }
  if (file.Has(p + "expert_weights_scale")) {
    SWARM_ASSIGN_OR_RETURN(const double scale, file.GetFloat(p + "expert_weights_scale"));
    if (scale != 1.0) {
      return absl::UnimplementedError(absl::StrCat(p, "expert_weights_scale is ", scale,
                                                   ": scaled expert weights are not supported"));
    }
  }
  for (const char* key : {"expert_shared_feed_forward_length", "leading_dense_block_count",
                          "interleave_moe_layer_step", "expert_group_count"}) {
    if (file.Has(p + key)) {
      return absl::UnimplementedError(
          absl::StrCat(p, key, " is set: that expert layout is not ", "supported (", routing, ")"));
    }
  }
  c.n_expert = experts;
  c.n_expert_used = used;
  c.n_ff_exp = ff_exp;
  return absl::OkStatus();
}

}  // namespace swarm::model
