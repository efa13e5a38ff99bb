// Optional capabilities of a compute backend, in the spirit of ggml's optional backend entries:
// Backend returns a pointer to each interface it has (nullptr when it has none), so that callers
// use graph replay, device links, device probes and operation profiles without knowing which
// backend they hold. Each interface is implemented by the backend itself and used by the thread
// that drives it; what it returns (graphs, links) is owned by the caller.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace swarm::kernels {

class Backend;

// ---- graph capture and replay (CUDA graphs) -----------------------------------------------------

// A recorded sequence of operations, replayed by the backend that captured it. Destroy it before
// that backend.
class StepGraph {
 public:
  virtual ~StepGraph() = default;
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;
  // The backend that captured it: only that one can replay it.
  const Backend* backend() const { return backend_; }

 protected:
  explicit StepGraph(const Backend* backend) : backend_(backend) {}

 private:
  const Backend* backend_;
};

class GraphCapture {
 public:
  // Between BeginCapture() and EndCapture() operations and copies are recorded, not run. Every
  // host pointer given meanwhile is bound to the graph: each Launch() reads the sources and writes
  // the destinations at the same addresses again, with their contents at Launch() time. The caller
  // keeps them valid and the buffers it used alive for the graph's lifetime. staging_bytes bounds
  // the staging memory the captured copies may use.
  virtual absl::Status BeginCapture(size_t staging_bytes) = 0;
  virtual absl::StatusOr<std::unique_ptr<StepGraph>> EndCapture() = 0;
  // Queues one replay; results are ready after Synchronize(). FailedPrecondition when the graph is
  // stale (capture it again), InvalidArgument when another backend captured it.
  virtual absl::Status Launch(StepGraph& graph) = 0;

 protected:
  ~GraphCapture() = default;
};

// ---- device links (NCCL between GPUs) -----------------------------------------------------------

// Moves activations between the memories of several backends without a host round trip. Borrows
// the backends (they must outlive it).
class DeviceLink {
 public:
  virtual ~DeviceLink() = default;
  // dst: [count] floats in the memory of backends[to] = src: [count] floats in the memory of
  // backends[from]. Work queued on `to` afterwards sees the data; work queued on `from`
  // afterwards may overwrite src.
  virtual absl::Status Transfer(int from, const float* src, int to, float* dst, size_t count) = 0;
  // True when transfers between different devices go through NCCL.
  virtual bool uses_nccl() const = 0;
};

// ---- device probes (for `swarm bench`) ----------------------------------------------------------

struct DeviceInfo {
  int device = 0;
  std::string name;
  int major = 0;  // compute capability
  int minor = 0;
  int sm_count = 0;
  size_t total_memory = 0;  // bytes
};

class DeviceProbe {
 public:
  virtual const DeviceInfo& device_info() const = 0;
  // Device-to-device copy bandwidth, counting bytes read plus bytes written per second: the
  // memory-bandwidth bound a memory-bound kernel can reach on this device.
  virtual absl::StatusOr<double> MeasureCopyBandwidth(size_t bytes = size_t{256} << 20,
                                                      int iterations = 20) = 0;
  // Dense f16 x f16 -> f32 GEMM throughput (FLOP/s): the tensor-core peak that prompt processing
  // is measured against.
  virtual absl::StatusOr<double> MeasureF16GemmPeak(int n = 8192, int iterations = 10) = 0;

 protected:
  ~DeviceProbe() = default;
};

// ---- operation profiles (for `swarm bench --profile`) -------------------------------------------

// Time spent in one kind of operation while profiling is on.
struct OpProfile {
  std::string name;  // "matmul q4_K 2048x5632 T=1", "attention", "rms_norm", ...
  int64_t calls = 0;
  double seconds = 0;
  double flops = 0;         // arithmetic done (2 per multiply-add)
  double weight_bytes = 0;  // weight bytes read
};

class OpProfiler {
 public:
  // Off by default; on, it costs two clock reads per operation.
  virtual void SetProfiling(bool on) = 0;
  virtual void ResetProfile() = 0;
  virtual const std::vector<OpProfile>& profile() const = 0;

 protected:
  ~OpProfiler() = default;
};

}  // namespace swarm::kernels
