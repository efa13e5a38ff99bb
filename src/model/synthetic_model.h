// Seeded synthetic models: Llama/Qwen2-shaped GGUF files with deterministic random weights at real
// shapes, for performance work where no real model can be had (throughput does not depend on the
// values). Weights are streamed to disk row batch by row batch, quantized by worker threads; the
// bytes depend only on the spec and seed, never on the thread count. Free functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/ggml_type.h"

namespace swarm::model {

struct SyntheticModelSpec {
  // "llama", "llama3" (a llama file with Llama 3.1's rope_freqs.weight frequency factors and
  // RoPE base 500000), "qwen2" (adds q/k/v biases, NeoX RoPE), "qwen3" (per-head q/k norms,
  // NeoX RoPE, head_dim != n_embd / n_head by default), "mixtral" (a llama-architecture mixture
  // of experts, as Mixtral files carry it: general.architecture "llama" with expert_count) or
  // "qwen3moe" (qwen3 attention, every block a mixture of experts).
  std::string arch = "llama";
  std::string name;  // general.name; derived from the shape and seed when empty
  int64_t n_layer = 0;
  int64_t n_embd = 0;
  int64_t n_ff = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t n_vocab = 0;  // replaced by the vocabulary's size when vocab_path is set
  int64_t n_ctx = 2048;
  // Mixtures of experts ("mixtral", "qwen3moe"): experts per block, experts used per token, and
  // each expert's width (0: n_ff; qwen3moe writes it as expert_feed_forward_length).
  int64_t n_expert = 8;
  int64_t n_expert_used = 2;
  int64_t n_ff_exp = 0;
  // Head size: 0 = n_embd / n_head (qwen3: twice that); otherwise attention.key_length and
  // value_length are written, and q/output projections are [n_embd] <-> [n_head * head_dim].
  int64_t head_dim = 0;
  // "" (no keys), "none", "linear" or "yarn": the rope.scaling.* keys to write, with
  // rope.scaling.factor and (yarn) original_context_length = n_ctx / factor.
  std::string rope_scaling;
  float rope_scaling_factor = 4.0f;
  // Type of every matrix, token_embd and output included; 1-D tensors are always f32. A matrix
  // whose row length is not a multiple of the type's block size falls back (as llama.cpp does) to
  // q8_0 when possible, else f16.
  kernels::GgmlType type = kernels::GgmlType::kF32;
  uint64_t seed = 1;
  // A GGUF (e.g. a vocabulary-only one) whose tokenizer.* metadata is copied; without it, a small
  // SentencePiece-style vocabulary (<unk>, <s>, </s>, 256 byte tokens, filler pieces) is written,
  // which needs n_vocab >= 259.
  std::string vocab_path;
  int n_threads = 0;  // 0: one per hardware thread
};

// Shapes of well-known models: "tinyllama-1.1b", "llama-7b", "stories260k-shape".
absl::StatusOr<SyntheticModelSpec> SyntheticPreset(std::string_view preset);

struct SyntheticModelSummary {
  size_t n_tensors = 0;
  uint64_t tensor_bytes = 0;
  int64_t n_vocab = 0;
  // "name: type" for each tensor stored in another type than requested (block-size fallback).
  std::vector<std::string> fallbacks;
};

absl::StatusOr<SyntheticModelSummary> WriteSyntheticModel(const SyntheticModelSpec& spec,
                                                          const std::string& path);

}  // namespace swarm::model
