// A host emulator for the CUDA kernels' source, so that tests run every kernel of
// src/kernels/cuda/*.cu on machines without a GPU (CI has the toolkit but no GPU).
//
// Each generated translation unit includes this header and then one .cu file, compiled by the host
// C++ compiler: `__global__`/`__device__` vanish, `__shared__` variables become function statics,
// and a launch (SWARM_LAUNCH) runs the grid's blocks one after the other, each block as
// blockDim real threads. `__syncthreads()`, `__syncwarp()` and warp shuffles are barriers among
// those threads, so a kernel's indexing, masking, reductions and shared-memory tiling run exactly
// as written. Pointers are host pointers.
//
// What it checks beyond the results: launch limits (threads per block, grid size, dynamic shared
// memory above 48 KiB without the opt-in attribute), misaligned vector loads (`__ldg` of a float4),
// and threads of a block stuck at different barriers (divergent synchronization, which hangs a
// GPU): the emulator aborts with a message instead of hanging. Out-of-bounds accesses are caught by
// the sanitizers the test suite runs under. A thread that leaves the kernel no longer counts at
// barriers, as on current GPUs.
//
// The threads of a block are fibers on the calling OS thread, switched at barriers in a fixed
// order, so an emulated launch is deterministic.
//
// What it cannot check: speed, memory coalescing, races between threads that a GPU would expose
// (threads here run one at a time between barriers), and the device's float rounding in
// expf/sqrtf (the host's libm is used). The runtime (streams, graphs, cuBLAS, NCCL) is emulated
// separately, in cuda_runtime_emulation.cpp.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>

namespace swarm::cuda_emulation {

struct Warp;
class Barrier;

// What a kernel thread sees as its built-in variables.
struct ThreadContext {
  uint3 thread_idx{};
  uint3 block_idx{};
  dim3 block_dim;
  dim3 grid_dim;
  int lane = 0;
  Barrier* block_barrier = nullptr;
  Warp* warp = nullptr;
  void* dynamic_shared = nullptr;
};

// The calling kernel thread's context (thread-local).
ThreadContext& Current();

// False (and the error LastError() returns set) for a launch outside the device limits.
bool ValidLaunch(dim3 grid, dim3 block, size_t dynamic_shared_bytes, const void* kernel);
// Runs `body` for every thread of every block of the grid; blocks run one after the other.
void RunGrid(dim3 grid, dim3 block, size_t dynamic_shared_bytes, const std::function<void()>& body);
// Hands a launch's work to the stream. Alone, this library runs it at once; linked with the
// runtime emulation (cuda_runtime_emulation.cpp), it waits in the stream's queue (or its capture)
// until the host synchronizes.
void SubmitWork(cudaStream_t stream, std::function<void()> work);

void SyncThreads();
void SyncWarp();
// Publishes this lane's 8 bytes to its warp and returns lane `source_lane`'s.
uint64_t ExchangeInWarp(uint64_t bits, int source_lane);

// Records an error the next LastError() returns (the first one sticks, as on a device).
void SetError(cudaError_t error);
// cudaGetLastError: returns the recorded error and clears it.
cudaError_t LastError();
// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes): the opt-in
// for more than 48 KiB of dynamic shared memory (refused above the sm_80 limit of 163 KiB).
cudaError_t SetMaxDynamicShared(const void* kernel, int bytes);
size_t MaxDynamicSharedOf(const void* kernel);

// `kernel<<<grid, block, shared, stream>>>(args...)`.
template <class Kernel>
class Launcher {
 public:
  Launcher(dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream, Kernel kernel)
      : grid_(grid), block_(block), shared_bytes_(shared_bytes), stream_(stream), kernel_(kernel) {}

  template <class... Args>
  void operator()(Args... args) const {
    if (!ValidLaunch(grid_, block_, shared_bytes_, reinterpret_cast<const void*>(kernel_))) return;
    SubmitWork(stream_, [grid = grid_, block = block_, shared = shared_bytes_, kernel = kernel_,
                         args...] { RunGrid(grid, block, shared, [&] { kernel(args...); }); });
  }

 private:
  dim3 grid_, block_;
  size_t shared_bytes_;
  cudaStream_t stream_;
  Kernel kernel_;
};

template <class Kernel>
Launcher(dim3, dim3, size_t, cudaStream_t, Kernel) -> Launcher<Kernel>;

}  // namespace swarm::cuda_emulation

// ---- the CUDA language, as the kernels use it ---------------------------------------------------

#define SWARM_LAUNCH(grid, block, shared_bytes, stream, ...) \
  ::swarm::cuda_emulation::Launcher(grid, block, shared_bytes, stream, __VA_ARGS__)
#define SWARM_DYNAMIC_SHARED(type, name) \
  type* name = static_cast<type*>(::swarm::cuda_emulation::Current().dynamic_shared)

#undef __shared__
#define __shared__ static
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif

#define threadIdx (::swarm::cuda_emulation::Current().thread_idx)
#define blockIdx (::swarm::cuda_emulation::Current().block_idx)
#define blockDim (::swarm::cuda_emulation::Current().block_dim)
#define gridDim (::swarm::cuda_emulation::Current().grid_dim)

#define cudaGetLastError ::swarm::cuda_emulation::LastError
#define cudaFuncSetAttribute(kernel, attribute, value)                                       \
  ((attribute) == cudaFuncAttributeMaxDynamicSharedMemorySize                                \
       ? ::swarm::cuda_emulation::SetMaxDynamicShared(reinterpret_cast<const void*>(kernel), \
                                                      value)                                 \
       : cudaErrorInvalidValue)

inline void __syncthreads() { swarm::cuda_emulation::SyncThreads(); }
inline void __syncwarp(unsigned /*mask*/ = 0xffffffffu) { swarm::cuda_emulation::SyncWarp(); }

template <class T>
T __shfl_xor_sync(unsigned /*mask*/, T value, int lane_mask) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= sizeof(uint64_t));
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof value);
  bits = swarm::cuda_emulation::ExchangeInWarp(bits,
                                               swarm::cuda_emulation::Current().lane ^ lane_mask);
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// A read-only load; a device faults on a misaligned one, so the emulator reports it.
template <class T>
T __ldg(const T* p) {
  if (reinterpret_cast<uintptr_t>(p) % alignof(T) != 0) {
    swarm::cuda_emulation::SetError(cudaErrorMisalignedAddress);
  }
  T value;
  std::memcpy(&value, p, sizeof value);
  return value;
}

// The host's IEEE operations round each result, as these intrinsics do on the device.
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }

// The device's min/max overloads accept any pair of arithmetic types.
template <class A, class B>
constexpr std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  return static_cast<C>(b) < static_cast<C>(a) ? static_cast<C>(b) : static_cast<C>(a);
}
template <class A, class B>
constexpr std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  return static_cast<C>(a) < static_cast<C>(b) ? static_cast<C>(b) : static_cast<C>(a);
}
