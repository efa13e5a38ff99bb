#include "kernels/backend_factory.h"

#include <string_view>

#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu_reference_backend.h"
#if SWARM_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace swarm::kernels {

// Names: "reference" (plain scalar CPU), "cpu" or "auto" (optimized CPU, best instruction set of
// this processor), "cpu:generic" / "cpu:avx2" / "cpu:avx512" (optimized CPU at a forced level).
absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(const BackendOptions& options) {
  const std::string_view name = options.name;
  if (name == "reference") return MakeCpuReferenceBackend();
  // "cuda" / "cuda:N": the GPU backend; "auto" takes GPU 0 when one is present.
  const bool cuda_name = name == "cuda" || name.substr(0, 5) == "cuda:";
#if SWARM_HAVE_CUDA
  if (cuda_name || (name == "auto" && CudaDeviceCount().ok())) {
    CudaBackendOptions cuda_options;
    if (cuda_name) {
      auto device = ParseCudaDeviceName(options.name);
      if (!device.ok()) return device.status();
      cuda_options.device = *device;
    }
    auto backend = CudaBackend::Create(cuda_options);
    if (!backend.ok()) return backend.status();
    return std::unique_ptr<Backend>(std::move(*backend));
  }
#else
  if (cuda_name) {
    return absl::UnavailableError(absl::StrCat("backend '", options.name,
                                               "': this build has no CUDA backend (no CUDA "
                                               "toolkit was found when it was configured)"));
  }
#endif
  if (name == "auto" || name == "cpu" || name.substr(0, 4) == "cpu:") {
    cpu::CpuBackendOptions cpu_options;
    cpu_options.threads = options.threads;
    if (name.size() > 4) {
      auto isa = cpu::ParseIsa(name.substr(4));
      if (!isa.ok()) return isa.status();
      cpu_options.isa = *isa;
    }
    auto backend = cpu::CpuBackend::Create(cpu_options);
    if (!backend.ok()) return backend.status();
    return std::unique_ptr<Backend>(std::move(*backend));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown backend '", options.name,
                   "' (choose auto, cpu, cpu:generic, cpu:avx2, cpu:avx512, reference, cuda or "
                   "cuda:N)"));
}

}  // namespace swarm::kernels
