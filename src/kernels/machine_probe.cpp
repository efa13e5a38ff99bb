#include "kernels/machine_probe.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <new>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/kernels_isa.h"

namespace swarm::kernels {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

uint64_t ReadSumGeneric(const uint8_t* p, size_t n) {
  const auto* q = reinterpret_cast<const uint64_t*>(p);
  uint64_t a = 0, b = 0, c = 0, d = 0;
  for (size_t i = 0; i < n / 8; i += 4) {
    a += q[i];
    b += q[i + 1];
    c += q[i + 2];
    d += q[i + 3];
  }
  return a + b + c + d;
}

}  // namespace

double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

absl::StatusOr<Rate> MeasureReadBandwidth(cpu::ThreadPool& pool, size_t buffer_bytes, int passes,
                                          size_t* used_bytes) {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) {
    buffer_bytes = std::min(buffer_bytes, static_cast<size_t>(pages) * page / 8);
  }
  const int threads = pool.size();
  // Each thread's slice is a multiple of 4 KiB.
  const size_t slice = std::max<size_t>(buffer_bytes / threads / 4096, 1) * 4096;
  buffer_bytes = slice * threads;
  if (used_bytes != nullptr) *used_bytes = buffer_bytes;
  std::unique_ptr<uint8_t[]> raw(new (std::nothrow) uint8_t[buffer_bytes + 64]);
  if (raw == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", buffer_bytes, " bytes"));
  }
  uint8_t* buffer =
      reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(raw.get()) + 63) & ~uintptr_t{63});
  // Touch every page from the thread that will read it (first-touch placement on NUMA machines).
  pool.Run([&](int i) { std::memset(buffer + slice * i, i + 1, slice); });

  const cpu::CpuFeatures features = cpu::DetectCpuFeatures();
  uint64_t (*read)(const uint8_t*, size_t) = ReadSumGeneric;
#if !defined(SWARM_CPU_NO_X86_KERNELS)
  if (cpu::IsaSupported(cpu::Isa::kAvx512, features)) {
    read = cpu::avx512::ReadSum;
  } else if (cpu::IsaSupported(cpu::Isa::kAvx2, features)) {
    read = cpu::avx2::ReadSum;
  }
#endif
  std::atomic<uint64_t> sink{0};
  Rate best;
  for (int pass = 0; pass < std::max(passes, 1); ++pass) {
    const auto start = Clock::now();
    const double cpu_start = ProcessCpuSeconds();
    pool.Run([&](int i) { sink.fetch_add(read(buffer + slice * i, slice)); });
    const double bytes = static_cast<double>(buffer_bytes);
    best.wall = std::max(best.wall, bytes / Seconds(start));
    best.cpu = std::max(best.cpu, bytes * threads / (ProcessCpuSeconds() - cpu_start));
  }
  if (sink.load() == 42) best.wall += 0;  // the sums are used
  return best;
}

namespace {
using ReadFn = uint64_t (*)(const uint8_t*, size_t);
ReadFn BestRead() {
#if !defined(SWARM_CPU_NO_X86_KERNELS)
  const cpu::CpuFeatures features = cpu::DetectCpuFeatures();
  if (cpu::IsaSupported(cpu::Isa::kAvx512, features)) return cpu::avx512::ReadSum;
  if (cpu::IsaSupported(cpu::Isa::kAvx2, features)) return cpu::avx2::ReadSum;
#endif
  return ReadSumGeneric;
}
}  // namespace

Rate MeasureReadOf(cpu::ThreadPool& pool, const std::vector<std::span<const uint8_t>>& regions,
                   int passes) {
  const ReadFn read = BestRead();
  const int threads = pool.size();
  std::atomic<uint64_t> sink{0};
  double total = 0;
  for (const auto& r : regions) total += static_cast<double>(r.size());
  Rate best;
  for (int pass = 0; pass < std::max(passes, 1); ++pass) {
    const auto start = Clock::now();
    const double cpu_start = ProcessCpuSeconds();
    for (const auto& r : regions) {
      // Whole 64-byte lines from the first full line on: the readers load 64 bytes at a time.
      const uintptr_t first = (reinterpret_cast<uintptr_t>(r.data()) + 63) & ~uintptr_t{63};
      const uintptr_t end = reinterpret_cast<uintptr_t>(r.data() + r.size()) & ~uintptr_t{63};
      if (end <= first) continue;
      const size_t lines = (end - first) / 64;
      pool.Run([&](int i) {
        const size_t b = lines * static_cast<size_t>(i) / static_cast<size_t>(threads);
        const size_t e = lines * static_cast<size_t>(i + 1) / static_cast<size_t>(threads);
        const auto* base = reinterpret_cast<const uint8_t*>(first);
        // The readers take multiples of 256 bytes; the tail of a slice is at most 3 lines.
        const size_t bytes = (e - b) * 64 / 256 * 256;
        if (bytes > 0) sink.fetch_add(read(base + b * 64, bytes));
      });
    }
    best.wall = std::max(best.wall, total / Seconds(start));
    best.cpu = std::max(best.cpu, total * threads / (ProcessCpuSeconds() - cpu_start));
  }
  if (sink.load() == 42) best.wall += 0;  // the sums are used
  return best;
}

Rate MeasureFmaPeak(cpu::ThreadPool& pool, cpu::Isa isa, double seconds) {
  float (*loop)(int64_t) = nullptr;
  int lanes = 0;
#if !defined(SWARM_CPU_NO_X86_KERNELS)
  if (isa == cpu::Isa::kAvx512) {
    loop = cpu::avx512::FmaLoop;
    lanes = 16;
  } else if (isa == cpu::Isa::kAvx2) {
    loop = cpu::avx2::FmaLoop;
    lanes = 8;
  }
#endif
  if (loop == nullptr) return {};
  // Calibrate the iteration count on one thread.
  int64_t iters = 1 << 16;
  for (;;) {
    const auto start = Clock::now();
    volatile float sink = loop(iters);
    (void)sink;
    const double s = Seconds(start);
    if (s > seconds / 4 || iters > (int64_t{1} << 40)) {
      iters = static_cast<int64_t>(static_cast<double>(iters) * seconds / std::max(s, 1e-9));
      break;
    }
    iters *= 4;
  }
  iters = std::max<int64_t>(iters, 1);
  Rate best;
  for (int rep = 0; rep < 3; ++rep) {
    const auto start = Clock::now();
    const double cpu_start = ProcessCpuSeconds();
    pool.Run([&](int) {
      volatile float sink = loop(iters);
      (void)sink;
    });
    const double flops = static_cast<double>(iters) * cpu::kFmaChains * lanes * 2 * pool.size();
    best.wall = std::max(best.wall, flops / Seconds(start));
    best.cpu = std::max(best.cpu, flops * pool.size() / (ProcessCpuSeconds() - cpu_start));
  }
  return best;
}

absl::StatusOr<MachineFigures> ProbeMachine(cpu::ThreadPool& pool,
                                            const MachineProbeOptions& options) {
  MachineFigures f;
  const cpu::CpuFeatures features = cpu::DetectCpuFeatures();
  f.threads = pool.size();
  f.cpu = features.brand;
  f.features = features.Summary();
  auto bandwidth = MeasureReadBandwidth(pool, options.bandwidth_buffer_bytes,
                                        options.bandwidth_passes, &f.bandwidth_buffer_bytes);
  if (!bandwidth.ok()) return bandwidth.status();
  f.read_bandwidth = bandwidth->wall;
  f.read_bandwidth_cpu = bandwidth->cpu;
  for (cpu::Isa isa : {cpu::Isa::kAvx2, cpu::Isa::kAvx512}) {
    if (!cpu::IsaSupported(isa, features)) continue;
    const Rate peak = MeasureFmaPeak(pool, isa, options.fma_seconds);
    f.fma_peak_per_isa.emplace_back(std::string(cpu::IsaName(isa)), peak.wall);
    if (peak.wall > f.fma_peak) {
      f.fma_peak = peak.wall;
      f.fma_peak_cpu = peak.cpu;
      f.peak_isa = std::string(cpu::IsaName(isa));
    }
  }
  return f;
}

}  // namespace swarm::kernels
