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
  // "llama", "qwen2" (adds q/k/v biases, NeoX RoPE) or "mixtral" (a llama-architecture mixture
  // of experts, as Mixtral files carry it: general.architecture "llama" with expert_count).
  std::string arch = "llama";
  std::string name;  // general.name; derived from the shape and seed when empty
  int64_t n_layer = 0;
  int64_t n_embd = 0;
  int64_t n_ff = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t n_vocab = 0;  // replaced by the vocabulary's size when vocab_path is set
  int64_t n_ctx = 2048;
  // Mixture of experts ("mixtral"): experts per block and experts used per token. Each expert's
  // feed-forward is n_ff wide.
  int64_t n_expert = 8;
  int64_t n_expert_used = 2;
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
