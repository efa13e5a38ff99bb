// Runtime weight type -> compile-time Quant<> dispatch for the kernels' host launchers. Included
// only by .cu files (nvcc).
#pragma once

#include "kernels/cuda/dequantize.cuh"

namespace swarm::kernels::gpu {

template <class Q>
struct QuantTag {
  using type = Q;
};

// Calls f(QuantTag<Quant<type, run>>{}) for the weight's type; float types use 4-element chunks
// when n_in allows. Returns cudaErrorInvalidValue for a type the kernels do not handle.
template <class F>
cudaError_t DispatchWeightType(WType type, int64_t n_in, F&& f) {
  const bool run4 = FloatRunOf4(n_in);
  switch (type) {
    case WType::kF32:
      return run4 ? f(QuantTag<Quant<WType::kF32, 4>>{}) : f(QuantTag<Quant<WType::kF32, 1>>{});
    case WType::kF16:
      return run4 ? f(QuantTag<Quant<WType::kF16, 4>>{}) : f(QuantTag<Quant<WType::kF16, 1>>{});
    case WType::kBF16:
      return run4 ? f(QuantTag<Quant<WType::kBF16, 4>>{}) : f(QuantTag<Quant<WType::kBF16, 1>>{});
    case WType::kQ8_0:
      return f(QuantTag<Quant<WType::kQ8_0>>{});
    case WType::kQ4_0:
      return f(QuantTag<Quant<WType::kQ4_0>>{});
    case WType::kQ4_K:
      return f(QuantTag<Quant<WType::kQ4_K>>{});
    case WType::kQ6_K:
      return f(QuantTag<Quant<WType::kQ6_K>>{});
    case WType::kQ2_K:
      return f(QuantTag<Quant<WType::kQ2_K>>{});
    case WType::kQ3_K:
      return f(QuantTag<Quant<WType::kQ3_K>>{});
    case WType::kIQ4_XS:
      return f(QuantTag<Quant<WType::kIQ4_XS>>{});
    case WType::kQ4_1:
      return f(QuantTag<Quant<WType::kQ4_1>>{});
    case WType::kQ5_0:
      return f(QuantTag<Quant<WType::kQ5_0>>{});
    case WType::kQ5_K:
      return f(QuantTag<Quant<WType::kQ5_K>>{});
    case WType::kQ5_1:
      return f(QuantTag<Quant<WType::kQ5_1>>{});
    case WType::kIQ4_NL:
      return f(QuantTag<Quant<WType::kIQ4_NL>>{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace swarm::kernels::gpu
