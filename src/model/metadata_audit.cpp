#include "model/metadata_audit.h"

#include <cmath>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "base/status_macros.h"
#include "model/gguf.h"

namespace swarm::model {

namespace {

// What a `{arch}.` key does here.
enum class KeyUse {
  kUsed,     // read by ReadModelConfig / ReadRopeParams (validated there)
  kNoEffect  // changes nothing in llama.cpp's computation either (informational)
};

struct KnownKey {
  std::string_view suffix;
  KeyUse use;
};

constexpr KnownKey kKnownKeys[] = {
    {"context_length", KeyUse::kUsed},
    {"embedding_length", KeyUse::kUsed},
    {"block_count", KeyUse::kUsed},
    {"feed_forward_length", KeyUse::kUsed},
    {"attention.head_count", KeyUse::kUsed},
    {"attention.head_count_kv", KeyUse::kUsed},
    {"attention.layer_norm_rms_epsilon", KeyUse::kUsed},
    {"attention.key_length", KeyUse::kUsed},
    {"attention.value_length", KeyUse::kUsed},
    {"rope.dimension_count", KeyUse::kUsed},
    {"rope.freq_base", KeyUse::kUsed},
    {"rope.scale_linear", KeyUse::kUsed},
    {"rope.scaling.type", KeyUse::kUsed},
    {"rope.scaling.factor", KeyUse::kUsed},
    {"rope.scaling.attn_factor", KeyUse::kUsed},
    {"rope.scaling.original_context_length", KeyUse::kUsed},
    {"rope.scaling.yarn_ext_factor", KeyUse::kUsed},
    {"rope.scaling.yarn_attn_factor", KeyUse::kUsed},
    {"rope.scaling.yarn_beta_fast", KeyUse::kUsed},
    {"rope.scaling.yarn_beta_slow", KeyUse::kUsed},
    {"rope.scaling.yarn_log_multiplier", KeyUse::kUsed},
    {"expert_count", KeyUse::kUsed},  // mixtures of experts: checked by ReadModelConfig
    {"expert_used_count", KeyUse::kUsed},
    {"expert_feed_forward_length", KeyUse::kUsed},  // the rest: checked by ReadMoeConfig
    {"expert_gating_func", KeyUse::kUsed},
    {"expert_weights_norm", KeyUse::kUsed},
    {"expert_weights_scale", KeyUse::kUsed},
    {"vocab_size", KeyUse::kNoEffect},
    {"rope.scaling.finetuned", KeyUse::kNoEffect},
    {"tensor_data_layout", KeyUse::kNoEffect},
    {"pooling_type", KeyUse::kNoEffect},  // embedding pooling; generation never pools
};

// Keys whose neutral value is accepted (it asks for nothing) and any other value refused. `what`
// names the feature in the error.
struct NeutralKey {
  std::string_view suffix;
  double neutral;
  std::string_view what;
};

constexpr NeutralKey kNeutralKeys[] = {
    {"attn_logit_softcapping", 0.0, "attention logit soft-capping"},
    {"final_logit_softcapping", 0.0, "final logit soft-capping"},
    {"logit_scale", 1.0, "logit scaling"},
    {"embedding_scale", 1.0, "embedding scaling"},
    {"residual_scale", 1.0, "residual scaling"},
    {"attention.clamp_kqv", 0.0, "clamping of Q, K and V"},
    {"attention.max_alibi_bias", 0.0, "ALiBi position bias"},
    {"leading_dense_block_count", 0.0, "leading dense blocks"},
    {"expert_shared_count", 0.0, "shared experts"},
};

// Tensor names the engine reads, per architecture: the client part, then a block's (after
// "blk.N.").
bool IsKnownGlobalTensor(std::string_view name) {
  return name == "token_embd.weight" || name == "output_norm.weight" || name == "output.weight" ||
         name == "rope_freqs.weight";
}

bool IsKnownBlockTensor(std::string_view arch, std::string_view name) {
  for (std::string_view known :
       {"attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
        "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"}) {
    if (name == known) return true;
  }
  // Mixtures of experts (ReadMoeConfig checks that they come with expert_count).
  for (std::string_view expert : {"ffn_gate_inp.weight", "ffn_gate_exps.weight",
                                  "ffn_up_exps.weight", "ffn_down_exps.weight"}) {
    if (name == expert) return arch != "qwen2";
  }
  const bool bias = name == "attn_q.bias" || name == "attn_k.bias" || name == "attn_v.bias";
  if (arch == "llama" || arch == "qwen2") return bias;
  if (arch == "qwen3" || arch == "qwen3moe") {
    return name == "attn_q_norm.weight" || name == "attn_k_norm.weight";
  }
  return false;
}

absl::Status AuditKey(const GgufFile& file, const std::string& key, std::string_view suffix,
                      int64_t head_dim, int64_t n_ctx_train) {
  for (const KnownKey& k : kKnownKeys) {
    if (suffix == k.suffix) return absl::OkStatus();
  }
  for (const NeutralKey& k : kNeutralKeys) {
    if (suffix != k.suffix) continue;
    SWARM_ASSIGN_OR_RETURN(double v, file.GetFloat(key));
    if (v == k.neutral) return absl::OkStatus();
    return absl::UnimplementedError(
        absl::StrCat(ToAbsl(k.what), " (", key, " = ", v, ") is not supported"));
  }
  if (suffix == "attention.scale") {
    // llama.cpp: 0 means the usual 1/sqrt(head_dim), which is what the attention kernels use.
    SWARM_ASSIGN_OR_RETURN(double v, file.GetFloat(key));
    const double usual = 1.0 / std::sqrt(static_cast<double>(head_dim));
    if (v == 0.0 || std::fabs(v - usual) <= 1e-6 * usual) return absl::OkStatus();
    return absl::UnimplementedError(absl::StrCat("an attention scale other than 1/sqrt(", head_dim,
                                                 ") (", key, " = ", v, ") is not supported"));
  }
  if (suffix == "attention.sliding_window") {
    SWARM_ASSIGN_OR_RETURN(int64_t window, file.GetInt(key));
    if (window <= 0 || window >= n_ctx_train) return absl::OkStatus();
    return absl::UnimplementedError(
        absl::StrCat("sliding-window attention (", key, " = ", window, ") is not supported"));
  }
  if (suffix == "attention.causal") {
    SWARM_ASSIGN_OR_RETURN(bool causal, file.GetBool(key));
    if (causal) return absl::OkStatus();
    return absl::UnimplementedError(
        absl::StrCat("non-causal attention (", key, " = false) is not supported"));
  }
  if (suffix == "use_parallel_residual") {
    SWARM_ASSIGN_OR_RETURN(bool parallel, file.GetBool(key));
    if (!parallel) return absl::OkStatus();
    return absl::UnimplementedError(
        absl::StrCat("parallel residual blocks (", key, " = true) are not supported"));
  }
  return absl::UnimplementedError(absl::StrCat(
      "metadata key '", key, "' is not supported: the engine does not implement what it asks for"));
}

}  // namespace

absl::Status AuditModelFile(const GgufFile& file, const std::string& arch, int64_t head_dim,
                            int64_t n_ctx_train) {
  const std::string prefix = arch + ".";
  for (const auto& [key, value] : file.metadata()) {
    if (key.rfind(prefix, 0) != 0) continue;
    SWARM_RETURN_IF_ERROR(
        AuditKey(file, key, std::string_view(key).substr(prefix.size()), head_dim, n_ctx_train));
  }
  for (const GgufTensorInfo& t : file.tensors()) {
    std::string_view name = t.name;
    if (name.rfind("blk.", 0) == 0) {
      const size_t dot = name.find('.', 4);
      if (dot != std::string_view::npos && IsKnownBlockTensor(arch, name.substr(dot + 1))) {
        continue;
      }
    } else if (IsKnownGlobalTensor(name)) {
      continue;
    }
    return absl::UnimplementedError(
        absl::StrCat("tensor '", t.name, "' is not supported for architecture ", arch,
                     ": the engine does not implement what it asks for"));
  }
  return absl::OkStatus();
}

}  // namespace swarm::model
