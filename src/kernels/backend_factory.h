// Builds a backend by name: "reference" (plain CPU reference), later "cpu" (optimized, the default
// on CPUs) and "cuda:N". The caller owns the result.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace swarm::kernels {

struct BackendOptions {
  std::string name = "auto";  // auto, reference, cpu, cuda, cuda:N
  int threads = 0;            // CPU worker threads; 0 = physical cores
};

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(const BackendOptions& options);

}  // namespace swarm::kernels
