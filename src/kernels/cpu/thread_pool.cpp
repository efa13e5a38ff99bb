#include "kernels/cpu/thread_pool.h"

#include <chrono>

namespace swarm::kernels::cpu {
namespace {

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// How long a thread spins before it sleeps: long enough to cover the gap between two operations
// of a decode step, short enough that an idle peer does not burn a core.
constexpr std::chrono::microseconds kSpin{200};

// Spins until pred() or the spin budget runs out; returns pred().
template <typename Pred>
bool SpinUntil(const Pred& pred) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    if (pred()) return true;
    CpuRelax();
    if ((i & 255) == 255 && std::chrono::steady_clock::now() > deadline) return pred();
  }
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
  workers_.reserve(static_cast<size_t>(n_threads_ - 1));
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this] { WorkerMain(); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_seq_cst);
  epoch_.fetch_add(1, std::memory_order_seq_cst);
  WakeWorkers();
  for (std::thread& t : workers_) t.join();
}

// Sleeping uses a mutex and condition variables rather than std::atomic::wait/notify, whose
// libstdc++ 12 implementation can miss wake-ups. Both sides follow the same pattern: the sleeper
// announces itself (seq_cst) before re-checking its condition under the mutex; the waker changes
// the condition (seq_cst) before reading the announcement, and takes the mutex before notifying,
// so a sleeper is either seen or sees the change.
void ThreadPool::WakeWorkers() {
  { std::lock_guard<std::mutex> lock(sleep_mu_); }
  work_cv_.notify_all();
}

void ThreadPool::Unpark() {
  parked_.store(false, std::memory_order_release);
  if (sleeping_workers_.load(std::memory_order_seq_cst) == 0) return;
  // A worker that wakes without a new epoch spins for its budget and sleeps again.
  unpark_.fetch_add(1, std::memory_order_seq_cst);
  { std::lock_guard<std::mutex> lock(sleep_mu_); }
  work_cv_.notify_all();
}

int ThreadPool::RunTasks(uint32_t epoch) {
  const Call call = call_.load(std::memory_order_relaxed);
  const void* ctx = ctx_.load(std::memory_order_relaxed);
  int ran = 0;
  uint64_t c = claim_.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<uint32_t>(c >> 32) != epoch) return ran;
    const int task = static_cast<int>(c & 0xffffffffu);
    if (task >= n_threads_) return ran;
    // On success the region is still open (its last task is unfinished), so call/ctx, read after
    // the epoch was published and before this claim, are this region's.
    if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
      continue;
    }
    call(ctx, task);
    ++ran;
    if (done_.fetch_add(1, std::memory_order_seq_cst) + 1 == n_threads_ &&
        caller_sleeping_.load(std::memory_order_seq_cst) != 0) {
      { std::lock_guard<std::mutex> lock(sleep_mu_); }
      done_cv_.notify_all();
    }
    c = claim_.load(std::memory_order_acquire);
  }
}

void ThreadPool::RunImpl(Call call, const void* ctx) {
  parked_.store(false, std::memory_order_relaxed);
  call_.store(call, std::memory_order_relaxed);
  ctx_.store(ctx, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  const uint32_t epoch = epoch_.load(std::memory_order_relaxed) + 1;
  claim_.store(uint64_t{epoch} << 32, std::memory_order_release);
  // seq_cst pairs with the workers' seq_cst increment of sleeping_workers_: either a worker sees
  // the new epoch before it sleeps, or this thread sees it sleeping and wakes it.
  epoch_.store(epoch, std::memory_order_seq_cst);
  if (sleeping_workers_.load(std::memory_order_seq_cst) > 0) WakeWorkers();

  RunTasks(epoch);

  if (!SpinUntil([&] { return done_.load(std::memory_order_acquire) == n_threads_; })) {
    std::unique_lock<std::mutex> lock(sleep_mu_);
    caller_sleeping_.store(1, std::memory_order_seq_cst);
    done_cv_.wait(lock, [&] { return done_.load(std::memory_order_seq_cst) == n_threads_; });
    caller_sleeping_.store(0, std::memory_order_relaxed);
  }
}

void ThreadPool::WorkerMain() {
  // Epoch 0 is the state at construction; a region may be published before this thread starts.
  uint32_t seen = 0;
  for (;;) {
    const bool woken = SpinUntil([&] {
      return epoch_.load(std::memory_order_acquire) != seen ||
             parked_.load(std::memory_order_acquire);
    });
    if (!woken || epoch_.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lock(sleep_mu_);
      sleeping_workers_.fetch_add(1, std::memory_order_seq_cst);
      const uint32_t unparks = unpark_.load(std::memory_order_seq_cst);
      work_cv_.wait(lock, [&] {
        return epoch_.load(std::memory_order_seq_cst) != seen ||
               unpark_.load(std::memory_order_seq_cst) != unparks;
      });
      sleeping_workers_.fetch_sub(1, std::memory_order_relaxed);
      if (epoch_.load(std::memory_order_acquire) == seen) continue;  // unparked: spin again
    }
    seen = epoch_.load(std::memory_order_acquire);
    if (stop_.load(std::memory_order_acquire)) return;
    RunTasks(seen);
  }
}

}  // namespace swarm::kernels::cpu
