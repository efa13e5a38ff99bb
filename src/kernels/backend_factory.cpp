#include "kernels/backend_factory.h"

#include "absl/strings/str_cat.h"
#include "kernels/cpu_reference_backend.h"

namespace swarm::kernels {

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(const BackendOptions& options) {
  if (options.name == "auto" || options.name == "reference") return MakeCpuReferenceBackend();
  return absl::InvalidArgumentError(
      absl::StrCat("unknown backend '", options.name, "' (choose auto or reference)"));
}

}  // namespace swarm::kernels
