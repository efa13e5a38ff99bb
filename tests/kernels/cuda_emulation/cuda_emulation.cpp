#include "cuda_emulation.h"

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace swarm::cuda_emulation {

// A reusable barrier among a block's (or a warp's) threads. A thread that leaves the kernel drops
// out, so the others do not wait for it, as on a device. A barrier that some thread never reaches
// would hang; after a generous timeout the emulator aborts and says so.
class Barrier {
 public:
  void Reset(int expected) {
    std::lock_guard lock(mutex_);
    expected_ = expected;
    arrived_ = 0;
  }

  void ArriveAndWait() {
    std::unique_lock lock(mutex_);
    const uint64_t generation = generation_;
    if (++arrived_ >= expected_) {
      Release();
      return;
    }
    constexpr auto kTimeout = std::chrono::seconds(120);
    if (!released_.wait_for(lock, kTimeout, [&] { return generation_ != generation; })) {
      std::fprintf(stderr,
                   "cuda_emulation: a __syncthreads/__syncwarp/shuffle was not reached by every "
                   "thread of its block or warp (divergent synchronization)\n");
      std::abort();
    }
  }

  void Drop() {
    std::lock_guard lock(mutex_);
    --expected_;
    if (arrived_ > 0 && arrived_ >= expected_) Release();
  }

 private:
  void Release() {
    arrived_ = 0;
    ++generation_;
    released_.notify_all();
  }

  std::mutex mutex_;
  std::condition_variable released_;
  int expected_ = 0;
  int arrived_ = 0;
  uint64_t generation_ = 0;
};

struct Warp {
  Barrier barrier;
  std::array<uint64_t, 32> slots{};
};

namespace {

constexpr int kWarpSize = 32;
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxGridYZ = 65535;
constexpr size_t kDefaultDynamicShared = 48 * 1024;
constexpr int kMaxOptInDynamicShared = 163 * 1024;  // sm_80; sm_90 allows 227 KiB

thread_local ThreadContext current_context;

// The emulated device's state: the sticky launch error and the kernels' shared-memory opt-ins.
struct DeviceState {
  std::mutex mutex;
  cudaError_t error = cudaSuccess;
  std::map<const void*, size_t> max_dynamic_shared;
};

DeviceState& Device() {
  static DeviceState state;  // one emulated device per test process
  return state;
}

}  // namespace

ThreadContext& Current() { return current_context; }

void SetError(cudaError_t error) {
  DeviceState& device = Device();
  std::lock_guard lock(device.mutex);
  if (device.error == cudaSuccess) device.error = error;
}

cudaError_t LastError() {
  DeviceState& device = Device();
  std::lock_guard lock(device.mutex);
  const cudaError_t error = device.error;
  device.error = cudaSuccess;
  return error;
}

cudaError_t SetMaxDynamicShared(const void* kernel, int bytes) {
  if (bytes < 0 || bytes > kMaxOptInDynamicShared) return cudaErrorInvalidValue;
  DeviceState& device = Device();
  std::lock_guard lock(device.mutex);
  device.max_dynamic_shared[kernel] = static_cast<size_t>(bytes);
  return cudaSuccess;
}

size_t MaxDynamicSharedOf(const void* kernel) {
  DeviceState& device = Device();
  std::lock_guard lock(device.mutex);
  const auto it = device.max_dynamic_shared.find(kernel);
  return it == device.max_dynamic_shared.end() ? kDefaultDynamicShared : it->second;
}

void SyncThreads() { current_context.block_barrier->ArriveAndWait(); }

void SyncWarp() { current_context.warp->barrier.ArriveAndWait(); }

uint64_t ExchangeInWarp(uint64_t bits, int source_lane) {
  Warp& warp = *current_context.warp;
  warp.slots[static_cast<size_t>(current_context.lane)] = bits;
  warp.barrier.ArriveAndWait();
  const uint64_t result = source_lane >= 0 && source_lane < kWarpSize
                              ? warp.slots[static_cast<size_t>(source_lane)]
                              : bits;
  warp.barrier.ArriveAndWait();  // nobody overwrites a slot before every lane has read it
  return result;
}

void RunGrid(dim3 grid, dim3 block, size_t dynamic_shared_bytes,
             const std::function<void()>& body) {
  const uint64_t n_threads = uint64_t{block.x} * block.y * block.z;
  if (n_threads == 0 || n_threads > kMaxThreadsPerBlock || block.z > 64 || grid.x == 0 ||
      grid.y == 0 || grid.z == 0 || grid.y > kMaxGridYZ || grid.z > kMaxGridYZ ||
      grid.x > 0x7fffffffu) {
    SetError(cudaErrorInvalidConfiguration);
    return;
  }
  const int threads = static_cast<int>(n_threads);
  const int n_warps = (threads + kWarpSize - 1) / kWarpSize;
  auto WarpThreads = [&](int w) { return std::min(kWarpSize, threads - w * kWarpSize); };

  // Dynamic shared memory starts 16-byte aligned, as on a device; it is not zeroed there either,
  // so it is filled with NaN bytes to make reads of unwritten values visible.
  std::vector<float4> dynamic_shared((dynamic_shared_bytes + sizeof(float4) - 1) / sizeof(float4));
  if (!dynamic_shared.empty()) {
    std::memset(dynamic_shared.data(), 0xff, dynamic_shared.size() * sizeof(float4));
  }
  Barrier block_barrier;
  std::vector<std::unique_ptr<Warp>> warps(static_cast<size_t>(n_warps));
  for (auto& warp : warps) warp = std::make_unique<Warp>();
  Barrier block_end;
  block_end.Reset(threads);
  auto ResetBarriers = [&] {
    block_barrier.Reset(threads);
    for (int w = 0; w < n_warps; ++w) warps[static_cast<size_t>(w)]->barrier.Reset(WarpThreads(w));
  };
  ResetBarriers();

  auto ThreadMain = [&](int tid) {
    ThreadContext& context = current_context;
    context.thread_idx =
        uint3{static_cast<unsigned>(tid) % block.x, static_cast<unsigned>(tid) / block.x % block.y,
              static_cast<unsigned>(tid) / (block.x * block.y)};
    context.block_dim = block;
    context.grid_dim = grid;
    context.lane = tid % kWarpSize;
    context.block_barrier = &block_barrier;
    context.warp = warps[static_cast<size_t>(tid / kWarpSize)].get();
    context.dynamic_shared = dynamic_shared.data();
    for (unsigned z = 0; z < grid.z; ++z) {
      for (unsigned y = 0; y < grid.y; ++y) {
        for (unsigned x = 0; x < grid.x; ++x) {
          context.block_idx = uint3{x, y, z};
          body();
          context.block_barrier->Drop();
          context.warp->barrier.Drop();
          block_end.ArriveAndWait();  // every thread has left this block
          if (tid == 0) ResetBarriers();
          block_end.ArriveAndWait();  // ... and the next one starts with full barriers
        }
      }
    }
    context = ThreadContext{};
  };

  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(threads));
  for (int tid = 0; tid < threads; ++tid) pool.emplace_back(ThreadMain, tid);
  for (std::thread& thread : pool) thread.join();
}

}  // namespace swarm::cuda_emulation
