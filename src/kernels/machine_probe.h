// Measures the two machine figures the benchmark divides by, in the same process that runs the
// model: the memory read bandwidth (all threads streaming a buffer far larger than the caches,
// with the best vector loads the processor has) and the fp32 FMA peak (independent FMA chains on
// every thread, per instruction-set level). Free functions; they use the caller's thread pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/thread_pool.h"

namespace swarm::kernels {

struct MachineProbeOptions {
  size_t bandwidth_buffer_bytes = size_t{1} << 30;  // clamped to an eighth of physical memory
  int bandwidth_passes = 5;                         // the best pass counts
  double fma_seconds = 0.2;                         // per measurement; the best of 3 counts
};

// A rate measured two ways: per second of wall time (what a user sees), and per second of the
// process's CPU time divided by its threads (what the same work gets on cores nobody else uses;
// threads waiting for each other still count, so it is never optimistic about the code itself).
struct Rate {
  double wall = 0;
  double cpu = 0;
};

// CPU time of the whole process so far, in seconds.
double ProcessCpuSeconds();

struct MachineFigures {
  int threads = 0;
  std::string cpu;                // brand string
  std::string features;           // CpuFeatures::Summary()
  double read_bandwidth = 0;      // bytes/s, all threads together
  double read_bandwidth_cpu = 0;  // per CPU second / threads (Rate::cpu)
  size_t bandwidth_buffer_bytes = 0;
  std::string peak_isa;     // the level whose FMA peak is `fma_peak`: the best this CPU runs
  double fma_peak = 0;      // fp32 flop/s (2 per FMA), all threads together
  double fma_peak_cpu = 0;  // per CPU second / threads (Rate::cpu)
  std::vector<std::pair<std::string, double>> fma_peak_per_isa;
};

// Read bandwidth in bytes/s with every thread of `pool` reading its own slice of one buffer.
absl::StatusOr<Rate> MeasureReadBandwidth(cpu::ThreadPool& pool, size_t buffer_bytes, int passes,
                                          size_t* used_bytes = nullptr);

// Read rate in bytes/s of given memory regions (e.g. a model's weights where they are mapped),
// one parallel region per span, each split over the pool's threads in 64-byte-aligned contiguous
// slices, as a matrix-vector product splits its rows. The best of `passes` counts.
Rate MeasureReadOf(cpu::ThreadPool& pool, const std::vector<std::span<const uint8_t>>& regions,
                   int passes);

// fp32 FMA rate in flop/s on every thread of `pool` with `isa`'s widest FMA (the generic level has
// none: 0).
Rate MeasureFmaPeak(cpu::ThreadPool& pool, cpu::Isa isa, double seconds);

absl::StatusOr<MachineFigures> ProbeMachine(cpu::ThreadPool& pool,
                                            const MachineProbeOptions& options = {});

}  // namespace swarm::kernels
