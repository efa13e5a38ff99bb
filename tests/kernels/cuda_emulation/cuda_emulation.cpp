#include "cuda_emulation.h"

#include <array>
#include <boost/context/fiber.hpp>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define SWARM_EMULATION_ASAN 1
#else
#define SWARM_EMULATION_ASAN 0
#endif

namespace swarm::cuda_emulation {

namespace ctx = boost::context;

// A barrier among a block's (or a warp's) fibers. A fiber that leaves the kernel drops out, so the
// others do not wait for it, as on a device.
class Barrier {
 public:
  void Reset(int expected) {
    expected_ = expected;
    arrived_ = 0;
  }
  // True when this arrival completed the barrier (the caller goes on); false when the caller must
  // wait until generation() changes.
  bool Arrive() {
    if (++arrived_ < expected_) return false;
    Release();
    return true;
  }
  void Drop() {
    --expected_;
    if (arrived_ > 0 && arrived_ >= expected_) Release();
  }
  uint64_t generation() const { return generation_; }

 private:
  void Release() {
    arrived_ = 0;
    ++generation_;
  }

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
constexpr size_t kFiberStackBytes = 256 * 1024;

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

// Fiber stacks, kept for the next launch on this OS thread (allocating and faulting in 256 KiB per
// emulated thread per launch would dominate the run time).
class PooledStack {
 public:
  explicit PooledStack(const void** bottom) : bottom_(bottom) {}

  ctx::stack_context allocate() {
    std::vector<std::unique_ptr<char[]>>& pool = Pool();
    std::unique_ptr<char[]> memory;
    if (pool.empty()) {
      memory.reset(new char[kFiberStackBytes]);
    } else {
      memory = std::move(pool.back());
      pool.pop_back();
    }
    *bottom_ = memory.get();
    ctx::stack_context stack;
    stack.size = kFiberStackBytes;
    stack.sp = memory.release() + kFiberStackBytes;  // stacks grow down
    return stack;
  }
  void deallocate(ctx::stack_context& stack) {
    Pool().emplace_back(static_cast<char*>(stack.sp) - stack.size);
  }

 private:
  static std::vector<std::unique_ptr<char[]>>& Pool() {
    thread_local std::vector<std::unique_ptr<char[]>> pool;
    return pool;
  }

  const void** bottom_;
};

// One CUDA thread: a fiber (Boost.Context: a few instructions per switch, no system call) with
// its own stack, run by the block scheduler below.
struct Fiber {
  ThreadContext context;
  ctx::fiber thread;     // the suspended CUDA thread, while the scheduler runs
  ctx::fiber scheduler;  // the suspended scheduler, while the CUDA thread runs
  const void* stack_bottom = nullptr;
  bool finished = false;
  const Barrier* waiting_on = nullptr;  // blocked until its generation changes
  uint64_t waiting_generation = 0;
};

// Runs one block: every fiber until it finishes, switching at barriers. Everything runs on the
// calling OS thread, in a fixed order, so an emulated kernel is deterministic.
class BlockScheduler {
 public:
  BlockScheduler(int n_threads, const std::function<void()>& body)
      : fibers_(static_cast<size_t>(n_threads)), body_(body) {}
  BlockScheduler(const BlockScheduler&) = delete;
  BlockScheduler& operator=(const BlockScheduler&) = delete;

  Fiber& fiber(int tid) { return fibers_[static_cast<size_t>(tid)]; }

  void RunBlock() {
    for (size_t i = 0; i < fibers_.size(); ++i) Start(i);
    size_t unfinished = fibers_.size();
    while (unfinished > 0) {
      bool progressed = false;
      for (size_t i = 0; i < fibers_.size(); ++i) {
        Fiber& fiber = fibers_[i];
        if (fiber.finished) continue;
        if (fiber.waiting_on != nullptr) {
          if (fiber.waiting_on->generation() == fiber.waiting_generation) continue;
          fiber.waiting_on = nullptr;
        }
        SwitchTo(i);
        progressed = true;
        if (fiber.finished) --unfinished;
      }
      if (!progressed) {
        std::fprintf(stderr,
                     "cuda_emulation: deadlock: every unfinished thread of the block waits at a "
                     "__syncthreads/__syncwarp/shuffle the others do not reach (divergent "
                     "synchronization)\n");
        std::abort();
      }
    }
  }

  // Called by the running fiber at a barrier it did not complete: back to the scheduler until the
  // barrier's generation changes.
  void Wait(const Barrier& barrier) {
    Fiber& fiber = fibers_[running_];
    fiber.waiting_on = &barrier;
    fiber.waiting_generation = barrier.generation();
#if SWARM_EMULATION_ASAN
    void* fake_stack = nullptr;
    __sanitizer_start_switch_fiber(&fake_stack, scheduler_stack_bottom_, scheduler_stack_size_);
#endif
    fiber.scheduler = std::move(fiber.scheduler).resume();
#if SWARM_EMULATION_ASAN
    __sanitizer_finish_switch_fiber(fake_stack, &scheduler_stack_bottom_, &scheduler_stack_size_);
#endif
  }

  static BlockScheduler*& Active() {
    thread_local BlockScheduler* active = nullptr;
    return active;
  }

  ThreadContext* current() const { return current_; }

 private:
  void Start(size_t i) {
    Fiber& fiber = fibers_[i];
    fiber.finished = false;
    fiber.waiting_on = nullptr;
    PooledStack allocator(&fiber.stack_bottom);
    fiber.thread = ctx::fiber(std::allocator_arg, allocator, [this, i](ctx::fiber&& scheduler) {
      Fiber& self = fibers_[i];
      self.scheduler = std::move(scheduler);
#if SWARM_EMULATION_ASAN
      __sanitizer_finish_switch_fiber(nullptr, &scheduler_stack_bottom_, &scheduler_stack_size_);
#endif
      body_();
      self.context.block_barrier->Drop();
      self.context.warp->barrier.Drop();
      self.finished = true;
#if SWARM_EMULATION_ASAN
      __sanitizer_start_switch_fiber(nullptr, scheduler_stack_bottom_, scheduler_stack_size_);
#endif
      return std::move(self.scheduler);
    });
  }

  void SwitchTo(size_t i) {
    running_ = i;
    Fiber& fiber = fibers_[i];
    current_ = &fiber.context;
#if SWARM_EMULATION_ASAN
    void* fake_stack = nullptr;
    __sanitizer_start_switch_fiber(&fake_stack, fiber.stack_bottom, kFiberStackBytes);
#endif
    fiber.thread = std::move(fiber.thread).resume();
#if SWARM_EMULATION_ASAN
    __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
    current_ = nullptr;
  }

  std::vector<Fiber> fibers_;
  const std::function<void()>& body_;
  size_t running_ = 0;
  ThreadContext* current_ = nullptr;
  const void* scheduler_stack_bottom_ = nullptr;
  size_t scheduler_stack_size_ = 0;
};

void Wait(const Barrier& barrier) { BlockScheduler::Active()->Wait(barrier); }

void ArriveAndWait(Barrier& barrier) {
  if (!barrier.Arrive()) Wait(barrier);
}

}  // namespace

ThreadContext& Current() {
  BlockScheduler* scheduler = BlockScheduler::Active();
  if (scheduler == nullptr || scheduler->current() == nullptr) {
    std::fprintf(stderr, "cuda_emulation: a kernel built-in used outside a kernel\n");
    std::abort();
  }
  return *scheduler->current();
}

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

void SyncThreads() { ArriveAndWait(*Current().block_barrier); }

void SyncWarp() { ArriveAndWait(Current().warp->barrier); }

uint64_t ExchangeInWarp(uint64_t bits, int source_lane) {
  ThreadContext& context = Current();
  Warp& warp = *context.warp;
  warp.slots[static_cast<size_t>(context.lane)] = bits;
  ArriveAndWait(warp.barrier);
  const uint64_t result = source_lane >= 0 && source_lane < kWarpSize
                              ? warp.slots[static_cast<size_t>(source_lane)]
                              : bits;
  ArriveAndWait(warp.barrier);  // nobody overwrites a slot before every lane has read it
  return result;
}

bool ValidLaunch(dim3 grid, dim3 block, size_t dynamic_shared_bytes, const void* kernel) {
  const uint64_t n_threads = uint64_t{block.x} * block.y * block.z;
  if (n_threads == 0 || n_threads > kMaxThreadsPerBlock || block.z > 64 || grid.x == 0 ||
      grid.y == 0 || grid.z == 0 || grid.y > kMaxGridYZ || grid.z > kMaxGridYZ ||
      grid.x > 0x7fffffffu) {
    SetError(cudaErrorInvalidConfiguration);
    return false;
  }
  if (dynamic_shared_bytes > MaxDynamicSharedOf(kernel)) {
    SetError(cudaErrorInvalidValue);
    return false;
  }
  return true;
}

// Without the runtime emulation there are no queues: the work runs now.
__attribute__((weak)) void SubmitWork(cudaStream_t /*stream*/, std::function<void()> work) {
  work();
}

void RunGrid(dim3 grid, dim3 block, size_t dynamic_shared_bytes,
             const std::function<void()>& body) {
  const uint64_t n_threads = uint64_t{block.x} * block.y * block.z;
  if (BlockScheduler::Active() != nullptr) {
    std::fprintf(stderr, "cuda_emulation: a kernel launched from inside a kernel\n");
    std::abort();
  }
  const int threads = static_cast<int>(n_threads);
  const int n_warps = (threads + kWarpSize - 1) / kWarpSize;

  // Dynamic shared memory starts 16-byte aligned, as on a device; it is not zeroed there either,
  // so it is filled with NaN bytes to make reads of unwritten values visible.
  std::vector<float4> dynamic_shared((dynamic_shared_bytes + sizeof(float4) - 1) / sizeof(float4));
  if (!dynamic_shared.empty()) {
    std::memset(dynamic_shared.data(), 0xff, dynamic_shared.size() * sizeof(float4));
  }
  Barrier block_barrier;
  std::vector<Warp> warps(static_cast<size_t>(n_warps));

  BlockScheduler scheduler(threads, body);
  for (int tid = 0; tid < threads; ++tid) {
    ThreadContext& context = scheduler.fiber(tid).context;
    context.thread_idx =
        uint3{static_cast<unsigned>(tid) % block.x, static_cast<unsigned>(tid) / block.x % block.y,
              static_cast<unsigned>(tid) / (block.x * block.y)};
    context.block_dim = block;
    context.grid_dim = grid;
    context.lane = tid % kWarpSize;
    context.block_barrier = &block_barrier;
    context.warp = &warps[static_cast<size_t>(tid / kWarpSize)];
    context.dynamic_shared = dynamic_shared.data();
  }
  BlockScheduler::Active() = &scheduler;
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        block_barrier.Reset(threads);
        for (int w = 0; w < n_warps; ++w) {
          warps[static_cast<size_t>(w)].barrier.Reset(std::min(kWarpSize, threads - w * kWarpSize));
        }
        for (int tid = 0; tid < threads; ++tid) {
          scheduler.fiber(tid).context.block_idx = uint3{x, y, z};
        }
        scheduler.RunBlock();
      }
    }
  }
  BlockScheduler::Active() = nullptr;
}

}  // namespace swarm::cuda_emulation
