// A fixed team of threads for the optimized CPU backend: size()-1 persistent workers plus the
// calling thread run one parallel region at a time (Run). A region is size() tasks; any thread
// claims the next unclaimed task, so a worker the OS has descheduled delays nothing (the caller
// runs its task) while which task computes what stays fixed. Workers spin briefly between regions
// (a decode step issues hundreds of short regions back to back) and then sleep on a condition
// variable, so an idle pool costs nothing. Run() allocates nothing. One thread calls Run() at a
// time (the thread that drives the backend); the pool owns its workers and joins them on
// destruction.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace swarm::kernels::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);  // n_threads >= 1 (clamped)
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // The calling thread is about to wait on something other than this pool (a network reply):
  // workers still spinning for the next region go to sleep at once instead of after their spin
  // budget, so they leave the CPU to other processes (on a machine running several peers, the
  // peer that computes next). The next Run() wakes them as usual.
  void Park() { parked_.store(true, std::memory_order_release); }
  // Work is about to come (a request arrived): sleeping workers wake now and spin, so that their
  // wake-up overlaps with whatever the caller does before its next Run().
  void Unpark();

  // Calls fn(i) once for every task i in [0, size()), on whichever thread claims it first, and
  // returns when every call has returned. fn must not throw.
  template <typename F>
  void Run(const F& fn) {
    if (n_threads_ == 1) {
      fn(0);
      return;
    }
    RunImpl([](const void* ctx, int i) { (*static_cast<const F*>(ctx))(i); }, &fn);
  }

  // Splits [0, n) into size() contiguous ranges whose boundaries are multiples of `grain` (except
  // n itself) and calls fn(begin, end) for each non-empty one, in parallel. The split depends
  // only on n, grain and size().
  template <typename F>
  void ParallelFor(int64_t n, int64_t grain, const F& fn) {
    if (n <= 0) return;
    const int64_t units = (n + grain - 1) / grain;
    const int used = static_cast<int>(units < n_threads_ ? units : n_threads_);
    if (used <= 1) {
      fn(int64_t{0}, n);
      return;
    }
    Run([&](int i) {
      if (i >= used) return;
      const int64_t begin = units * i / used * grain;
      int64_t end = units * (i + 1) / used * grain;
      if (end > n) end = n;
      if (begin < end) fn(begin, end);
    });
  }

 private:
  using Call = void (*)(const void* ctx, int index);
  void RunImpl(Call call, const void* ctx);
  void WorkerMain();
  void WakeWorkers();
  // Claims and runs tasks of region `epoch` until none is left; returns how many it ran.
  int RunTasks(uint32_t epoch);

  const int n_threads_;
  std::vector<std::thread> workers_;
  // The region being run. call_/ctx_ are written before the region's epoch is published.
  std::atomic<Call> call_{nullptr};
  std::atomic<const void*> ctx_{nullptr};
  // (epoch << 32) | next unclaimed task: a claim succeeds only within its own region, so a worker
  // that woke for an old region can never run a task of a newer one.
  std::atomic<uint64_t> claim_{0};
  std::atomic<uint32_t> epoch_{0};  // futex word the workers sleep on
  std::atomic<int> sleeping_workers_{0};
  std::atomic<int> done_{0};  // tasks of the current region finished
  std::atomic<int> caller_sleeping_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> parked_{false};  // set by Park(), cleared by the next region
  std::atomic<uint32_t> unpark_{0};  // bumped by Unpark() to wake sleeping workers early
  std::mutex sleep_mu_;              // only for sleeping and waking (see WakeWorkers)
  std::condition_variable work_cv_;  // workers wait here for a new epoch
  std::condition_variable done_cv_;  // the caller waits here for its region to finish
};

}  // namespace swarm::kernels::cpu
