// The client's part of a model: token embeddings in, logits out (output norm + LM head). This is
// all of the model a client holds; the blocks run elsewhere. Borrows the host weights (the mapped
// GGUF must outlive it). One thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "model/model_config.h"
#include "model/model_weights.h"

namespace swarm::model {

class ClientHead {
 public:
  static absl::StatusOr<std::unique_ptr<ClientHead>> Create(kernels::Backend& backend,
                                                            const ModelConfig& config,
                                                            const ClientWeights& host_weights);

  // out: [n_embd, tokens.size()] host memory. InvalidArgument for ids outside the vocabulary.
  absl::Status Embed(std::span<const int32_t> tokens, float* out);
  // hidden: [n_embd] host (the last position's final hidden state); logits: [n_vocab] host.
  absl::Status Logits(const float* hidden, float* logits);
  // Every position's logits in one pass (one matrix product over all of them, as a prompt step
  // runs its blocks): hidden: [n_embd, n_tokens] host; logits: [n_vocab, n_tokens] host.
  absl::Status LogitsBatch(const float* hidden, int64_t n_tokens, float* logits);
  // The caller is about to wait for peers: the backend's helper threads sleep now (Backend::Park).
  void ParkThreads() { backend_.Park(); }

  const ModelConfig& config() const { return config_; }
  // The weights as the backend holds them (after PrepareWeight).
  const ClientWeights& resident_weights() const { return weights_; }

 private:
  ClientHead(kernels::Backend& backend, const ModelConfig& config)
      : backend_(backend), config_(config) {}
  absl::Status EnsureScratch(int64_t floats);

  kernels::Backend& backend_;
  ModelConfig config_;
  ClientWeights weights_;
  std::vector<std::unique_ptr<kernels::Buffer>> weight_storage_;
  // embeddings [n_embd, T], or hidden [n_embd, T] + logits [n_vocab, T]
  std::unique_ptr<kernels::Buffer> scratch_;
  int64_t scratch_floats_ = 0;
};

}  // namespace swarm::model
