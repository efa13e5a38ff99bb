#include "kernels/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "base/checked_math.h"
#include "base/mapped_file.h"
#include "base/status_macros.h"
#include "kernels/cuda/add.cuh"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_types.h"
#include "kernels/cuda/get_rows.cuh"
#include "kernels/cuda/matvec.cuh"
#include "kernels/cuda/nccl_link.h"
#include "kernels/cuda/rms_norm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/store_kv.cuh"
#include "kernels/cuda/swiglu.cuh"

namespace swarm::kernels {

using gpu::CublasStatus;
using gpu::CudaStatus;
using gpu::FormatBytes;
using gpu::WType;

static_assert(static_cast<uint32_t>(WType::kF32) == static_cast<uint32_t>(GgmlType::kF32));
static_assert(static_cast<uint32_t>(WType::kF16) == static_cast<uint32_t>(GgmlType::kF16));
static_assert(static_cast<uint32_t>(WType::kBF16) == static_cast<uint32_t>(GgmlType::kBF16));
static_assert(static_cast<uint32_t>(WType::kQ8_0) == static_cast<uint32_t>(GgmlType::kQ8_0));
static_assert(static_cast<uint32_t>(WType::kQ4_0) == static_cast<uint32_t>(GgmlType::kQ4_0));
static_assert(static_cast<uint32_t>(WType::kQ4_K) == static_cast<uint32_t>(GgmlType::kQ4_K));
static_assert(static_cast<uint32_t>(WType::kQ6_K) == static_cast<uint32_t>(GgmlType::kQ6_K));
static_assert(static_cast<uint32_t>(WType::kQ2_K) == static_cast<uint32_t>(GgmlType::kQ2_K));
static_assert(static_cast<uint32_t>(WType::kQ3_K) == static_cast<uint32_t>(GgmlType::kQ3_K));
static_assert(static_cast<uint32_t>(WType::kIQ4_XS) == static_cast<uint32_t>(GgmlType::kIQ4_XS));
static_assert(static_cast<uint32_t>(WType::kQ4_1) == static_cast<uint32_t>(GgmlType::kQ4_1));
static_assert(static_cast<uint32_t>(WType::kQ5_0) == static_cast<uint32_t>(GgmlType::kQ5_0));
static_assert(static_cast<uint32_t>(WType::kQ5_K) == static_cast<uint32_t>(GgmlType::kQ5_K));
static_assert(static_cast<uint32_t>(WType::kQ5_1) == static_cast<uint32_t>(GgmlType::kQ5_1));
static_assert(static_cast<uint32_t>(WType::kIQ4_NL) == static_cast<uint32_t>(GgmlType::kIQ4_NL));

namespace {

constexpr size_t kStagingAlignment = 64;
// Copies larger than this skip the pinned staging (the runtime stages pageable memory itself).
constexpr size_t kMaxStagedCopy = size_t{64} << 20;
constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;

// Block size and bytes of the weight types the kernels handle (as ggml_type.cpp; kept here so this
// library depends on no other).
bool WeightLayout(GgmlType type, int64_t* block, int64_t* bytes) {
  switch (type) {
    case GgmlType::kF32:
      return *block = 1, *bytes = 4, true;
    case GgmlType::kF16:
    case GgmlType::kBF16:
      return *block = 1, *bytes = 2, true;
    case GgmlType::kQ8_0:
      return *block = 32, *bytes = 34, true;
    case GgmlType::kQ4_0:
      return *block = 32, *bytes = 18, true;
    case GgmlType::kQ4_K:
      return *block = 256, *bytes = 144, true;
    case GgmlType::kQ6_K:
      return *block = 256, *bytes = 210, true;
    case GgmlType::kQ2_K:
      return *block = 256, *bytes = 84, true;
    case GgmlType::kQ3_K:
      return *block = 256, *bytes = 110, true;
    case GgmlType::kIQ4_XS:
      return *block = 256, *bytes = 136, true;
    case GgmlType::kQ4_1:
      return *block = 32, *bytes = 20, true;
    case GgmlType::kQ5_0:
      return *block = 32, *bytes = 22, true;
    case GgmlType::kQ5_K:
      return *block = 256, *bytes = 176, true;
    case GgmlType::kQ5_1:
      return *block = 32, *bytes = 24, true;
    case GgmlType::kIQ4_NL:
      return *block = 32, *bytes = 18, true;
    case GgmlType::kQ8_1:
    case GgmlType::kQ8_K:
      break;
  }
  return false;
}

// Bytes of one row, or nullopt for an unsupported type, a partial block or an overflow.
std::optional<int64_t> WeightRowBytes(GgmlType type, int64_t n_in) {
  int64_t block = 0, bytes = 0;
  if (!WeightLayout(type, &block, &bytes) || n_in <= 0 || n_in % block != 0) return std::nullopt;
  auto row = CheckedMul(static_cast<uint64_t>(n_in / block), static_cast<uint64_t>(bytes));
  if (!row || *row > (uint64_t{1} << 40)) return std::nullopt;
  return static_cast<int64_t>(*row);
}

size_t AlignUp(size_t x) {
  return (x + kStagingAlignment - 1) / kStagingAlignment * kStagingAlignment;
}

class DeviceBuffer : public Buffer {
 public:
  DeviceBuffer(int device, void* data, size_t size) : device_(device), data_(data), size_(size) {}
  ~DeviceBuffer() override {
    cudaSetDevice(device_);
    cudaFree(data_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* data() override { return data_; }
  size_t size() const override { return size_; }

 private:
  int device_;
  void* data_;
  size_t size_;
};

// Pinned host memory paired with a device region of the same size: a bump allocator whose slots
// are reused once the work reading or writing them is known to be finished.
struct Staging {
  int device = 0;
  char* host = nullptr;  // pinned
  char* dev = nullptr;   // device
  size_t capacity = 0;
  size_t used = 0;

  Staging() = default;
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;
  ~Staging() { Release(); }

  void Release() {
    if (host == nullptr && dev == nullptr) return;
    cudaSetDevice(device);
    if (host != nullptr) cudaFreeHost(host);
    if (dev != nullptr) cudaFree(dev);
    host = dev = nullptr;
    capacity = used = 0;
  }

  absl::Status Reserve(int dev_id, size_t bytes) {
    Release();
    device = dev_id;
    bytes = AlignUp(std::max<size_t>(bytes, kStagingAlignment));
    void* h = nullptr;
    if (cudaError_t e = cudaHostAlloc(&h, bytes, cudaHostAllocDefault); e != cudaSuccess) {
      cudaGetLastError();
      return absl::ResourceExhaustedError(
          absl::StrCat("CUDA device ", device, ": cannot pin ", FormatBytes(bytes),
                       " of host memory for staging: ", cudaGetErrorString(e)));
    }
    void* d = nullptr;
    if (cudaError_t e = cudaMalloc(&d, bytes); e != cudaSuccess) {
      cudaGetLastError();
      cudaFreeHost(h);
      return CudaStatus(e, device, absl::StrCat("allocating ", FormatBytes(bytes), " of staging"));
    }
    host = static_cast<char*>(h);
    dev = static_cast<char*>(d);
    capacity = bytes;
    used = 0;
    return absl::OkStatus();
  }

  // Offset of a new slot, or nullopt when full.
  std::optional<size_t> Take(size_t bytes) {
    const size_t size = AlignUp(bytes);
    if (size > capacity - used) return std::nullopt;
    const size_t offset = used;
    used += size;
    return offset;
  }
};

// A host region re-copied on every replay of a graph: into pinned staging before the launch
// (inputs) or out of it at the following Synchronize() (outputs).
struct Binding {
  void* host = nullptr;
  char* pinned = nullptr;
  size_t bytes = 0;
};

// Positions or ids uploaded since the last flush (or during a capture), reused by the next ops
// that pass the same host array.
struct Upload {
  const int32_t* host = nullptr;
  int64_t n = 0;
  const int32_t* pinned = nullptr;
  const int32_t* dev = nullptr;
};

struct CaptureState {
  Staging staging;
  std::vector<Binding> inputs;
  std::vector<Binding> outputs;
  std::vector<Upload> uploads;
};

// Device scratch that only grows. Growing frees the old memory, which a captured graph may still
// name: the backend's scratch generation counts these reallocations.
struct Scratch {
  void* ptr = nullptr;
  size_t bytes = 0;
};

}  // namespace

namespace {

// A decode step captured as a CUDA graph, with the pinned/device staging its copies use.
struct CudaStepGraph final : StepGraph {
  explicit CudaStepGraph(const Backend* backend) : StepGraph(backend) {}
  ~CudaStepGraph() override {
    cudaSetDevice(device);
    // A replay may still be reading or writing the pinned staging freed after this.
    cudaDeviceSynchronize();
    if (exec != nullptr) cudaGraphExecDestroy(exec);
  }

  int device = 0;
  cudaGraphExec_t exec = nullptr;
  std::unique_ptr<CaptureState> capture;
  uint64_t scratch_generation = 0;
  uint64_t launched_epoch = ~uint64_t{0};
};

}  // namespace

struct CudaBackend::State {
  CudaBackendOptions options;
  DeviceInfo info;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  void* cublas_workspace = nullptr;

  // The first error of an operation since the last Synchronize(); operations after it are skipped.
  absl::Status deferred;

  Staging staging;                       // for uncaptured work; reset at each flush
  std::vector<Upload> uploads;           // valid until the next flush
  std::vector<Binding> pending_outputs;  // pinned -> host copies due at the next flush
  uint64_t epoch = 0;                    // number of flushes so far

  std::unique_ptr<CaptureState> capture;  // non-null between BeginCapture and EndCapture

  Scratch partials;     // attention splits
  Scratch act_half;     // activations converted to f16/bf16 for cuBLAS
  Scratch weight_half;  // quantized weights dequantized to f16 for cuBLAS
  uint64_t scratch_generation = 0;

  ~State() {
    cudaSetDevice(info.device);
    if (stream != nullptr) cudaStreamSynchronize(stream);
    for (Scratch* s : {&partials, &act_half, &weight_half}) {
      if (s->ptr != nullptr) cudaFree(s->ptr);
    }
    if (cublas != nullptr) cublasDestroy(cublas);
    if (cublas_workspace != nullptr) cudaFree(cublas_workspace);
    capture.reset();
    staging.Release();
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  int device() const { return info.device; }

  void Fail(absl::Status status) {
    if (deferred.ok() && !status.ok()) deferred = std::move(status);
  }

  // Makes the device current for this thread; false (and the error recorded) on failure.
  bool Activate() {
    if (cudaError_t e = cudaSetDevice(info.device); e != cudaSuccess) {
      Fail(CudaStatus(e, info.device, "selecting the device"));
      return false;
    }
    return true;
  }

  // Ops run only when nothing failed before them (a failed op leaves its outputs unwritten, so
  // what follows would compute on garbage).
  bool Ready() { return deferred.ok() && Activate(); }

  void Check(cudaError_t e, std::string_view op) {
    if (e != cudaSuccess) Fail(CudaStatus(e, info.device, op));
  }

  // Waits for every queued operation, then performs the pending pinned -> host copies and recycles
  // the staging.
  absl::Status Flush() {
    absl::Status status = CudaStatus(cudaStreamSynchronize(stream), info.device, "synchronize");
    if (status.ok()) {
      for (const Binding& b : pending_outputs) std::memcpy(b.host, b.pinned, b.bytes);
    }
    pending_outputs.clear();
    uploads.clear();
    staging.used = 0;
    ++epoch;
    return status;
  }

  // A staging slot of `bytes`: from the capture's staging while capturing, else from the shared
  // staging (flushing or growing it when full). Returns host and device addresses.
  absl::StatusOr<std::pair<char*, char*>> TakeStaging(size_t bytes) {
    if (capture != nullptr) {
      auto offset = capture->staging.Take(bytes);
      if (!offset) {
        return absl::ResourceExhaustedError(absl::StrCat("CUDA graph capture needs more than its ",
                                                         FormatBytes(capture->staging.capacity),
                                                         " of staging"));
      }
      return std::make_pair(capture->staging.host + *offset, capture->staging.dev + *offset);
    }
    auto offset = staging.Take(bytes);
    if (!offset) {
      SWARM_RETURN_IF_ERROR(Flush());
      offset = staging.Take(bytes);
    }
    if (!offset) {
      // Nothing is in flight after the flush: replace the staging with a larger one.
      SWARM_RETURN_IF_ERROR(staging.Reserve(info.device, std::max(bytes, 2 * staging.capacity)));
      offset = staging.Take(bytes);
    }
    if (!offset) return absl::InternalError("staging slot not available after growing");
    return std::make_pair(staging.host + *offset, staging.dev + *offset);
  }

  // Device copy of a host int32 array (positions or ids), shared by the ops that pass the same
  // array until the next flush. While capturing, the array is bound to the graph.
  const int32_t* UploadInts(const int32_t* host, int64_t n) {
    std::vector<Upload>& list = capture != nullptr ? capture->uploads : uploads;
    const size_t bytes = static_cast<size_t>(n) * sizeof(int32_t);
    for (const Upload& u : list) {
      // While capturing, the contents at Launch() time count, so identity is the host address.
      if (u.host == host && u.n == n &&
          (capture != nullptr || std::memcmp(u.pinned, host, bytes) == 0)) {
        return u.dev;
      }
    }
    auto slot = TakeStaging(bytes);
    if (!slot.ok()) {
      Fail(slot.status());
      return nullptr;
    }
    auto [pinned, dev] = *slot;
    std::memcpy(pinned, host, bytes);
    if (capture != nullptr) {
      capture->inputs.push_back({const_cast<int32_t*>(host), pinned, bytes});
    }
    Check(cudaMemcpyAsync(dev, pinned, bytes, cudaMemcpyHostToDevice, stream), "upload positions");
    list.push_back(
        {host, n, reinterpret_cast<const int32_t*>(pinned), reinterpret_cast<const int32_t*>(dev)});
    return deferred.ok() ? reinterpret_cast<const int32_t*>(dev) : nullptr;
  }

  // Scratch of at least `bytes`; nullptr (and the error recorded) when it cannot be had.
  void* EnsureScratch(Scratch& s, size_t bytes) {
    if (bytes <= s.bytes) return s.ptr;
    if (capture != nullptr) {
      Fail(absl::FailedPreconditionError(
          "CUDA graph capture needs scratch memory the backend has not allocated yet: run one "
          "uncaptured step of the same shape first"));
      return nullptr;
    }
    // cudaFree waits for the device, so the old scratch is no longer in use.
    if (s.ptr != nullptr) cudaFree(s.ptr);
    s.ptr = nullptr;
    s.bytes = 0;
    ++scratch_generation;
    const size_t size = AlignUp(bytes + bytes / 4);
    if (cudaError_t e = cudaMalloc(&s.ptr, size); e != cudaSuccess) {
      cudaGetLastError();
      s.ptr = nullptr;
      size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      Fail(absl::ResourceExhaustedError(
          absl::StrCat("CUDA device ", info.device, " (", info.name, "): out of memory allocating ",
                       FormatBytes(size), " of scratch (", FormatBytes(free_bytes), " free of ",
                       FormatBytes(total_bytes), ")")));
      return nullptr;
    }
    s.bytes = size;
    return s.ptr;
  }

  void GemmF32(const Weight& w, const float* x, int64_t n_tokens, float* y) {
    const float one = 1.0f, zero = 0.0f;
    const int m = static_cast<int>(w.n_out), n = static_cast<int>(n_tokens),
              k = static_cast<int>(w.n_in);
    // Row-major W [n_out][n_in] is column-major n_in x n_out: y = W^T(col-major) · x.
    const cublasStatus_t st = cublasSgemm(cublas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one,
                                          static_cast<const float*>(w.data), k, x, k, &zero, y, m);
    if (st != CUBLAS_STATUS_SUCCESS) Fail(CublasStatus(st, info.device, "sgemm"));
  }

  // f16/bf16 weights directly, quantized weights dequantized to f16 first.
  void GemmHalf(const Weight& w, const gpu::DeviceMatrix& dm, const float* x, int64_t n_tokens,
                float* y) {
    const bool bf16 = w.type == GgmlType::kBF16;
    const void* a = w.data;
    if (w.type != GgmlType::kF16 && !bf16) {
      void* buf = EnsureScratch(weight_half, static_cast<size_t>(w.n_in * w.n_out) * 2);
      if (buf == nullptr) return;
      Check(gpu::LaunchDequantizeToF16(dm, buf, stream), "dequantize to f16");
      a = buf;
    }
    void* xh = EnsureScratch(act_half, static_cast<size_t>(w.n_in * n_tokens) * 2);
    if (xh == nullptr) return;
    Check(gpu::LaunchConvertF32(x, w.n_in * n_tokens, bf16, xh, stream), "convert activations");
    const float one = 1.0f, zero = 0.0f;
    const cudaDataType_t type = bf16 ? CUDA_R_16BF : CUDA_R_16F;
    const int m = static_cast<int>(w.n_out), n = static_cast<int>(n_tokens),
              k = static_cast<int>(w.n_in);
    const cublasStatus_t st =
        cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, a, type, k, xh, type, k,
                     &zero, y, CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS) Fail(CublasStatus(st, info.device, "gemm"));
  }
};

// ---- device discovery ---------------------------------------------------------------------------

absl::StatusOr<int> CudaDeviceCount() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return absl::UnavailableError(absl::StrCat("no usable CUDA device: ", cudaGetErrorName(e), " (",
                                               cudaGetErrorString(e), ")"));
  }
  if (count <= 0) return absl::UnavailableError("no CUDA device present");
  return count;
}

absl::StatusOr<int> ParseCudaDeviceName(const std::string& name) {
  if (name == "cuda") return 0;
  const absl::string_view view(name.data(), name.size());
  int device = -1;
  if (view.substr(0, 5) != "cuda:" || !absl::SimpleAtoi(view.substr(5), &device) || device < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad CUDA device '", name, "' (expected cuda or cuda:N, N >= 0)"));
  }
  return device;
}

// ---- lifetime -----------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(
    const CudaBackendOptions& options) {
  SWARM_ASSIGN_OR_RETURN(const int count, CudaDeviceCount());
  if (options.device < 0 || options.device >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", options.device, " does not exist (", count, " present)"));
  }
  auto s = std::make_unique<State>();
  s->options = options;
  s->info.device = options.device;
  const int dev = options.device;
  SWARM_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(dev), dev, "selecting the device"));
  cudaDeviceProp prop{};
  SWARM_RETURN_IF_ERROR(CudaStatus(cudaGetDeviceProperties(&prop, dev), dev, "querying"));
  s->info.name = prop.name;
  s->info.major = prop.major;
  s->info.minor = prop.minor;
  s->info.sm_count = prop.multiProcessorCount;
  s->info.total_memory = prop.totalGlobalMem;
  SWARM_RETURN_IF_ERROR(CudaStatus(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking),
                                   dev, "creating a stream"));
  SWARM_RETURN_IF_ERROR(CublasStatus(cublasCreate(&s->cublas), dev, "creating a cuBLAS handle"));
  SWARM_RETURN_IF_ERROR(CublasStatus(cublasSetStream(s->cublas, s->stream), dev, "cuBLAS stream"));
  // An explicit workspace keeps cuBLAS from allocating during a graph capture.
  if (cudaError_t e = cudaMalloc(&s->cublas_workspace, kCublasWorkspaceBytes); e != cudaSuccess) {
    cudaGetLastError();
    s->cublas_workspace = nullptr;
    return CudaStatus(e, dev, "allocating the cuBLAS workspace");
  }
  SWARM_RETURN_IF_ERROR(
      CublasStatus(cublasSetWorkspace(s->cublas, s->cublas_workspace, kCublasWorkspaceBytes), dev,
                   "cuBLAS workspace"));
  // f32 products stay f32 (no TF32), so f32 models match the CPU reference closely.
  SWARM_RETURN_IF_ERROR(
      CublasStatus(cublasSetMathMode(s->cublas, CUBLAS_DEFAULT_MATH), dev, "cuBLAS math mode"));
  SWARM_RETURN_IF_ERROR(s->staging.Reserve(dev, options.staging_bytes));
  return std::unique_ptr<CudaBackend>(new CudaBackend(std::move(s)));
}

CudaBackend::CudaBackend(std::unique_ptr<State> state) : s_(std::move(state)) {}

CudaBackend::~CudaBackend() {
  if (s_ != nullptr && s_->capture != nullptr) {
    cudaSetDevice(s_->device());
    cudaGraph_t graph = nullptr;
    if (cudaStreamEndCapture(s_->stream, &graph) == cudaSuccess && graph != nullptr) {
      cudaGraphDestroy(graph);
    }
    cudaGetLastError();
  }
}

std::string CudaBackend::name() const { return absl::StrCat("cuda:", s_->device()); }
int CudaBackend::device() const { return s_->device(); }
const DeviceInfo& CudaBackend::device_info() const { return s_->info; }
void* CudaBackend::stream_handle() { return s_->stream; }
bool CudaBackend::capturing() const { return s_->capture != nullptr; }

// ---- memory -------------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Buffer>> CudaBackend::Allocate(size_t bytes) {
  const int dev = s_->device();
  if (s_->capture != nullptr) {
    return absl::FailedPreconditionError("cannot allocate device memory during a graph capture");
  }
  SWARM_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(dev), dev, "selecting the device"));
  void* ptr = nullptr;
  const size_t size = std::max<size_t>(bytes, 1);
  if (cudaError_t e = cudaMalloc(&ptr, size); e != cudaSuccess) {
    cudaGetLastError();  // out-of-memory is not sticky: clear it
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    if (e == cudaErrorMemoryAllocation) {
      return absl::ResourceExhaustedError(
          absl::StrCat("CUDA device ", dev, " (", s_->info.name, "): out of memory allocating ",
                       FormatBytes(bytes), " (", FormatBytes(free_bytes), " free of ",
                       FormatBytes(total_bytes), ")"));
    }
    return CudaStatus(e, dev, absl::StrCat("allocating ", FormatBytes(bytes)));
  }
  auto buffer = std::make_unique<DeviceBuffer>(dev, ptr, bytes);
  SWARM_RETURN_IF_ERROR(
      CudaStatus(cudaMemsetAsync(ptr, 0, size, s_->stream), dev, "clearing new memory"));
  return std::unique_ptr<Buffer>(std::move(buffer));
}

absl::StatusOr<Weight> CudaBackend::PrepareWeight(const Weight& host,
                                                  std::vector<std::unique_ptr<Buffer>>& storage) {
  const auto row_bytes = WeightRowBytes(host.type, host.n_in);
  if (!row_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("the CUDA backend cannot use a weight of type ",
                                                   GgmlTypeIdName(static_cast<uint32_t>(host.type)),
                                                   " with rows of ", host.n_in, " elements"));
  }
  if (host.n_out <= 0 || host.data == nullptr) {
    return absl::InvalidArgumentError("weight without rows or data");
  }
  const auto total =
      CheckedMul(static_cast<uint64_t>(*row_bytes), static_cast<uint64_t>(host.n_out));
  if (!total) return absl::InvalidArgumentError("weight size overflows");
  SWARM_ASSIGN_OR_RETURN(auto buffer, Allocate(*total));
  // Pageable source (usually the mapped file): the runtime stages it, and the call returns once
  // the source has been read.
  SWARM_RETURN_IF_ERROR(CudaStatus(
      cudaMemcpyAsync(buffer->data(), host.data, *total, cudaMemcpyHostToDevice, s_->stream),
      s_->device(), "uploading a weight"));
  if (host.file_mapped) ReleaseMappedPages(host.data, *total);
  Weight w = host;
  w.data = buffer->data();
  w.file_mapped = false;
  storage.push_back(std::move(buffer));
  return w;
}

absl::Status CudaBackend::CopyToBackend(void* dst, const void* host_src, size_t bytes) {
  if (bytes == 0) return absl::OkStatus();
  const int dev = s_->device();
  SWARM_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(dev), dev, "selecting the device"));
  if (s_->capture == nullptr && bytes > kMaxStagedCopy) {
    return CudaStatus(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, s_->stream),
                      dev, "copy to device");
  }
  SWARM_ASSIGN_OR_RETURN(auto slot, s_->TakeStaging(bytes));
  std::memcpy(slot.first, host_src, bytes);
  if (s_->capture != nullptr) {
    s_->capture->inputs.push_back({const_cast<void*>(host_src), slot.first, bytes});
  }
  return CudaStatus(cudaMemcpyAsync(dst, slot.first, bytes, cudaMemcpyHostToDevice, s_->stream),
                    dev, "copy to device");
}

absl::Status CudaBackend::CopyToHost(void* host_dst, const void* src, size_t bytes) {
  if (bytes == 0) return absl::OkStatus();
  const int dev = s_->device();
  SWARM_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(dev), dev, "selecting the device"));
  if (s_->capture == nullptr && bytes > kMaxStagedCopy) {
    // To pageable memory the runtime returns only once the copy is done.
    return CudaStatus(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, s_->stream),
                      dev, "copy to host");
  }
  SWARM_ASSIGN_OR_RETURN(auto slot, s_->TakeStaging(bytes));
  SWARM_RETURN_IF_ERROR(
      CudaStatus(cudaMemcpyAsync(slot.first, src, bytes, cudaMemcpyDeviceToHost, s_->stream), dev,
                 "copy to host"));
  const Binding binding{host_dst, slot.first, bytes};
  if (s_->capture != nullptr) {
    s_->capture->outputs.push_back(binding);
  } else {
    s_->pending_outputs.push_back(binding);
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::Synchronize() {
  if (s_->capture != nullptr) {
    return absl::FailedPreconditionError("Synchronize() during a graph capture");
  }
  const int dev = s_->device();
  SWARM_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(dev), dev, "selecting the device"));
  absl::Status status = s_->Flush();
  absl::Status deferred = std::exchange(s_->deferred, absl::OkStatus());
  return deferred.ok() ? status : deferred;
}

// ---- operations ---------------------------------------------------------------------------------

void CudaBackend::MatMul(const Weight& w, const float* x, int64_t n_tokens, float* y) {
  if (n_tokens <= 0 || !s_->Ready()) return;
  const auto row_bytes = WeightRowBytes(w.type, w.n_in);
  if (!row_bytes || w.n_out <= 0 || w.n_out > 0x7fffffff || w.n_in > 0x7fffffff ||
      n_tokens > 0x7fffffff) {
    s_->Fail(absl::InvalidArgumentError(absl::StrCat(
        "CUDA MatMul: unsupported weight (", GgmlTypeIdName(static_cast<uint32_t>(w.type)), ", ",
        w.n_in, " x ", w.n_out, ") or batch of ", n_tokens)));
    return;
  }
  const gpu::DeviceMatrix dm{static_cast<WType>(w.type), w.n_in, w.n_out, w.data, *row_bytes};
  if (n_tokens < std::max(s_->options.gemm_min_tokens, gpu::kMatVecMaxTokens + 1)) {
    s_->Check(gpu::LaunchMatVec(dm, x, n_tokens, y, s_->stream), "matvec");
  } else if (w.type == GgmlType::kF32) {
    s_->GemmF32(w, x, n_tokens, y);
  } else {
    s_->GemmHalf(w, dm, x, n_tokens, y);
  }
}

void CudaBackend::AddBias(float* y, const float* bias, int64_t n_out, int64_t n_tokens) {
  if (!s_->Ready()) return;
  s_->Check(gpu::LaunchAddBias(y, bias, n_out, n_tokens, s_->stream), "add_bias");
}

void CudaBackend::GetRows(const Weight& table, const int32_t* ids, int64_t n, float* out) {
  if (n <= 0 || !s_->Ready()) return;
  const auto row_bytes = WeightRowBytes(table.type, table.n_in);
  if (!row_bytes) {
    s_->Fail(absl::InvalidArgumentError("CUDA GetRows: unsupported table type"));
    return;
  }
  const int32_t* dev_ids = s_->UploadInts(ids, n);
  if (dev_ids == nullptr) return;
  const gpu::DeviceMatrix dm{static_cast<WType>(table.type), table.n_in, table.n_out, table.data,
                             *row_bytes};
  s_->Check(gpu::LaunchGetRows(dm, dev_ids, n, out, s_->stream), "get_rows");
}

void CudaBackend::RmsNorm(const float* x, const float* weight, int64_t n, int64_t n_tokens,
                          float eps, float* y) {
  if (!s_->Ready()) return;
  s_->Check(gpu::LaunchRmsNorm(x, weight, n, n_tokens, eps, y, s_->stream), "rms_norm");
}

void CudaBackend::Rope(float* x, int64_t head_dim, int64_t n_heads, int64_t n_tokens,
                       const int32_t* positions, const RopeParams& rope) {
  if (n_tokens <= 0 || !s_->Ready()) return;
  if (head_dim > gpu::kMaxHeadDim) {
    s_->Fail(absl::InvalidArgumentError(
        absl::StrCat("rope: head_dim ", head_dim, " exceeds ", gpu::kMaxHeadDim)));
    return;
  }
  const RopeTable table = MakeRopeTable(rope, head_dim);
  gpu::RopeAngles angles{};
  std::copy(table.freq.begin(), table.freq.end(), angles.freq);
  angles.mscale = table.mscale;
  const int32_t* dev_positions = s_->UploadInts(positions, n_tokens);
  if (dev_positions == nullptr) return;
  s_->Check(gpu::LaunchRope(x, head_dim, n_heads, n_tokens, dev_positions, angles,
                            rope.style == RopeStyle::kNeox, s_->stream),
            "rope");
}

void CudaBackend::SwiGlu(const float* gate, const float* up, int64_t n, float* y) {
  if (!s_->Ready()) return;
  s_->Check(gpu::LaunchSwiGlu(gate, up, n, y, s_->stream), "swiglu");
}

void CudaBackend::Add(float* y, const float* x, int64_t n) {
  if (!s_->Ready()) return;
  s_->Check(gpu::LaunchAdd(y, x, n, s_->stream), "add");
}

void CudaBackend::AddScaledColumns(float* y, const float* x, int64_t rows, const int32_t* ids,
                                   const float* scales, int64_t n) {
  if (n <= 0 || rows <= 0 || !s_->Ready()) return;
  const int32_t* dev_ids = s_->UploadInts(ids, n);
  if (dev_ids == nullptr) return;
  // The scales travel as their bits through the same staging as the ids.
  std::vector<int32_t> scale_bits(static_cast<size_t>(n));
  std::memcpy(scale_bits.data(), scales, static_cast<size_t>(n) * sizeof(float));
  const int32_t* dev_scale_bits = s_->UploadInts(scale_bits.data(), n);
  if (dev_scale_bits == nullptr) return;
  s_->Check(gpu::LaunchAddScaledColumns(
                y, x, rows, dev_ids, reinterpret_cast<const float*>(dev_scale_bits), n, s_->stream),
            "add_scaled_columns");
}

void CudaBackend::StoreKv(const float* k, const float* v, int64_t kv_dim, int64_t n_tokens,
                          const int32_t* positions, KvTypes types, void* k_cache, void* v_cache) {
  if (n_tokens <= 0 || !s_->Ready()) return;
  const int32_t* dev_positions = s_->UploadInts(positions, n_tokens);
  if (dev_positions == nullptr) return;
  s_->Check(
      gpu::LaunchStoreKv(k, v, kv_dim, n_tokens, dev_positions, static_cast<uint32_t>(types.k),
                         static_cast<uint32_t>(types.v), k_cache, v_cache, s_->stream),
      "store_kv");
}

void CudaBackend::Attention(const float* q, const void* k_cache, const void* v_cache,
                            const AttentionShape& shape, int64_t n_tokens, const int32_t* positions,
                            float* out) {
  if (n_tokens <= 0 || !s_->Ready()) return;
  if (shape.head_dim <= 0 || shape.head_dim > gpu::kMaxHeadDim || shape.n_head_kv <= 0 ||
      shape.n_head % shape.n_head_kv != 0) {
    s_->Fail(absl::InvalidArgumentError(absl::StrCat(
        "CUDA Attention: unsupported shape (", shape.n_head, " heads, ", shape.n_head_kv,
        " KV heads, head_dim ", shape.head_dim, "; head_dim must be <= ", gpu::kMaxHeadDim, ")")));
    return;
  }
  const int32_t* dev_positions = s_->UploadInts(positions, n_tokens);
  if (dev_positions == nullptr) return;
  gpu::AttentionArgs args;
  args.q = q;
  args.k_cache = k_cache;
  args.v_cache = v_cache;
  args.k_type = static_cast<uint32_t>(shape.cache.k);
  args.v_type = static_cast<uint32_t>(shape.cache.v);
  args.n_head = shape.n_head;
  args.n_head_kv = shape.n_head_kv;
  args.head_dim = shape.head_dim;
  args.n_tokens = n_tokens;
  args.positions = dev_positions;
  args.out = out;
  if (n_tokens <= gpu::kDecodeMaxTokens) {
    args.n_splits =
        gpu::AttentionDecodeSplits(shape.n_head, shape.n_head_kv, n_tokens, s_->info.sm_count);
    const int64_t floats =
        gpu::AttentionPartialFloats(shape.n_head, shape.head_dim, n_tokens, args.n_splits);
    if (floats > 0) {
      args.partials = static_cast<float*>(
          s_->EnsureScratch(s_->partials, static_cast<size_t>(floats) * sizeof(float)));
      if (args.partials == nullptr) return;
    }
  }
  s_->Check(gpu::LaunchAttention(args, s_->stream), "attention");
}

// ---- graphs -------------------------------------------------------------------------------------

absl::Status CudaBackend::BeginCapture(size_t staging_bytes) {
  if (s_->capture != nullptr) return absl::FailedPreconditionError("already capturing");
  const int dev = s_->device();
  SWARM_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(dev), dev, "selecting the device"));
  if (!s_->deferred.ok()) return s_->deferred;
  auto capture = std::make_unique<CaptureState>();
  SWARM_RETURN_IF_ERROR(capture->staging.Reserve(dev, staging_bytes));
  SWARM_RETURN_IF_ERROR(
      CudaStatus(cudaStreamBeginCapture(s_->stream, cudaStreamCaptureModeThreadLocal), dev,
                 "beginning a graph capture"));
  s_->capture = std::move(capture);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<StepGraph>> CudaBackend::EndCapture() {
  if (s_->capture == nullptr) return absl::FailedPreconditionError("not capturing");
  const int dev = s_->device();
  cudaSetDevice(dev);
  auto impl = std::make_unique<CudaStepGraph>(this);
  impl->device = dev;
  impl->capture = std::move(s_->capture);
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(s_->stream, &graph);
  absl::Status status = std::exchange(s_->deferred, absl::OkStatus());
  if (status.ok()) status = CudaStatus(end, dev, "ending a graph capture");
  if (status.ok()) {
    status = CudaStatus(cudaGraphInstantiate(&impl->exec, graph, 0), dev, "instantiating a graph");
  }
  if (graph != nullptr) cudaGraphDestroy(graph);
  if (!status.ok()) {
    cudaGetLastError();
    return status;
  }
  impl->scratch_generation = s_->scratch_generation;
  return std::unique_ptr<StepGraph>(std::move(impl));
}

absl::Status CudaBackend::Launch(StepGraph& graph) {
  if (graph.backend() != this)
    return absl::InvalidArgumentError("graph captured on another backend");
  // Captured by this backend, hence one of its own graphs.
  auto& g = static_cast<CudaStepGraph&>(graph);
  if (s_->capture != nullptr) return absl::FailedPreconditionError("Launch() during a capture");
  if (g.scratch_generation != s_->scratch_generation) {
    return absl::FailedPreconditionError("graph is stale (scratch reallocated): capture again");
  }
  const int dev = s_->device();
  SWARM_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(dev), dev, "selecting the device"));
  if (!s_->deferred.ok()) return s_->deferred;
  // The previous replay may still read the graph's pinned inputs or fill its outputs.
  if (g.launched_epoch == s_->epoch) SWARM_RETURN_IF_ERROR(s_->Flush());
  for (const Binding& b : g.capture->inputs) std::memcpy(b.pinned, b.host, b.bytes);
  SWARM_RETURN_IF_ERROR(CudaStatus(cudaGraphLaunch(g.exec, s_->stream), dev, "launching a graph"));
  for (const Binding& b : g.capture->outputs) s_->pending_outputs.push_back(b);
  g.launched_epoch = s_->epoch;
  return absl::OkStatus();
}

// ---- device links -------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<DeviceLink>> CudaBackend::OpenDeviceLink(
    std::span<Backend* const> backends) {
  std::vector<CudaBackend*> cuda;
  for (Backend* backend : backends) {
    auto* c = dynamic_cast<CudaBackend*>(backend);
    // Another kind of backend among them: they meet in host memory.
    if (c == nullptr) return std::unique_ptr<DeviceLink>();
    cuda.push_back(c);
  }
  SWARM_ASSIGN_OR_RETURN(auto link, NcclLink::Create(std::move(cuda)));
  return std::unique_ptr<DeviceLink>(std::move(link));
}

// ---- measurements -------------------------------------------------------------------------------

namespace {

// Times `run` (queued on `stream`) with events: seconds per iteration after one warm-up.
template <class Run>
absl::StatusOr<double> TimeOnStream(int dev, cudaStream_t stream, int iterations, Run run) {
  SWARM_RETURN_IF_ERROR(run());
  cudaEvent_t start = nullptr, stop = nullptr;
  SWARM_RETURN_IF_ERROR(CudaStatus(cudaEventCreate(&start), dev, "creating an event"));
  absl::Status status = CudaStatus(cudaEventCreate(&stop), dev, "creating an event");
  float ms = 0;
  if (status.ok()) status = CudaStatus(cudaEventRecord(start, stream), dev, "recording an event");
  for (int i = 0; status.ok() && i < iterations; ++i) status = run();
  if (status.ok()) status = CudaStatus(cudaEventRecord(stop, stream), dev, "recording an event");
  if (status.ok()) status = CudaStatus(cudaEventSynchronize(stop), dev, "timing");
  if (status.ok()) status = CudaStatus(cudaEventElapsedTime(&ms, start, stop), dev, "timing");
  cudaEventDestroy(start);
  if (stop != nullptr) cudaEventDestroy(stop);
  if (!status.ok()) return status;
  return ms / 1e3 / iterations;
}

}  // namespace

absl::StatusOr<double> CudaBackend::MeasureCopyBandwidth(size_t bytes, int iterations) {
  if (bytes == 0 || iterations <= 0) return absl::InvalidArgumentError("nothing to measure");
  SWARM_RETURN_IF_ERROR(Synchronize());
  SWARM_ASSIGN_OR_RETURN(auto a, Allocate(bytes));
  SWARM_ASSIGN_OR_RETURN(auto b, Allocate(bytes));
  const int dev = s_->device();
  SWARM_ASSIGN_OR_RETURN(const double seconds, TimeOnStream(dev, s_->stream, iterations, [&] {
                           return CudaStatus(cudaMemcpyAsync(b->data(), a->data(), bytes,
                                                             cudaMemcpyDeviceToDevice, s_->stream),
                                             dev, "device copy");
                         }));
  return 2.0 * static_cast<double>(bytes) / seconds;
}

absl::StatusOr<double> CudaBackend::MeasureF16GemmPeak(int n, int iterations) {
  if (n <= 0 || iterations <= 0) return absl::InvalidArgumentError("nothing to measure");
  SWARM_RETURN_IF_ERROR(Synchronize());
  const size_t nn = static_cast<size_t>(n) * static_cast<size_t>(n);
  SWARM_ASSIGN_OR_RETURN(auto a, Allocate(nn * 2));
  SWARM_ASSIGN_OR_RETURN(auto b, Allocate(nn * 2));
  SWARM_ASSIGN_OR_RETURN(auto c, Allocate(nn * 4));
  const int dev = s_->device();
  // Non-zero inputs (every half 0x3c3c, about 1.06): all-zero data would draw less power.
  SWARM_RETURN_IF_ERROR(
      CudaStatus(cudaMemsetAsync(a->data(), 0x3c, nn * 2, s_->stream), dev, "fill"));
  SWARM_RETURN_IF_ERROR(
      CudaStatus(cudaMemsetAsync(b->data(), 0x3c, nn * 2, s_->stream), dev, "fill"));
  const float one = 1.0f, zero = 0.0f;
  SWARM_ASSIGN_OR_RETURN(
      const double seconds, TimeOnStream(dev, s_->stream, iterations, [&] {
        return CublasStatus(
            cublasGemmEx(s_->cublas, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, a->data(), CUDA_R_16F,
                         n, b->data(), CUDA_R_16F, n, &zero, c->data(), CUDA_R_32F, n,
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            dev, "gemm");
      }));
  return 2.0 * static_cast<double>(n) * n * n / seconds;
}

}  // namespace swarm::kernels
