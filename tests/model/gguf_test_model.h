// Writes tiny Llama/Qwen2-shaped GGUF files with arbitrary tensor bytes for the weight-loading and
// slicing tests; individual tensors can be left out or given another type or shape.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "base/status_macros.h"
#include "model/gguf_writer.h"

namespace swarm::model::testing {

struct TinyModelSpec {
  std::string arch = "llama";
  int64_t n_layer = 3;
  int64_t n_embd = 64;
  int64_t n_ff = 96;
  int64_t n_head = 4;
  int64_t n_head_kv = 2;
  int64_t n_vocab = 40;
  kernels::GgmlType matrix_type = kernels::GgmlType::kF32;
  bool tied_output = false;
  bool rope_freqs = false;     // a global tensor that belongs to no block (as in Llama 3.1)
  std::set<std::string> skip;  // tensor names to leave out
  struct Override {
    kernels::GgmlType type;
    std::vector<int64_t> ne;
  };
  std::map<std::string, Override> overrides;
};

struct TinyTensor {
  std::string name;
  kernels::GgmlType type;
  std::vector<int64_t> ne;
};

inline std::vector<TinyTensor> TinyModelTensors(const TinyModelSpec& s) {
  using kernels::GgmlType;
  const int64_t e = s.n_embd, kv = s.n_embd / s.n_head * s.n_head_kv;
  const GgmlType m = s.matrix_type, f32 = GgmlType::kF32;
  std::vector<TinyTensor> t = {{"token_embd.weight", m, {e, s.n_vocab}},
                               {"output_norm.weight", f32, {e}}};
  if (!s.tied_output) t.push_back({"output.weight", m, {e, s.n_vocab}});
  if (s.rope_freqs) t.push_back({"rope_freqs.weight", f32, {e / s.n_head / 2}});
  for (int64_t il = 0; il < s.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    t.push_back({p + "attn_norm.weight", f32, {e}});
    t.push_back({p + "attn_q.weight", m, {e, e}});
    t.push_back({p + "attn_k.weight", m, {e, kv}});
    t.push_back({p + "attn_v.weight", m, {e, kv}});
    if (s.arch == "qwen2") {
      t.push_back({p + "attn_q.bias", f32, {e}});
      t.push_back({p + "attn_k.bias", f32, {kv}});
      t.push_back({p + "attn_v.bias", f32, {kv}});
    }
    t.push_back({p + "attn_output.weight", m, {e, e}});
    t.push_back({p + "ffn_norm.weight", f32, {e}});
    t.push_back({p + "ffn_gate.weight", m, {e, s.n_ff}});
    t.push_back({p + "ffn_down.weight", m, {s.n_ff, e}});
    t.push_back({p + "ffn_up.weight", m, {e, s.n_ff}});
  }
  std::vector<TinyTensor> out;
  for (TinyTensor& x : t) {
    if (s.skip.count(x.name)) continue;
    if (auto it = s.overrides.find(x.name); it != s.overrides.end()) {
      x.type = it->second.type;
      x.ne = it->second.ne;
    }
    out.push_back(std::move(x));
  }
  return out;
}

// Tensor i's bytes are a pattern of i, so every tensor's data is distinguishable.
inline absl::Status WriteTinyModel(const std::string& path, const TinyModelSpec& s) {
  GgufWriter w;
  const std::string& a = s.arch;
  w.SetString("general.architecture", a);
  w.SetString("general.name", "tiny-test");
  w.SetUint32(a + ".block_count", static_cast<uint32_t>(s.n_layer));
  w.SetUint32(a + ".embedding_length", static_cast<uint32_t>(s.n_embd));
  w.SetUint32(a + ".feed_forward_length", static_cast<uint32_t>(s.n_ff));
  w.SetUint32(a + ".attention.head_count", static_cast<uint32_t>(s.n_head));
  w.SetUint32(a + ".attention.head_count_kv", static_cast<uint32_t>(s.n_head_kv));
  w.SetUint32(a + ".context_length", 128);
  w.SetFloat32(a + ".attention.layer_norm_rms_epsilon", 1e-5f);
  std::vector<std::string> tokens;
  for (int64_t i = 0; i < s.n_vocab; ++i) tokens.push_back("tok" + std::to_string(i));
  w.SetStringArray("tokenizer.ggml.tokens", tokens);
  const auto tensors = TinyModelTensors(s);
  for (const TinyTensor& t : tensors) SWARM_RETURN_IF_ERROR(w.AddTensor(t.name, t.type, t.ne));
  SWARM_RETURN_IF_ERROR(w.Begin(path));
  for (size_t i = 0; i < tensors.size(); ++i) {
    std::vector<uint8_t> bytes(w.tensor_bytes(i));
    for (size_t j = 0; j < bytes.size(); ++j) bytes[j] = static_cast<uint8_t>(i * 13 + j % 7);
    SWARM_RETURN_IF_ERROR(w.WriteTensorData(bytes));
  }
  return w.Finish();
}

}  // namespace swarm::model::testing
