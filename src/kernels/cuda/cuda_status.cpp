#include "kernels/cuda/cuda_status.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace swarm::kernels::gpu {

std::string FormatBytes(size_t bytes) {
  if (bytes >= (size_t{1} << 30)) return absl::StrFormat("%.2f GiB", bytes / double(1 << 30));
  if (bytes >= (size_t{1} << 20)) return absl::StrFormat("%.2f MiB", bytes / double(1 << 20));
  return absl::StrCat(bytes, " bytes");
}

absl::Status CudaStatus(cudaError_t error, int device, std::string_view what) {
  if (error == cudaSuccess) return absl::OkStatus();
  // A failed runtime call also leaves its error as the thread's "last error", which the next
  // kernel launcher's cudaGetLastError() would return: a later, healthy operation would fail with
  // this stale error. The error is reported here, once, so clear it (sticky errors stay sticky).
  cudaGetLastError();
  const std::string message =
      absl::StrCat("CUDA device ", device, ": ", std::string(what), ": ", cudaGetErrorName(error),
                   " (", cudaGetErrorString(error), ")");
  switch (error) {
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(message);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
    case cudaErrorDevicesUnavailable:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
      return absl::UnavailableError(message);
    case cudaErrorInvalidValue:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status CublasStatus(cublasStatus_t error, int device, std::string_view what) {
  if (error == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const std::string message = absl::StrCat("CUDA device ", device, ": ", std::string(what),
                                           ": cuBLAS ", cublasGetStatusString(error));
  switch (error) {
    case CUBLAS_STATUS_ALLOC_FAILED:
      return absl::ResourceExhaustedError(message);
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return absl::UnavailableError(message);
    case CUBLAS_STATUS_INVALID_VALUE:
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace swarm::kernels::gpu
