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

// Capabilities (backend_capabilities.h): graph capture, device links (NCCL), device probes.
class CudaBackend : public Backend, public GraphCapture, public DeviceProbe {
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

  int device() const;
  // The backend's cudaStream_t, for code that queues its own work in order with the backend's
  // (NCCL transfers).
  void* stream_handle();

  // ---- CUDA graphs for decode steps (GraphCapture) -------------------------------------------
  // Kernels read positions from device memory and choose their launch shapes from the batch shape
  // only, so one graph serves every decode step of the same batch shape, and its results are
  // bit-identical to uncaptured runs. Graphs own the pinned/device staging their copies use.
  GraphCapture* graph_capture() override { return this; }
  absl::Status BeginCapture(size_t staging_bytes) override;
  absl::StatusOr<std::unique_ptr<StepGraph>> EndCapture() override;
  // FailedPrecondition when the backend's scratch memory was reallocated since the capture.
  absl::Status Launch(StepGraph& graph) override;
  bool capturing() const;

  // ---- device links ---------------------------------------------------------------------------
  // An NcclLink (nccl_link.h) when every backend is a CUDA backend, else none.
  absl::StatusOr<std::unique_ptr<DeviceLink>> OpenDeviceLink(
      std::span<Backend* const> backends) override;

  // ---- measurements for `swarm bench` (DeviceProbe) ------------------------------------------
  DeviceProbe* device_probe() override { return this; }
  const DeviceInfo& device_info() const override;
  // Through cudaMemcpyAsync and cuBLAS (cublasGemmEx) on the backend's stream.
  absl::StatusOr<double> MeasureCopyBandwidth(size_t bytes, int iterations) override;
  absl::StatusOr<double> MeasureF16GemmPeak(int n, int iterations) override;

 private:
  struct State;
  explicit CudaBackend(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
};

}  // namespace swarm::kernels
