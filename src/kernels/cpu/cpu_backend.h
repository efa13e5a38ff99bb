// The optimized CPU backend: SIMD kernels chosen at run time for the processor (AVX-512 with VNNI,
// AVX2, or portable C++), a persistent thread pool that splits every matrix product by output
// rows, quantized activations with integer dot products for the quantized weight types, and tiled
// matrix-matrix products for prompts. Host memory; weights are used in place (zero copy), except
// the types whose kernels read a lane layout (lane_layout.h): PrepareWeight rewrites those once.
// Results are deterministic and independent of the thread count and of batching (kernels.h).
// One thread drives it at a time; the backend owns its worker threads and scratch memory.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/thread_pool.h"

namespace swarm::kernels::cpu {

struct CpuBackendOptions {
  int threads = 0;         // 0 = physical cores
  std::optional<Isa> isa;  // default: the best the processor supports
};

// Profiles its operations (OpProfiler) for `swarm bench --profile`.
class CpuBackend : public Backend, public OpProfiler {
 public:
  // InvalidArgument when the requested ISA is not supported by this processor.
  static absl::StatusOr<std::unique_ptr<CpuBackend>> Create(const CpuBackendOptions& options);

  std::string name() const override;
  bool host_memory() const override { return true; }
  Isa isa() const { return kernels_.isa; }
  int threads() const { return pool_.size(); }
  ThreadPool& pool() { return pool_; }
  void Park() override { pool_.Park(); }
  void Unpark() override { pool_.Unpark(); }

  absl::StatusOr<std::unique_ptr<Buffer>> Allocate(size_t bytes) override;
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

  // OpProfiler: per-operation timing.
  OpProfiler* op_profiler() override { return this; }
  void SetProfiling(bool on) override { profiling_ = on; }
  void ResetProfile() override { profile_.clear(); }
  const std::vector<OpProfile>& profile() const override { return profile_; }

 private:
  CpuBackend(const KernelTable& kernels, int threads) : kernels_(kernels), pool_(threads) {}

  // Grow-only scratch: sized by the first large call, reused afterwards (no allocation in steady
  // state).
  uint8_t* ScratchX8(size_t bytes);
  float* ScratchAttention(size_t floats_per_thread);
  void Record(const char* kind, GgmlType type, int64_t n_out, int64_t n_in, int64_t n_tokens,
              std::chrono::steady_clock::time_point start, double flops, double weight_bytes);

  const KernelTable& kernels_;
  ThreadPool pool_;
  std::unique_ptr<uint8_t[]> x8_raw_;
  uint8_t* x8_ = nullptr;
  size_t x8_bytes_ = 0;
  // The floats x8_ holds the quantization of (small inputs only), to skip quantizing them again.
  std::vector<float> x8_source_;
  X8Layout x8_source_layout_;
  bool x8_source_valid_ = false;
  std::unique_ptr<float[]> attention_raw_;
  float* attention_scratch_ = nullptr;
  size_t attention_floats_ = 0;       // per thread
  std::vector<double> inv_freq_;      // Rope: [head_dim / 2]
  std::vector<double> rope_cs_;       // Rope: per thread, cos and sin of one token's pairs
  std::vector<uint8_t> row_scratch_;  // GetRows: one row back in GGUF blocks (grow-only)

  bool profiling_ = false;
  std::vector<OpProfile> profile_;
};

}  // namespace swarm::kernels::cpu
