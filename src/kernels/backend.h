// The compute backend interface: memory plus the operations a transformer block needs.
// A backend owns its memory (host RAM for CPU backends, device memory for CUDA) and runs every
// operation on pointers into that memory. One thread drives a backend at a time; a backend may use
// its own worker threads inside an operation. Operations are asynchronous on device backends:
// call Synchronize() before reading results on the host.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend_capabilities.h"
#include "kernels/ggml_type.h"
#include "kernels/kv_types.h"
#include "kernels/rope_params.h"

namespace swarm::kernels {

// How a weight's rows are laid out in memory. kGguf: GGUF's blocks, as stored in the file.
// kCpuLanes and kCpuRowPanels: the optimized CPU backend's own layouts of Q4_0, Q8_0, Q4_1, Q5_1,
// Q5_0 and IQ4_NL (kernels/cpu/lane_layout.h) and of the float types and Q2_K..Q6_K
// (kernels/cpu/row_panels.h), made by its PrepareWeight and read only by its ops.
enum class WeightLayout : uint8_t { kGguf, kCpuLanes, kCpuRowPanels };

// A 2-D weight matrix (or a 1-D vector when n_out == 1) in backend memory.
// Row r (one output) starts at data + r * RowBytes(type, n_in).
struct Weight {
  GgmlType type = GgmlType::kF32;
  int64_t n_in = 0;   // ne[0]: elements per row
  int64_t n_out = 1;  // ne[1]: rows
  const void* data = nullptr;
  WeightLayout layout = WeightLayout::kGguf;
  // data lies in a read-only mapping of a file (the model), whose pages the OS can always read
  // again: a backend that copies the weight elsewhere drops them (ReleaseMappedPages), so that the
  // process does not hold the weight twice.
  bool file_mapped = false;
};

// Memory owned by a backend. Destroying it frees the memory.
class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual void* data() = 0;
  virtual size_t size() const = 0;
};

struct AttentionShape {
  int64_t n_head = 0;
  int64_t n_head_kv = 0;  // n_head is a multiple of n_head_kv (grouped-query attention)
  int64_t head_dim = 0;
  KvTypes cache{};  // element types of the K and V caches the attention reads
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // True when backend pointers are host pointers (CPU backends): host data can be used in place.
  virtual bool host_memory() const = 0;

  // ---- memory -------------------------------------------------------------------------------
  virtual absl::StatusOr<std::unique_ptr<Buffer>> Allocate(size_t bytes) = 0;
  // Makes a host weight (e.g. a view into a memory-mapped GGUF) usable by this backend's ops.
  // CPU backends return it unchanged (zero copy; the mapping stays the owner), except where their
  // kernels read a layout of their own (the optimized CPU backend's Q4_0). Device backends
  // copy it into a new buffer appended to `storage`, which must outlive the returned Weight.
  virtual absl::StatusOr<Weight> PrepareWeight(const Weight& host,
                                               std::vector<std::unique_ptr<Buffer>>& storage) = 0;
  // Copies are queued like operations: host_src may be reused once the call returns, but host_dst
  // holds the bytes only after the next Synchronize() (a device backend copies them then).
  virtual absl::Status CopyToBackend(void* dst, const void* host_src, size_t bytes) = 0;
  virtual absl::Status CopyToHost(void* host_dst, const void* src, size_t bytes) = 0;
  // Waits for queued operations; reports any deferred device error.
  virtual absl::Status Synchronize() = 0;
  // The driving thread is about to wait for the network: helper threads that spin between
  // operations should sleep now and leave the CPU to other processes. Nothing queued is affected.
  virtual void Park() {}
  // Work is about to come (a request arrived): helper threads wake now, so that their wake-up
  // overlaps with decoding the request.
  virtual void Unpark() {}

  // ---- operations (all pointers in backend memory; T = number of tokens) ---------------------
  // y: [w.n_out, T] = w · x, x: [w.n_in, T]. Column t is token t (dimension 0 innermost).
  virtual void MatMul(const Weight& w, const float* x, int64_t n_tokens, float* y) = 0;
  // y: [n_out, T] += bias: [n_out]
  virtual void AddBias(float* y, const float* bias, int64_t n_out, int64_t n_tokens) = 0;
  // out: [table.n_in, n] = rows ids[0..n) of an embedding table [n_in, n_out] (ids in host memory,
  // already validated against table.n_out).
  virtual void GetRows(const Weight& table, const int32_t* ids, int64_t n, float* out) = 0;
  // y: [n, T] = x / sqrt(mean(x^2) + eps) * weight: [n]   (y may alias x)
  virtual void RmsNorm(const float* x, const float* weight, int64_t n, int64_t n_tokens, float eps,
                       float* y) = 0;
  // x: [head_dim * n_heads, T] rotated in place as rope_params.h defines; positions: [T] in host
  // memory.
  virtual void Rope(float* x, int64_t head_dim, int64_t n_heads, int64_t n_tokens,
                    const int32_t* positions, const RopeParams& rope) = 0;
  // y: [n] = silu(gate) * up   (y may alias gate)
  virtual void SwiGlu(const float* gate, const float* up, int64_t n, float* y) = 0;
  // y: [n] += x
  virtual void Add(float* y, const float* x, int64_t n) = 0;
  // y: [rows, *]: column ids[i] += scales[i] * column i of x: [rows, n], for i in [0, n), each
  // element as one float product then one float sum. ids (distinct, in range) and scales are in
  // host memory. Adds one expert's outputs, weighted by its gate, to the tokens that chose it.
  virtual void AddScaledColumns(float* y, const float* x, int64_t rows, const int32_t* ids,
                                const float* scales, int64_t n) = 0;
  // Writes k, v: [kv_dim, T] into the cache rows positions[t] of k_cache, v_cache: [kv_dim,
  // capacity], rounded to types.k / types.v (kernels/kv_types.h). Row p of a cache starts at byte
  // p * KvRowBytes(type, kv_dim).
  virtual void StoreKv(const float* k, const float* v, int64_t kv_dim, int64_t n_tokens,
                       const int32_t* positions, KvTypes types, void* k_cache, void* v_cache) = 0;
  // Causal attention for T query tokens of one sequence: token t attends to cache rows
  // [0, positions[t]]. q, out: [head_dim * n_head, T]; caches: [head_dim * n_head_kv, capacity]
  // of shape.cache's types, which ValidateKvTypes accepted for shape.head_dim.
  virtual void Attention(const float* q, const void* k_cache, const void* v_cache,
                         const AttentionShape& shape, int64_t n_tokens, const int32_t* positions,
                         float* out) = 0;

  // ---- optional capabilities (backend_capabilities.h): nullptr when the backend has none -----
  virtual GraphCapture* graph_capture() { return nullptr; }
  virtual DeviceProbe* device_probe() { return nullptr; }
  virtual OpProfiler* op_profiler() { return nullptr; }
  // A link that moves activations between the memories of `backends` (this one among them)
  // device to device; nullptr when they have none (they then meet in host memory).
  virtual absl::StatusOr<std::unique_ptr<DeviceLink>> OpenDeviceLink(
      std::span<Backend* const> /*backends*/) {
    return std::unique_ptr<DeviceLink>();
  }
};

}  // namespace swarm::kernels
