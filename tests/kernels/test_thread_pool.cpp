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

// A peer parks its workers when it waits for the network and unparks them when a request arrives;
// every order of Park, Unpark, Run and idle gaps (workers spinning, parked or asleep) keeps every
// region's tasks running exactly once.
TEST(ThreadPoolTest, ParkAndUnparkInAnyOrderLoseNoWork) {
  for (int n : {2, 3}) {
    ThreadPool pool(n);
    std::atomic<int64_t> total{0};
    int64_t expected = 0;
    uint32_t state = 12345;
    for (int round = 0; round < 2000; ++round) {
      state = state * 1664525u + 1013904223u;
      const uint32_t pick = state >> 28;
      if (pick % 4 == 0) pool.Park();
      if (pick % 5 == 0) pool.Unpark();
      if (pick == 7) std::this_thread::sleep_for(std::chrono::microseconds(300));
      if (pick % 3 != 2) {
        pool.Run([&](int i) { total.fetch_add(i + 1); });
        expected += n * (n + 1) / 2;
      }
    }
    pool.Park();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // workers asleep
    pool.Unpark();
    pool.Run([&](int i) { total.fetch_add(i + 1); });
    expected += n * (n + 1) / 2;
    EXPECT_EQ(total.load(), expected) << n;
  }
}

}  // namespace
}  // namespace swarm::kernels::cpu
