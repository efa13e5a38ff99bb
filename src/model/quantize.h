// `swarm quantize`'s engine: reads a GGUF with F32/F16/BF16 matrices and writes a copy whose
// matrices are quantized by a llama.cpp scheme (quant_mixture.h) with the reference quantizers
// (kernels/quant_reference.h, llama.cpp's *_ref rounding), metadata copied and general.file_type
// set. Streams tensor by tensor, so the model need not fit in memory. One call per thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace swarm::model {

struct QuantizeOptions {
  std::string scheme;  // "Q4_K_M", "Q8_0", ... (ParseQuantScheme)
  int threads = 0;     // 0: every hardware thread
  // Called once per tensor, in output order, with a line describing what became of it.
  std::function<void(const std::string&)> progress;
};

struct QuantizedTensor {
  std::string name;
  uint32_t from_type = 0;
  uint32_t to_type = 0;
  std::string fallback;  // why to_type is not the rule's type, "" when it is
};

struct QuantizeReport {
  std::vector<QuantizedTensor> tensors;  // in output order
  uint64_t bytes_in = 0;                 // tensor data
  uint64_t bytes_out = 0;
};

// InvalidArgument for an unknown scheme, a source matrix that is not F32/F16/BF16, or rows no type
// of the scheme fits; Unimplemented naming the type when the scheme needs one this build cannot
// write; the reader's and writer's errors otherwise. Nothing is left at `out_path` on error.
absl::StatusOr<QuantizeReport> QuantizeModel(const std::string& in_path,
                                             const std::string& out_path,
                                             const QuantizeOptions& options);

}  // namespace swarm::model
