#include "model/client_head.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace swarm::model {

absl::StatusOr<std::unique_ptr<ClientHead>> ClientHead::Create(kernels::Backend& backend,
                                                               const ModelConfig& config,
                                                               const ClientWeights& host) {
  std::unique_ptr<ClientHead> head(new ClientHead(backend, config));
  auto& storage = head->weight_storage_;
  SWARM_ASSIGN_OR_RETURN(head->weights_.token_embd,
                         backend.PrepareWeight(host.token_embd, storage));
  SWARM_ASSIGN_OR_RETURN(head->weights_.output_norm,
                         backend.PrepareWeight(host.output_norm, storage));
  if (host.output.data == host.token_embd.data) {
    head->weights_.output = head->weights_.token_embd;  // tied embeddings: one copy
  } else {
    SWARM_ASSIGN_OR_RETURN(head->weights_.output, backend.PrepareWeight(host.output, storage));
  }
  return head;
}

absl::Status ClientHead::EnsureScratch(int64_t floats) {
  if (scratch_ != nullptr && scratch_floats_ >= floats) return absl::OkStatus();
  scratch_.reset();
  SWARM_ASSIGN_OR_RETURN(scratch_, backend_.Allocate(static_cast<size_t>(floats) * sizeof(float)));
  scratch_floats_ = floats;
  return absl::OkStatus();
}

absl::Status ClientHead::Embed(std::span<const int32_t> tokens, float* out) {
  if (tokens.empty()) return absl::InvalidArgumentError("no tokens to embed");
  for (int32_t id : tokens) {
    if (id < 0 || id >= weights_.token_embd.n_out) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " outside the vocabulary of ", weights_.token_embd.n_out));
    }
  }
  const int64_t n = static_cast<int64_t>(tokens.size());
  SWARM_RETURN_IF_ERROR(EnsureScratch(config_.n_embd * n));
  float* embd = static_cast<float*>(scratch_->data());
  backend_.GetRows(weights_.token_embd, tokens.data(), n, embd);
  SWARM_RETURN_IF_ERROR(
      backend_.CopyToHost(out, embd, static_cast<size_t>(config_.n_embd * n) * sizeof(float)));
  return backend_.Synchronize();
}

absl::Status ClientHead::Logits(const float* hidden, float* logits) {
  return LogitsBatch(hidden, 1, logits);
}

absl::Status ClientHead::LogitsBatch(const float* hidden, int64_t n_tokens, float* logits) {
  if (n_tokens <= 0) return absl::InvalidArgumentError("no positions to compute logits for");
  SWARM_RETURN_IF_ERROR(EnsureScratch((config_.n_embd + config_.n_vocab) * n_tokens));
  float* x = static_cast<float*>(scratch_->data());  // [n_embd, n_tokens]
  float* y = x + config_.n_embd * n_tokens;          // [n_vocab, n_tokens]
  const size_t hidden_bytes = static_cast<size_t>(config_.n_embd * n_tokens) * sizeof(float);
  SWARM_RETURN_IF_ERROR(backend_.CopyToBackend(x, hidden, hidden_bytes));
  backend_.RmsNorm(x, static_cast<const float*>(weights_.output_norm.data), config_.n_embd,
                   n_tokens, config_.rms_eps, x);
  backend_.MatMul(weights_.output, x, n_tokens, y);
  SWARM_RETURN_IF_ERROR(backend_.CopyToHost(
      logits, y, static_cast<size_t>(config_.n_vocab * n_tokens) * sizeof(float)));
  return backend_.Synchronize();
}

}  // namespace swarm::model
