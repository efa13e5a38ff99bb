// llama.cpp's quantization schemes and per-tensor type rules (facts from its llama-quant.cpp,
// llama_tensor_get_type and llama_model_quantize_impl), written for this project's model set: no
// Falcon rules, no importance matrix, none of the IQ1/IQ2/IQ3 schemes.
#include "model/quant_mixture.h"

#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace swarm::model {
namespace {

// ggml type ids.
constexpr uint32_t kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8,
                   kQ2_K = 10, kQ3_K = 11, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14, kIQ4_NL = 20,
                   kIQ4_XS = 23, kBF16 = 30;

constexpr QuantTypeInfo kTypes[] = {
    {kF32, "F32", 1},        {kF16, "F16", 1},         {kQ4_0, "Q4_0", 32},  {kQ4_1, "Q4_1", 32},
    {kQ5_0, "Q5_0", 32},     {kQ5_1, "Q5_1", 32},      {kQ8_0, "Q8_0", 32},  {kQ2_K, "Q2_K", 256},
    {kQ3_K, "Q3_K", 256},    {kQ4_K, "Q4_K", 256},     {kQ5_K, "Q5_K", 256}, {kQ6_K, "Q6_K", 256},
    {kIQ4_NL, "IQ4_NL", 32}, {kIQ4_XS, "IQ4_XS", 256}, {kBF16, "BF16", 1},
};

// llama.cpp's llama_ftype values.
enum FileType : uint32_t {
  kFtF32 = 0,
  kFtF16 = 1,
  kFtQ4_0 = 2,
  kFtQ4_1 = 3,
  kFtQ8_0 = 7,
  kFtQ5_0 = 8,
  kFtQ5_1 = 9,
  kFtQ2_K = 10,
  kFtQ3_K_S = 11,
  kFtQ3_K_M = 12,
  kFtQ4_K_S = 14,
  kFtQ4_K_M = 15,
  kFtQ5_K_S = 16,
  kFtQ5_K_M = 17,
  kFtQ6_K = 18,
  kFtIQ4_NL = 25,
  kFtIQ4_XS = 30,
  kFtBF16 = 32,
};

constexpr QuantScheme kSchemes[] = {
    {"F32", kFtF32, kF32},
    {"F16", kFtF16, kF16},
    {"BF16", kFtBF16, kBF16},
    {"Q4_0", kFtQ4_0, kQ4_0},
    {"Q4_1", kFtQ4_1, kQ4_1},
    {"Q5_0", kFtQ5_0, kQ5_0},
    {"Q5_1", kFtQ5_1, kQ5_1},
    {"Q8_0", kFtQ8_0, kQ8_0},
    {"Q2_K", kFtQ2_K, kQ2_K},
    {"Q3_K_M", kFtQ3_K_M, kQ3_K},
    {"Q4_K_S", kFtQ4_K_S, kQ4_K},
    {"Q4_K_M", kFtQ4_K_M, kQ4_K},
    {"Q5_K_S", kFtQ5_K_S, kQ5_K},
    {"Q5_K_M", kFtQ5_K_M, kQ5_K},
    {"Q6_K", kFtQ6_K, kQ6_K},
    {"IQ4_NL", kFtIQ4_NL, kIQ4_NL},
    {"IQ4_XS", kFtIQ4_XS, kIQ4_XS},
    // llama-quantize's aliases: the plain K-type names are the _M schemes.
    {"Q3_K", kFtQ3_K_M, kQ3_K},
    {"Q4_K", kFtQ4_K_M, kQ4_K},
    {"Q5_K", kFtQ5_K_M, kQ5_K},
};

int64_t BlockSize(uint32_t type) {
  const QuantTypeInfo* info = FindQuantType(type);
  return info != nullptr ? info->block_size : 1;
}

bool IsQuantized(uint32_t type) { return BlockSize(type) > 1; }

// More bits for the first and last eighth of the layers and every third layer between.
bool UseMoreBits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

// The block number in "blk.N.*", -1 outside the blocks.
int BlockOf(const std::string& name) {
  int layer = -1;
  if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1) return -1;
  return layer;
}

}  // namespace

const QuantTypeInfo* FindQuantType(uint32_t id) {
  for (const QuantTypeInfo& t : kTypes) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

std::string QuantTypeName(uint32_t id) {
  const QuantTypeInfo* info = FindQuantType(id);
  return info != nullptr ? std::string(info->name) : absl::StrCat("type id ", id);
}

std::string QuantSchemeNames() {
  std::string names;
  for (const QuantScheme& s : kSchemes)
    absl::StrAppend(&names, names.empty() ? "" : ", ", std::string(s.name));
  return names;
}

absl::StatusOr<QuantScheme> ParseQuantScheme(std::string_view name) {
  const std::string upper = absl::AsciiStrToUpper(std::string(name));
  for (const QuantScheme& s : kSchemes) {
    if (s.name == upper) return s;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown quantization type \"", std::string(name),
                                                 "\"; known: ", QuantSchemeNames()));
}

bool ShouldQuantize(const QuantTensorInfo& t) {
  return absl::EndsWith(t.name, "weight") && t.n_dims >= 2 &&
         !absl::StrContains(t.name, "_norm.weight") &&
         !absl::StrContains(t.name, "ffn_gate_inp.weight") && t.name != "position_embd.weight" &&
         t.name != "token_types.weight";
}

bool QuantTensorOrder(const std::string& a, const std::string& b) {
  const int la = BlockOf(a), lb = BlockOf(b);
  if (la != lb) return la < lb;
  return a < b;
}

QuantTypeChooser::QuantTypeChooser(const QuantScheme& scheme, QuantModelInfo model,
                                   const std::vector<QuantTensorInfo>& tensors)
    : scheme_(scheme), model_(std::move(model)) {
  for (const QuantTensorInfo& t : tensors) {
    if (absl::StrContains(t.name, "attn_v.weight") ||
        absl::StrContains(t.name, "attn_qkv.weight") ||
        absl::StrContains(t.name, "attn_kv_b.weight")) {
      ++n_attention_wv_;
    } else if (t.name == "output.weight") {
      has_output_ = true;
    }
  }
}

absl::StatusOr<uint32_t> QuantTypeChooser::RuleType(const QuantTensorInfo& t) {
  const uint32_t ft = scheme_.file_type;
  const uint32_t base = scheme_.base_type;
  const std::string& name = t.name;
  // A model without output.weight reads its logits through token_embd: it gets the output's type.
  if (name == "output.weight" || (!has_output_ && name == "token_embd.weight")) {
    if (t.ne0 % BlockSize(base) != 0) return kQ8_0;
    return base != kQ8_0 ? kQ6_K : base;
  }
  if (name == "token_embd.weight") return base;
  const int64_t gqa = model_.n_head_kv > 0 ? model_.n_head / model_.n_head_kv : 1;
  // llama.cpp's "70B" Llama: 80 blocks with grouped-query attention.
  const bool is_70b =
      model_.arch == "llama" && model_.n_layer == 80 && model_.n_head != model_.n_head_kv;
  uint32_t type = base;
  if (absl::StrContains(name, "attn_v.weight")) {
    if (ft == kFtQ2_K) {
      type = gqa >= 4 ? kQ4_K : kQ3_K;
    } else if (ft == kFtQ3_K_M) {
      type = i_attention_wv_ < 2 ? kQ5_K : kQ4_K;
    } else if ((ft == kFtIQ4_NL || ft == kFtIQ4_XS) && gqa >= 4) {
      type = kQ5_K;
    } else if ((ft == kFtQ4_K_M || ft == kFtQ5_K_M) &&
               UseMoreBits(i_attention_wv_, n_attention_wv_)) {
      type = kQ6_K;
    } else if (ft == kFtQ4_K_S && i_attention_wv_ < 4) {
      type = kQ5_K;
    }
    if (is_70b && (type == kQ3_K || type == kQ4_K)) type = kQ5_K;
    if (model_.n_expert == 8) type = kQ8_0;
    ++i_attention_wv_;
  } else if (absl::StrContains(name, "attn_k.weight")) {
    if (model_.n_expert == 8) type = kQ8_0;
  } else if (absl::StrContains(name, "attn_q.weight")) {
    // Only the IQ2/IQ3 schemes change attn_q.
  } else if (absl::StrContains(name, "ffn_down")) {
    int i_layer = i_ffn_down_;
    const int n_layer = static_cast<int>(model_.n_layer);
    if (model_.n_expert > 1) {
      // Expert tensors are not in block order in every file: the layer comes from the name.
      i_layer = BlockOf(name);
      if (i_layer < 0 || i_layer >= n_layer) {
        return absl::InvalidArgumentError(
            absl::StrCat("cannot tell the block of tensor ", name, " (", n_layer, " blocks)"));
      }
    }
    if (ft == kFtQ2_K) {
      type = kQ3_K;
    } else if (ft == kFtQ3_K_M) {
      type = i_layer < n_layer / 16 ? kQ5_K : kQ4_K;
    } else if (ft == kFtQ4_K_M) {
      if (UseMoreBits(i_layer, n_layer)) type = kQ6_K;
    } else if (i_layer < n_layer / 8 && (ft == kFtIQ4_NL || ft == kFtIQ4_XS)) {
      type = kQ5_K;
    } else if (ft == kFtQ5_K_M && UseMoreBits(i_layer, n_layer)) {
      type = kQ6_K;
    } else if (ft == kFtQ4_K_S && i_layer < n_layer / 8) {
      type = kQ5_K;
    }
    ++i_ffn_down_;
  } else if (absl::StrContains(name, "attn_output.weight")) {
    if (model_.n_expert == 8) {
      if (ft == kFtQ2_K || ft == kFtQ3_K_S || ft == kFtQ3_K_M || ft == kFtQ4_K_S ||
          ft == kFtQ4_K_M || ft == kFtIQ4_NL || ft == kFtIQ4_XS) {
        type = kQ5_K;
      }
    } else if (ft == kFtQ2_K) {
      type = kQ3_K;
    } else if (ft == kFtQ3_K_M) {
      type = kQ4_K;
    }
  } else if (absl::StrContains(name, "attn_qkv.weight")) {
    if (ft == kFtQ3_K_M) {
      type = kQ4_K;
    } else if (ft == kFtQ4_K_M) {
      type = kQ5_K;
    } else if (ft == kFtQ5_K_M) {
      type = kQ6_K;
    }
  }
  return type;
}

absl::StatusOr<uint32_t> QuantTypeChooser::Choose(const QuantTensorInfo& t, std::string* fallback) {
  fallback->clear();
  if (!IsQuantized(scheme_.base_type)) return scheme_.base_type;
  absl::StatusOr<uint32_t> rule = RuleType(t);
  if (!rule.ok()) return rule.status();
  const uint32_t type = *rule;
  if (t.ne0 % BlockSize(type) == 0) return type;
  // Rows that are not whole blocks of the chosen type: a type of the same size with 32-element
  // blocks, else F16 (llama.cpp's fallbacks).
  uint32_t replacement;
  switch (type) {
    case kQ2_K:
    case kQ3_K:
    case kIQ4_XS:
      replacement = kIQ4_NL;
      break;
    case kQ4_K:
      replacement = kQ5_0;
      break;
    case kQ5_K:
      replacement = kQ5_1;
      break;
    case kQ6_K:
      replacement = kQ8_0;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", t.name, ": rows of ", t.ne0, " elements are not whole ",
                       QuantTypeName(type), " blocks of ", BlockSize(type),
                       " and that type has no fallback (llama.cpp refuses it too)"));
  }
  if (t.ne0 % BlockSize(replacement) != 0) replacement = kF16;
  *fallback = absl::StrCat("rows of ", t.ne0, " are not whole ", QuantTypeName(type), " blocks of ",
                           BlockSize(type), ": ", QuantTypeName(replacement), " instead");
  return replacement;
}

}  // namespace swarm::model
