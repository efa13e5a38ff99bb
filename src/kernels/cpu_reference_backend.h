// The plain CPU reference backend: every operation as obviously-correct scalar code (double
// accumulators, no threads, no SIMD), the ground truth that optimized CPU and CUDA backends are
// compared against. Host memory; weights are used in place. One thread drives it at a time.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"

namespace swarm::kernels {

class CpuReferenceBackend : public Backend {
 public:
  std::string name() const override { return "reference"; }
  bool host_memory() const override { return true; }

  // Host memory aligned to 64 bytes; ResourceExhausted when it cannot be had.
  absl::StatusOr<std::unique_ptr<Buffer>> Allocate(size_t bytes) override;
  // Returns `host` unchanged (zero copy); validates only that its type is known.
  absl::StatusOr<Weight> PrepareWeight(const Weight& host,
                                       std::vector<std::unique_ptr<Buffer>>& storage) override;
  absl::Status CopyToBackend(void* dst, const void* host_src, size_t bytes) override;
  absl::Status CopyToHost(void* host_dst, const void* src, size_t bytes) override;
  absl::Status Synchronize() override { return absl::OkStatus(); }

  void MatMul(const Weight& w, const float* x, int64_t n_tokens, float* y) override;
  void AddBias(float* y, const float* bias, int64_t n_out, int64_t n_tokens) override;
  void GetRows(const Weight& table, const int32_t* ids, int64_t n, float* out) override;
  void RmsNorm(const float* x, const float* weight, int64_t n, int64_t n_tokens, float eps,
               float* y) override;
  void Rope(float* x, int64_t head_dim, int64_t n_heads, int64_t n_tokens, const int32_t* positions,
            const RopeParams& rope) override;
  void SwiGlu(const float* gate, const float* up, int64_t n, float* y) override;
  void Add(float* y, const float* x, int64_t n) override;
  void AddScaledColumns(float* y, const float* x, int64_t rows, const int32_t* ids,
                        const float* scales, int64_t n) override;
  void StoreKv(const float* k, const float* v, int64_t kv_dim, int64_t n_tokens,
               const int32_t* positions, KvTypes types, void* k_cache, void* v_cache) override;
  void Attention(const float* q, const void* k_cache, const void* v_cache,
                 const AttentionShape& shape, int64_t n_tokens, const int32_t* positions,
                 float* out) override;
};

std::unique_ptr<Backend> MakeCpuReferenceBackend();

}  // namespace swarm::kernels
