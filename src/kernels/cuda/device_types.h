// Plain types shared by the CUDA kernels (.cu, compiled by nvcc) and the host side of the CUDA
// backend (.cpp): no CUDA, no Abseil, so either compiler can include it. Value types only.
#pragma once

#include <cstdint>

namespace swarm::kernels::gpu {

// Weight types the CUDA kernels handle. The values are ggml's type ids, the same as GgmlType's,
// so the backend converts by static_cast (checked by static_asserts in cuda_backend.cpp).
enum class WType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kIQ4_NL = 20,
  kIQ4_XS = 23,
  kBF16 = 30,
};

// A weight matrix in device memory: n_out rows of n_in elements, row r at data + r * row_bytes.
struct DeviceMatrix {
  WType type = WType::kF32;
  int64_t n_in = 0;
  int64_t n_out = 0;
  const void* data = nullptr;
  int64_t row_bytes = 0;
};

// The largest head dimension the attention kernels take (registers and shared memory are sized
// for it).
inline constexpr int kMaxHeadDim = 256;

}  // namespace swarm::kernels::gpu
