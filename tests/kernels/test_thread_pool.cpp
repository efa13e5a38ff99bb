// The optimized backend's thread pool: every task runs once per region, ranges are covered
// exactly once at grain boundaries, and many back-to-back regions (a decode step's pattern) neither
// lose nor repeat work.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "kernels/cpu/thread_pool.h"

namespace swarm::kernels::cpu {
namespace {

TEST(ThreadPoolTest, RunCallsEveryIndexOnce) {
  for (int n : {1, 2, 3, 5}) {
    ThreadPool pool(n);
    EXPECT_EQ(pool.size(), n);
    std::vector<std::atomic<int>> calls(static_cast<size_t>(n));
    pool.Run([&](int i) { calls[static_cast<size_t>(i)].fetch_add(1); });
    for (int i = 0; i < n; ++i) EXPECT_EQ(calls[static_cast<size_t>(i)].load(), 1) << i;
  }
}

// A task may block its thread: the others (the caller included) claim the remaining tasks.
TEST(ThreadPoolTest, OtherThreadsTakeOverTasks) {
  ThreadPool pool(3);
  std::atomic<int> finished{0};
  std::atomic<bool> release{false};
  pool.Run([&](int i) {
    if (i == 0) {
      // Task 0 waits until both other tasks have finished, which they can only do on the
      // remaining two threads.
      while (finished.load() < 2) std::this_thread::yield();
      release = true;
    }
    finished.fetch_add(1);
  });
  EXPECT_TRUE(release.load());
  EXPECT_EQ(finished.load(), 3);
}

TEST(ThreadPoolTest, ParallelForCoversTheRangeOnceAtGrainBoundaries) {
  ThreadPool pool(3);
  for (int64_t n : {1, 15, 16, 17, 100, 1000}) {
    for (int64_t grain : {1, 16}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<int> bad_boundaries{0};
      pool.ParallelFor(n, grain, [&](int64_t b, int64_t e) {
        if (b % grain != 0 || (e != n && e % grain != 0) || b >= e) bad_boundaries.fetch_add(1);
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
      });
      EXPECT_EQ(bad_boundaries.load(), 0);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << n;
    }
  }
}

TEST(ThreadPoolTest, ManyShortRegionsAndSleepingWorkers) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  for (int round = 0; round < 3000; ++round) {
    pool.Run([&](int i) { total.fetch_add(i + 1); });
  }
  EXPECT_EQ(total.load(), 3000 * 3);
  // Let the worker fall asleep, then wake it.
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  pool.Run([&](int i) { total.fetch_add(i + 1); });
  EXPECT_EQ(total.load(), 3001 * 3);
}

}  // namespace
}  // namespace swarm::kernels::cpu
