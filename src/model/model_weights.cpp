#include "model/model_weights.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "base/status_macros.h"
#include "model/gguf.h"

namespace swarm::model {

namespace {

using kernels::GgmlType;

std::string ShapeString(const GgufTensorInfo& t) {
  std::string s = "[";
  for (uint32_t d = 0; d < t.n_dims; ++d) absl::StrAppend(&s, d ? ", " : "", t.ne[d]);
  return s + "]";
}

// Looks tensors up and validates them; remembers what it returned so the caller can prefetch
// exactly those once everything is known to be valid.
class TensorLoader {
 public:
  explicit TensorLoader(const GgufFile& file) : file_(file) {}

  absl::StatusOr<const GgufTensorInfo*> Find(const std::string& name) const {
    const GgufTensorInfo* t = file_.FindTensor(name);
    if (t == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("tensor '", name, "' not found in ", file_.path(), SliceNote()));
    }
    return t;
  }

  // A 1-D f32 vector of n elements.
  absl::StatusOr<kernels::Weight> Vector(const std::string& name, int64_t n) {
    SWARM_ASSIGN_OR_RETURN(const GgufTensorInfo* t, Find(name));
    if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' has shape ", ShapeString(*t), ", expected [", n, "]"));
    }
    if (t->type != GgmlType::kF32) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has type ",
                                                     ToAbsl(kernels::GgmlTypeName(t->type)),
                                                     ", expected f32"));
    }
    return Use(*t);
  }

  // A matrix of n_out rows of n_in elements, of any weight type.
  absl::StatusOr<kernels::Weight> Matrix(const std::string& name, int64_t n_in, int64_t n_out) {
    SWARM_ASSIGN_OR_RETURN(const GgufTensorInfo* t, Find(name));
    if (t->ne[0] != n_in || t->ne[1] != n_out || t->ne[2] != 1 || t->ne[3] != 1) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has shape ",
                                                     ShapeString(*t), ", expected [", n_in, ", ",
                                                     n_out, "]"));
    }
    if (!kernels::IsWeightType(t->type)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' has type ", ToAbsl(kernels::GgmlTypeName(t->type)),
                       ", which is not a weight type (", kernels::WeightTypeNames(), ")"));
    }
    auto row = kernels::RowBytes(t->type, n_in);
    if (!row.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "': ", row.status().message()));
    }
    return Use(*t);
  }

  // A 3-D tensor [n_in, n_out, n_expert] of any weight type, as n_expert matrices.
  absl::StatusOr<std::vector<kernels::Weight>> Experts(const std::string& name, int64_t n_in,
                                                       int64_t n_out, int64_t n_expert) {
    SWARM_ASSIGN_OR_RETURN(const GgufTensorInfo* t, Find(name));
    if (t->ne[0] != n_in || t->ne[1] != n_out || t->ne[2] != n_expert || t->ne[3] != 1) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has shape ",
                                                     ShapeString(*t), ", expected [", n_in, ", ",
                                                     n_out, ", ", n_expert, "]"));
    }
    if (!kernels::IsWeightType(t->type)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' has type ", ToAbsl(kernels::GgmlTypeName(t->type)),
                       ", which is not a weight type (", kernels::WeightTypeNames(), ")"));
    }
    auto row = kernels::RowBytes(t->type, n_in);
    if (!row.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "': ", row.status().message()));
    }
    // The reader checked that the tensor's bytes lie inside the file; each expert is one
    // contiguous run of n_out rows of them.
    const kernels::Weight whole = Use(*t);
    const size_t expert_bytes = *row * static_cast<size_t>(n_out);
    std::vector<kernels::Weight> experts(static_cast<size_t>(n_expert), whole);
    for (int64_t e = 0; e < n_expert; ++e) {
      experts[static_cast<size_t>(e)].data =
          static_cast<const uint8_t*>(whole.data) + static_cast<size_t>(e) * expert_bytes;
    }
    return experts;
  }

  void PrefetchAll() const {
    for (const GgufTensorInfo* t : used_) file_.Prefetch(*t);
  }

 private:
  kernels::Weight Use(const GgufTensorInfo& t) {
    used_.push_back(&t);
    kernels::Weight w;
    w.type = t.type;
    w.n_in = t.ne[0];
    w.n_out = t.ne[1];
    w.data = file_.TensorData(t).data();
    w.file_mapped = true;
    return w;
  }

  std::string SliceNote() const {
    auto first = file_.GetInt("swarm.block_first");
    auto last = file_.GetInt("swarm.block_last");
    if (!first.ok() || !last.ok()) return "";
    return absl::StrCat(" (a slice holding blocks [", *first, ", ", *last, ") only)");
  }

  const GgufFile& file_;
  std::vector<const GgufTensorInfo*> used_;
};

}  // namespace

absl::StatusOr<std::vector<BlockWeights>> LoadBlockWeights(const GgufFile& file,
                                                           const ModelConfig& config, int64_t first,
                                                           int64_t last) {
  if (first < 0 || first >= last || last > config.n_layer) {
    return absl::InvalidArgumentError(absl::StrCat("block range [", first, ", ", last,
                                                   ") is not inside the model's ", config.n_layer,
                                                   " blocks"));
  }
  TensorLoader loader(file);
  std::vector<BlockWeights> blocks;
  blocks.reserve(static_cast<size_t>(last - first));
  const int64_t e = config.n_embd, q = config.q_dim(), kv = config.kv_dim(), ff = config.n_ff;
  for (int64_t il = first; il < last; ++il) {
    const std::string p = absl::StrCat("blk.", il, ".");
    BlockWeights b;
    b.layer = il;
    SWARM_ASSIGN_OR_RETURN(b.attn_norm, loader.Vector(p + "attn_norm.weight", e));
    SWARM_ASSIGN_OR_RETURN(b.wq, loader.Matrix(p + "attn_q.weight", e, q));
    SWARM_ASSIGN_OR_RETURN(b.wk, loader.Matrix(p + "attn_k.weight", e, kv));
    SWARM_ASSIGN_OR_RETURN(b.wv, loader.Matrix(p + "attn_v.weight", e, kv));
    if (config.qkv_bias) {
      SWARM_ASSIGN_OR_RETURN(b.bq, loader.Vector(p + "attn_q.bias", q));
      SWARM_ASSIGN_OR_RETURN(b.bk, loader.Vector(p + "attn_k.bias", kv));
      SWARM_ASSIGN_OR_RETURN(b.bv, loader.Vector(p + "attn_v.bias", kv));
    }
    if (config.qk_norm) {
      SWARM_ASSIGN_OR_RETURN(b.q_norm, loader.Vector(p + "attn_q_norm.weight", config.head_dim));
      SWARM_ASSIGN_OR_RETURN(b.k_norm, loader.Vector(p + "attn_k_norm.weight", config.head_dim));
    }
    SWARM_ASSIGN_OR_RETURN(b.wo, loader.Matrix(p + "attn_output.weight", q, e));
    SWARM_ASSIGN_OR_RETURN(b.ffn_norm, loader.Vector(p + "ffn_norm.weight", e));
    if (config.is_moe()) {
      const int64_t ne = config.n_expert, fe = config.n_ff_exp;
      if (file.FindTensor(p + "ffn_gate_exps.weight") == nullptr &&
          file.FindTensor(p + "ffn_gate.0.weight") != nullptr) {
        return absl::UnimplementedError(absl::StrCat(
            "block ", il, " stores its experts as separate tensors (", p,
            "ffn_gate.0.weight, ...), an old Mixtral layout: convert the model again with a "
            "current llama.cpp to get ffn_gate_exps"));
      }
      SWARM_ASSIGN_OR_RETURN(b.ffn_gate_inp, loader.Matrix(p + "ffn_gate_inp.weight", e, ne));
      SWARM_ASSIGN_OR_RETURN(b.gate_exps, loader.Experts(p + "ffn_gate_exps.weight", e, fe, ne));
      SWARM_ASSIGN_OR_RETURN(b.up_exps, loader.Experts(p + "ffn_up_exps.weight", e, fe, ne));
      SWARM_ASSIGN_OR_RETURN(b.down_exps, loader.Experts(p + "ffn_down_exps.weight", fe, e, ne));
    } else {
      SWARM_ASSIGN_OR_RETURN(b.w_gate, loader.Matrix(p + "ffn_gate.weight", e, ff));
      SWARM_ASSIGN_OR_RETURN(b.w_up, loader.Matrix(p + "ffn_up.weight", e, ff));
      SWARM_ASSIGN_OR_RETURN(b.w_down, loader.Matrix(p + "ffn_down.weight", ff, e));
    }
    blocks.push_back(b);
  }
  loader.PrefetchAll();
  return blocks;
}

absl::StatusOr<ClientWeights> LoadClientWeights(const GgufFile& file, const ModelConfig& config) {
  TensorLoader loader(file);
  ClientWeights c;
  SWARM_ASSIGN_OR_RETURN(c.token_embd,
                         loader.Matrix("token_embd.weight", config.n_embd, config.n_vocab));
  SWARM_ASSIGN_OR_RETURN(c.output_norm, loader.Vector("output_norm.weight", config.n_embd));
  if (file.FindTensor("output.weight") != nullptr) {
    SWARM_ASSIGN_OR_RETURN(c.output, loader.Matrix("output.weight", config.n_embd, config.n_vocab));
  } else {
    c.output = c.token_embd;  // tied embeddings
  }
  loader.PrefetchAll();
  return c;
}

}  // namespace swarm::model
