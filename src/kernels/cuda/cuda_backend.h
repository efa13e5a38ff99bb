// The CUDA backend: weights, KV caches and activations live in the memory of one GPU; every
// operation is a kernel of this folder (or cuBLAS for prompt-sized products) queued on the
// backend's own stream, so operations return at once and Synchronize() reports device errors.
// Host-side inputs (positions, token ids, activations) pass through pinned staging buffers. The
// backend owns its stream, cuBLAS handle, staging and scratch; Buffers and StepGraphs it returns
// own their device memory. One thread drives a backend at a time (any thread: each call makes the
// backend's device current). This header needs no CUDA headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace swarm::kernels {

struct CudaDeviceInfo {
  int device = 0;
  std::string name;
  int major = 0;  // compute capability
  int minor = 0;
  int sm_count = 0;
  size_t total_memory = 0;  // bytes
};

// The number of CUDA devices this process can use. Unavailable, with the driver's reason, when
// there is none (no driver, no device, or a driver older than the runtime).
absl::StatusOr<int> CudaDeviceCount();

// Parses "cuda" (device 0) or "cuda:N". InvalidArgument for anything else.
absl::StatusOr<int> ParseCudaDeviceName(const std::string& name);

struct CudaBackendOptions {
  int device = 0;
  // Batches of at least this many tokens multiply through cuBLAS (f16/bf16 tensor cores, f32
  // SGEMM; quantized weights are first dequantized to f16); smaller ones use the mat-vec kernels,
  // which dequantize in registers and give each token the same bits whatever its batch. Set it
  // very high to make every product batch-invariant (slower prompts).
  int64_t gemm_min_tokens = 17;
  size_t staging_bytes = size_t{4} << 20;  // initial pinned staging; grows on demand
};

// A decode step captured as a CUDA graph (see CudaBackend::BeginCapture). Owns the executable
// graph and the pinned/device staging its copies use. Destroy it before its backend.
class StepGraph {
 public:
  ~StepGraph();
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

 private:
  friend class CudaBackend;
  struct Impl;
  explicit StepGraph(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class CudaBackend : public Backend {
 public:
  // Fails with Unavailable when the device does not exist or the driver cannot be used, and with
  // ResourceExhausted when the stream, cuBLAS or staging memory cannot be had.
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(const CudaBackendOptions& options);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override;
  bool host_memory() const override { return false; }

  // Device memory, zero-filled. ResourceExhausted (naming the device, the request and the free
  // memory) when the device is out of memory.
  absl::StatusOr<std::unique_ptr<Buffer>> Allocate(size_t bytes) override;
  // Uploads the weight once into a new device buffer appended to `storage`.
  absl::StatusOr<Weight> PrepareWeight(const Weight& host,
                                       std::vector<std::unique_ptr<Buffer>>& storage) override;
  // Asynchronous: the host source may be reused when the call returns; the host destination of
  // CopyToHost is written by Synchronize() at the latest.
  absl::Status CopyToBackend(void* dst, const void* host_src, size_t bytes) override;
  absl::Status CopyToHost(void* host_dst, const void* src, size_t bytes) override;
  absl::Status Synchronize() override;

  void MatMul(const Weight& w, const float* x, int64_t n_tokens, float* y) override;
  void AddBias(float* y, const float* bias, int64_t n_out, int64_t n_tokens) override;
  void GetRows(const Weight& table, const int32_t* ids, int64_t n, float* out) override;
  void RmsNorm(const float* x, const float* weight, int64_t n, int64_t n_tokens, float eps,
               float* y) override;
  void Rope(float* x, int64_t head_dim, int64_t n_heads, int64_t n_tokens, const int32_t* positions,
            float freq_base, RopeStyle style) override;
  void SwiGlu(const float* gate, const float* up, int64_t n, float* y) override;
  void Add(float* y, const float* x, int64_t n) override;
  void StoreKv(const float* k, const float* v, int64_t kv_dim, int64_t n_tokens,
               const int32_t* positions, KvTypes types, void* k_cache, void* v_cache) override;
  void Attention(const float* q, const void* k_cache, const void* v_cache,
                 const AttentionShape& shape, int64_t n_tokens, const int32_t* positions,
                 float* out) override;

  int device() const;
  const CudaDeviceInfo& info() const;
  // The backend's cudaStream_t, for code that queues its own work in order with the backend's
  // (NCCL transfers).
  void* stream_handle();

  // ---- CUDA graphs for decode steps ----------------------------------------------------------
  // Between BeginCapture() and EndCapture() operations and copies are recorded, not run. Every
  // host pointer given meanwhile (positions, ids, CopyToBackend sources, CopyToHost destinations)
  // is bound to the graph: each Launch() reads the sources and writes the destinations at the
  // same addresses again, with their contents at Launch() time. The caller keeps them valid and
  // the device buffers it used alive for the graph's lifetime. Kernels read positions from device
  // memory and choose their launch shapes from the batch shape only, so one graph serves every
  // decode step of the same batch shape, and its results are bit-identical to uncaptured runs.
  // staging_bytes bounds the pinned staging the captured copies may use.
  absl::Status BeginCapture(size_t staging_bytes);
  absl::StatusOr<std::unique_ptr<StepGraph>> EndCapture();
  // Queues one replay. FailedPrecondition when the graph is stale (the backend's scratch memory
  // was reallocated since the capture): capture it again. Results are ready after Synchronize().
  absl::Status Launch(StepGraph& graph);
  bool capturing() const;

  // ---- measurements for `swarm bench` --------------------------------------------------------
  // Device-to-device copy bandwidth, counting bytes read plus bytes written per second: the
  // memory-bandwidth bound a memory-bound kernel can reach on this card.
  absl::StatusOr<double> MeasureCopyBandwidth(size_t bytes = size_t{256} << 20,
                                              int iterations = 20);
  // Dense f16 x f16 -> f32 GEMM throughput through cuBLAS (FLOP/s): the tensor-core peak that
  // prompt processing is measured against.
  absl::StatusOr<double> MeasureF16GemmPeak(int n = 8192, int iterations = 10);

 private:
  struct State;
  explicit CudaBackend(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
};

}  // namespace swarm::kernels
