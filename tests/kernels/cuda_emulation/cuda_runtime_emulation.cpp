// The part of the CUDA runtime, cuBLAS and NCCL that the CUDA backend calls, emulated on the host,
// so that the backend's own tests (test_cuda_backend, test_cuda_ops, test_multi_gpu_stack) run on
// machines without a GPU: linked into a test executable, these definitions take the place of the
// toolkit's shared libraries, and the kernels run through cuda_emulation.h.
//
// The model, kept deliberately strict so that it finds host-side mistakes:
//  - Devices: SWARM_CUDA_EMULATION_DEVICES (default 2) devices of 4 GiB each, 132 SMs, sm_90.
//    Device memory is host memory, but every device pointer is checked: a copy's device side must
//    lie inside one cudaMalloc allocation, its host side outside every one, or the copy fails with
//    cudaErrorInvalidValue, as a wrong cudaMemcpyKind would fail or corrupt on a GPU.
//  - Work is asynchronous: kernels, copies to and from pinned memory, memsets, event records,
//    GEMMs and NCCL transfers wait in one queue, in issue order (a valid order for every stream),
//    and run only when the host synchronizes (cudaStreamSynchronize, cudaEventSynchronize,
//    cudaDeviceSynchronize, cudaFree, ...). A host that reads a result before synchronizing, or
//    rewrites a pinned input before its copy ran, sees the wrong data here, as it could on a GPU.
//    Copies from or to pageable memory are synchronous, as on a GPU.
//  - Stream capture (thread-local mode) records the stream's work into a graph; replay enqueues it
//    again. Calls a capture forbids (allocation, synchronization, pageable copies) fail and
//    invalidate the capture.
//  - NCCL: send/receive pairs must meet within one ncclGroupStart/ncclGroupEnd (one thread driving
//    several GPUs would otherwise deadlock); an unmatched one is ncclInvalidUsage.
// Not modelled: concurrency between streams, timing, cuBLAS's tensor-core rounding (the GEMM
// accumulates in float in order), and the driver's failure modes beyond out-of-memory.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_emulation.h"

// Here the runtime's own names are defined, not redirected.
#undef cudaGetLastError
#undef cudaFuncSetAttribute

struct CUstream_st {
  int device = 0;
  bool capturing = false;
  bool capture_invalidated = false;
  std::vector<std::function<void()>> captured;
};
struct CUevent_st {
  std::chrono::steady_clock::time_point time{};
  bool recorded = false;
};
struct CUgraph_st {
  std::vector<std::function<void()>> ops;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> ops;
};
struct cublasContext {
  cudaStream_t stream = nullptr;
};
struct ncclComm {
  int rank = 0;
  int device = 0;
  int n_ranks = 0;
  std::shared_ptr<std::vector<ncclComm*>> clique;
};

namespace swarm::cuda_emulation {
namespace {

constexpr size_t kDeviceMemory = size_t{4} << 30;
constexpr size_t kAlignment = 256;

struct Allocation {
  size_t bytes = 0;
  int device = 0;
};

struct PendingTransfer {
  bool send = false;
  void* buffer = nullptr;
  size_t bytes = 0;
  int peer = 0;
  ncclComm* comm = nullptr;
};

// The emulated machine. One per process: it stands for the driver, which is one per process too.
class Machine {
 public:
  static Machine& Get() {
    static Machine machine;
    return machine;
  }

  int devices() const { return devices_; }

  std::recursive_mutex mutex;
  std::map<const char*, Allocation, std::greater<>> device_memory;  // by start, descending
  std::map<const char*, size_t, std::greater<>> pinned;  // cudaHostAlloc blocks, by start
  std::vector<size_t> used;
  std::deque<std::function<void()>> queue;
  std::vector<PendingTransfer> group;
  int group_depth = 0;

  // The allocation holding [p, p + bytes), or nullptr.
  const Allocation* DeviceRange(const void* p, size_t bytes) const {
    const char* c = static_cast<const char*>(p);
    auto it = device_memory.lower_bound(c);  // first start <= c
    if (it == device_memory.end()) return nullptr;
    if (c + bytes > it->first + it->second.bytes) return nullptr;
    return &it->second;
  }
  bool InsideDeviceMemory(const void* p) const {
    const char* c = static_cast<const char*>(p);
    auto it = device_memory.lower_bound(c);
    return it != device_memory.end() && c < it->first + it->second.bytes;
  }
  // Inside a cudaHostAlloc block (the backend hands out slots inside its blocks).
  bool IsPinned(const void* p) const {
    const char* c = static_cast<const char*>(p);
    auto it = pinned.lower_bound(c);
    return it != pinned.end() && c < it->first + it->second;
  }

  void Drain() {
    while (!queue.empty()) {
      std::function<void()> work = std::move(queue.front());
      queue.pop_front();
      work();
    }
  }

 private:
  Machine() {
    if (const char* n = std::getenv("SWARM_CUDA_EMULATION_DEVICES")) devices_ = std::atoi(n);
    used.assign(static_cast<size_t>(std::max(devices_, 0)), 0);
  }

  int devices_ = 2;
};

thread_local int current_device = 0;
thread_local cudaStream_t capturing_stream = nullptr;  // thread-local capture mode

cudaError_t Fail(cudaError_t error) {
  SetError(error);
  return error;
}

// A call that a capture in progress on this thread forbids: fails and invalidates the capture.
bool ForbiddenDuringCapture() {
  if (capturing_stream == nullptr) return false;
  capturing_stream->capture_invalidated = true;
  Fail(cudaErrorStreamCaptureUnsupported);
  return true;
}

// Queues work on a stream (or records it into the stream's capture).
void Enqueue(cudaStream_t stream, std::function<void()> work) {
  Machine& m = Machine::Get();
  std::lock_guard lock(m.mutex);
  if (stream != nullptr && stream->capturing) {
    stream->captured.push_back(std::move(work));
  } else {
    m.queue.push_back(std::move(work));
  }
}

void Synchronize() {
  Machine& m = Machine::Get();
  std::lock_guard lock(m.mutex);
  m.Drain();
}

void* AlignedAlloc(size_t bytes) {
  return std::aligned_alloc(
      kAlignment, (std::max<size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment);
}

float LoadAs(cudaDataType type, const void* base, size_t index) {
  switch (type) {
    case CUDA_R_16F:
      return __half2float(static_cast<const __half*>(base)[index]);
    case CUDA_R_16BF:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[index]);
    default:
      return static_cast<const float*>(base)[index];
  }
}

size_t SizeOf(cudaDataType type) {
  return type == CUDA_R_16F || type == CUDA_R_16BF ? 2 : type == CUDA_R_32F ? 4 : 0;
}

// C (m x n, column-major, ldc) = alpha op(A) op(B) + beta C, float accumulation in k order.
cublasStatus_t Gemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                    int m, int n, int k, float alpha, const void* a, cudaDataType a_type, int lda,
                    const void* b, cudaDataType b_type, int ldb, float beta, void* c,
                    cudaDataType c_type, int ldc) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (m < 0 || n < 0 || k < 0 || c_type != CUDA_R_32F || SizeOf(a_type) == 0 ||
      SizeOf(b_type) == 0) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  const bool ta = transa == CUBLAS_OP_T, tb = transb == CUBLAS_OP_T;
  if (lda < std::max(1, ta ? k : m) || ldb < std::max(1, tb ? n : k) || ldc < std::max(1, m)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  Machine& machine = Machine::Get();
  {
    std::lock_guard lock(machine.mutex);
    const size_t a_span = static_cast<size_t>(lda) * static_cast<size_t>(ta ? m : k);
    const size_t b_span = static_cast<size_t>(ldb) * static_cast<size_t>(tb ? k : n);
    const size_t c_span = static_cast<size_t>(ldc) * static_cast<size_t>(n);
    if ((m > 0 && k > 0 && !machine.DeviceRange(a, a_span * SizeOf(a_type))) ||
        (n > 0 && k > 0 && !machine.DeviceRange(b, b_span * SizeOf(b_type))) ||
        (m > 0 && n > 0 && !machine.DeviceRange(c, c_span * sizeof(float)))) {
      return CUBLAS_STATUS_INVALID_VALUE;  // a host pointer (a GPU would fault)
    }
  }
  Enqueue(handle->stream, [=] {
    float* out = static_cast<float*>(c);
    for (int j = 0; j < n; ++j) {
      for (int i = 0; i < m; ++i) {
        float sum = 0.0f;
        for (int p = 0; p < k; ++p) {
          const size_t ai =
              ta ? static_cast<size_t>(i) * lda + p : static_cast<size_t>(p) * lda + i;
          const size_t bi =
              tb ? static_cast<size_t>(p) * ldb + j : static_cast<size_t>(j) * ldb + p;
          sum += LoadAs(a_type, a, ai) * LoadAs(b_type, b, bi);
        }
        float& dst = out[static_cast<size_t>(j) * ldc + i];
        dst = beta == 0.0f ? alpha * sum : alpha * sum + beta * dst;
      }
    }
  });
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

// The kernels' launches (cuda_emulation.h) go through the same queue as everything else. The
// legacy default stream (nullptr), which the backend never uses, runs at once: the kernel tests
// launch on it and read the results without synchronizing.
void SubmitWork(cudaStream_t stream, std::function<void()> work) {
  if (stream == nullptr) {
    Synchronize();
    work();
    return;
  }
  Enqueue(stream, std::move(work));
}

}  // namespace swarm::cuda_emulation

using swarm::cuda_emulation::Machine;
namespace emu = swarm::cuda_emulation;

extern "C" {

// ---- devices and errors -------------------------------------------------------------------------

cudaError_t cudaGetDeviceCount(int* count) {
  const int n = Machine::Get().devices();
  if (n <= 0) return emu::Fail(cudaErrorNoDevice);
  *count = n;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= Machine::Get().devices()) return emu::Fail(cudaErrorInvalidDevice);
  emu::current_device = device;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device < 0 || device >= Machine::Get().devices()) return emu::Fail(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "emulated GPU %d (host)", device);
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = 132;
  prop->totalGlobalMem = emu::kDeviceMemory;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  return cudaSuccess;
}

cudaError_t cudaGetLastError(void) { return emu::LastError(); }

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice:
      return "cudaErrorNoDevice";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorMisalignedAddress:
      return "cudaErrorMisalignedAddress";
    case cudaErrorStreamCaptureUnsupported:
      return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated:
      return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorIllegalState:
      return "cudaErrorIllegalState";
    default:
      return "cudaErrorUnknown";
  }
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorMisalignedAddress:
      return "misaligned address";
    case cudaErrorStreamCaptureUnsupported:
      return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
      return "operation failed due to a previous error during capture";
    case cudaErrorIllegalState:
      return "the operation cannot be performed in the present state";
    default:
      return "unknown error";
  }
}

cudaError_t cudaDeviceSynchronize(void) {
  if (emu::ForbiddenDuringCapture()) return cudaErrorStreamCaptureUnsupported;
  emu::Synchronize();
  return cudaSuccess;
}

// ---- memory -------------------------------------------------------------------------------------

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (emu::ForbiddenDuringCapture()) return cudaErrorStreamCaptureUnsupported;
  Machine& m = Machine::Get();
  std::lock_guard lock(m.mutex);
  size_t& used = m.used[static_cast<size_t>(emu::current_device)];
  if (bytes > emu::kDeviceMemory - used) return emu::Fail(cudaErrorMemoryAllocation);
  void* p = emu::AlignedAlloc(bytes);
  if (p == nullptr) return emu::Fail(cudaErrorMemoryAllocation);
  std::memset(p, 0xa5, std::max<size_t>(bytes, 1));  // device memory starts as garbage
  used += bytes;
  m.device_memory[static_cast<const char*>(p)] = {bytes, emu::current_device};
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  if (emu::ForbiddenDuringCapture()) return cudaErrorStreamCaptureUnsupported;
  Machine& m = Machine::Get();
  std::lock_guard lock(m.mutex);
  m.Drain();  // cudaFree waits for the device
  auto it = m.device_memory.find(static_cast<const char*>(ptr));
  if (it == m.device_memory.end()) return emu::Fail(cudaErrorInvalidValue);
  m.used[static_cast<size_t>(it->second.device)] -= it->second.bytes;
  m.device_memory.erase(it);
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  Machine& m = Machine::Get();
  std::lock_guard lock(m.mutex);
  *total_bytes = emu::kDeviceMemory;
  *free_bytes = emu::kDeviceMemory - m.used[static_cast<size_t>(emu::current_device)];
  return cudaSuccess;
}

cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned int /*flags*/) {
  if (emu::ForbiddenDuringCapture()) return cudaErrorStreamCaptureUnsupported;
  if (bytes > emu::kDeviceMemory) return emu::Fail(cudaErrorMemoryAllocation);
  void* p = emu::AlignedAlloc(bytes);
  if (p == nullptr) return emu::Fail(cudaErrorMemoryAllocation);
  Machine& m = Machine::Get();
  std::lock_guard lock(m.mutex);
  m.pinned[static_cast<const char*>(p)] = bytes;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFreeHost(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  if (emu::ForbiddenDuringCapture()) return cudaErrorStreamCaptureUnsupported;
  Machine& m = Machine::Get();
  std::lock_guard lock(m.mutex);
  m.Drain();
  if (m.pinned.erase(static_cast<const char*>(ptr)) == 0) return emu::Fail(cudaErrorInvalidValue);
  std::free(ptr);
  return cudaSuccess;
}

}  // extern "C"

namespace swarm::cuda_emulation {
namespace {

// Checks a copy's two sides against the kind: the device side inside one allocation, the host side
// outside device memory.
cudaError_t CheckCopy(const Machine& m, const void* dst, const void* src, size_t bytes,
                      cudaMemcpyKind kind) {
  const bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind == cudaMemcpyHostToHost || kind == cudaMemcpyDefault) return cudaErrorInvalidValue;
  if (dst_device ? m.DeviceRange(dst, bytes) == nullptr : m.InsideDeviceMemory(dst)) {
    return cudaErrorInvalidValue;
  }
  if (src_device ? m.DeviceRange(src, bytes) == nullptr : m.InsideDeviceMemory(src)) {
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

}  // namespace
}  // namespace swarm::cuda_emulation

extern "C" {

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  Machine& m = Machine::Get();
  std::lock_guard lock(m.mutex);
  if (cudaError_t e = emu::CheckCopy(m, dst, src, bytes, kind); e != cudaSuccess) {
    return emu::Fail(e);
  }
  const void* host = kind == cudaMemcpyHostToDevice   ? src
                     : kind == cudaMemcpyDeviceToHost ? static_cast<const void*>(dst)
                                                      : nullptr;
  if (host != nullptr && !m.IsPinned(host)) {
    // Pageable memory: the copy is done when the call returns (after the work before it).
    if (emu::ForbiddenDuringCapture()) return cudaErrorStreamCaptureUnsupported;
    m.Drain();
    std::memcpy(dst, src, bytes);
    return cudaSuccess;
  }
  emu::Enqueue(stream, [=] { std::memcpy(dst, src, bytes); });
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  Machine& m = Machine::Get();
  std::lock_guard lock(m.mutex);
  if (m.DeviceRange(dst, bytes) == nullptr) return emu::Fail(cudaErrorInvalidValue);
  emu::Enqueue(stream, [=] { std::memset(dst, value, bytes); });
  return cudaSuccess;
}

// ---- streams and events -------------------------------------------------------------------------

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int /*flags*/) {
  *stream = new CUstream_st{};
  (*stream)->device = emu::current_device;
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (stream == nullptr) return emu::Fail(cudaErrorInvalidValue);
  emu::Synchronize();
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (stream != nullptr && stream->capturing) {
    stream->capture_invalidated = true;
    return emu::Fail(cudaErrorStreamCaptureUnsupported);
  }
  if (emu::ForbiddenDuringCapture()) return cudaErrorStreamCaptureUnsupported;
  emu::Synchronize();
  return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t /*stream*/, cudaEvent_t event, unsigned int) {
  // One queue in issue order: the work the event marks runs before anything issued after it.
  return event == nullptr ? emu::Fail(cudaErrorInvalidValue) : cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  *event = new CUevent_st{};
  return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int /*flags*/) {
  return cudaEventCreate(event);
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (event == nullptr) return emu::Fail(cudaErrorInvalidValue);
  emu::Synchronize();
  delete event;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (event == nullptr) return emu::Fail(cudaErrorInvalidValue);
  emu::Enqueue(stream, [event] {
    event->time = std::chrono::steady_clock::now();
    event->recorded = true;
  });
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (event == nullptr) return emu::Fail(cudaErrorInvalidValue);
  if (emu::ForbiddenDuringCapture()) return cudaErrorStreamCaptureUnsupported;
  emu::Synchronize();
  return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (start == nullptr || end == nullptr || !start->recorded || !end->recorded) {
    return emu::Fail(cudaErrorInvalidValue);
  }
  *ms = std::chrono::duration<float, std::milli>(end->time - start->time).count();
  return cudaSuccess;
}

// ---- graphs -------------------------------------------------------------------------------------

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  if (stream == nullptr || stream->capturing || emu::capturing_stream != nullptr ||
      mode != cudaStreamCaptureModeThreadLocal) {
    return emu::Fail(cudaErrorIllegalState);
  }
  stream->capturing = true;
  stream->capture_invalidated = false;
  stream->captured.clear();
  emu::capturing_stream = stream;
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (stream == nullptr || !stream->capturing || emu::capturing_stream != stream) {
    return emu::Fail(cudaErrorIllegalState);
  }
  stream->capturing = false;
  emu::capturing_stream = nullptr;
  std::vector<std::function<void()>> ops = std::move(stream->captured);
  stream->captured.clear();
  if (stream->capture_invalidated) {
    *graph = nullptr;
    return emu::Fail(cudaErrorStreamCaptureInvalidated);
  }
  *graph = new CUgraph_st{std::move(ops)};
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph,
                                 unsigned long long /*flags*/) {
  if (graph == nullptr) return emu::Fail(cudaErrorInvalidValue);
  *exec = new CUgraphExec_st{graph->ops};
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (exec == nullptr) return emu::Fail(cudaErrorInvalidValue);
  for (const auto& op : exec->ops) emu::Enqueue(stream, op);
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  emu::Synchronize();  // queued replays hold copies of its work, but keep the driver's order
  delete exec;
  return cudaSuccess;
}

// ---- cuBLAS -------------------------------------------------------------------------------------

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  *handle = new cublasContext{};
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  emu::Synchronize();
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace, size_t bytes) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (bytes > 0 && Machine::Get().DeviceRange(workspace, bytes) == nullptr) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t /*mode*/) {
  return handle == nullptr ? CUBLAS_STATUS_NOT_INITIALIZED : CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    default:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
  }
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                              cublasOperation_t transb, int m, int n, int k, const float* alpha,
                              const float* a, int lda, const float* b, int ldb, const float* beta,
                              float* c, int ldc) {
  return emu::Gemm(handle, transa, transb, m, n, k, *alpha, a, CUDA_R_32F, lda, b, CUDA_R_32F, ldb,
                   *beta, c, CUDA_R_32F, ldc);
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void* alpha,
                            const void* a, cudaDataType a_type, int lda, const void* b,
                            cudaDataType b_type, int ldb, const void* beta, void* c,
                            cudaDataType c_type, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t /*algo*/) {
  if (compute != CUBLAS_COMPUTE_32F || a_type != b_type) return CUBLAS_STATUS_NOT_SUPPORTED;
  return emu::Gemm(handle, transa, transb, m, n, k, *static_cast<const float*>(alpha), a, a_type,
                   lda, b, b_type, ldb, *static_cast<const float*>(beta), c, c_type, ldc);
}

// ---- NCCL ---------------------------------------------------------------------------------------

ncclResult_t ncclCommInitAll(ncclComm_t* comms, int n, const int* devices) {
  if (n <= 0 || comms == nullptr) return ncclInvalidArgument;
  auto clique = std::make_shared<std::vector<ncclComm*>>();
  for (int i = 0; i < n; ++i) {
    const int device = devices != nullptr ? devices[i] : i;
    if (device < 0 || device >= Machine::Get().devices()) return ncclInvalidArgument;
    for (int j = 0; j < i; ++j) {
      if ((*clique)[static_cast<size_t>(j)]->device == device) return ncclInvalidUsage;
    }
    clique->push_back(new ncclComm{i, device, n, nullptr});
  }
  for (int i = 0; i < n; ++i) {
    comms[i] = (*clique)[static_cast<size_t>(i)];
    comms[i]->clique = clique;
  }
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (comm == nullptr) return ncclInvalidArgument;
  emu::Synchronize();
  delete comm;
  return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess:
      return "no error";
    case ncclInvalidArgument:
      return "invalid argument";
    case ncclInvalidUsage:
      return "invalid usage";
    default:
      return "unhandled error";
  }
}

ncclResult_t ncclGroupStart() {
  Machine& m = Machine::Get();
  std::lock_guard lock(m.mutex);
  ++m.group_depth;
  return ncclSuccess;
}

ncclResult_t ncclGroupEnd() {
  Machine& m = Machine::Get();
  std::lock_guard lock(m.mutex);
  if (m.group_depth == 0) return ncclInvalidUsage;
  if (--m.group_depth > 0) return ncclSuccess;
  std::vector<emu::PendingTransfer> group = std::move(m.group);
  m.group.clear();
  std::vector<bool> matched(group.size(), false);
  for (size_t i = 0; i < group.size(); ++i) {
    if (!group[i].send) continue;
    for (size_t j = 0; j < group.size(); ++j) {
      const emu::PendingTransfer& send = group[i];
      const emu::PendingTransfer& recv = group[j];
      if (matched[j] || recv.send || recv.comm->clique != send.comm->clique ||
          recv.comm->rank != send.peer || send.comm->rank != recv.peer) {
        continue;
      }
      if (recv.bytes != send.bytes) return ncclInvalidUsage;
      matched[i] = matched[j] = true;
      m.queue.push_back([dst = recv.buffer, src = send.buffer, bytes = send.bytes] {
        std::memcpy(dst, src, bytes);
      });
      break;
    }
  }
  for (bool done : matched) {
    if (!done) return ncclInvalidUsage;  // a lone send or receive: a deadlock with one thread
  }
  return ncclSuccess;
}

}  // extern "C"

namespace swarm::cuda_emulation {
namespace {

size_t NcclSize(ncclDataType_t type) {
  switch (type) {
    case ncclInt8:
    case ncclUint8:
      return 1;
    case ncclFloat16:
    case ncclBfloat16:
      return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
      return 4;
    default:
      return 8;
  }
}

ncclResult_t AddTransfer(bool send, const void* buffer, size_t count, ncclDataType_t type, int peer,
                         ncclComm_t comm, cudaStream_t /*stream*/) {
  if (comm == nullptr || peer < 0 || peer >= comm->n_ranks || peer == comm->rank) {
    return ncclInvalidArgument;
  }
  Machine& m = Machine::Get();
  std::lock_guard lock(m.mutex);
  const size_t bytes = count * NcclSize(type);
  const Allocation* allocation = m.DeviceRange(buffer, bytes);
  if (allocation == nullptr || allocation->device != comm->device) return ncclInvalidArgument;
  if (m.group_depth == 0) return ncclInvalidUsage;  // would block forever on one thread
  m.group.push_back({send, const_cast<void*>(buffer), bytes, peer, comm});
  return ncclSuccess;
}

}  // namespace
}  // namespace swarm::cuda_emulation

extern "C" {

ncclResult_t ncclSend(const void* buffer, size_t count, ncclDataType_t type, int peer,
                      ncclComm_t comm, cudaStream_t stream) {
  return emu::AddTransfer(true, buffer, count, type, peer, comm, stream);
}

ncclResult_t ncclRecv(void* buffer, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  return emu::AddTransfer(false, buffer, count, type, peer, comm, stream);
}

}  // extern "C"
