// Where a CPU matrix-vector product's time goes, per weight type and instruction set, on one
// thread: the kernel's rate over weights that stay in the core's L2 cache (its own arithmetic
// limit) against its rate over weights streamed from memory, and both against a plain read of
// the same bytes. A kernel whose cached rate is not well above the memory read rate cannot reach
// the bandwidth bound however good the prefetching. Prints JSON; no thresholds.
//
// Usage: matvec_bench [--isa avx512|avx2|generic] [--types f16,q4_0,...] [--seconds S]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/kernels_isa.h"
#include "kernels/cpu/lane_layout.h"
#include "kernels/cpu/row_panels.h"
#include "kernels/ggml_type.h"
#include "kernels/quant_reference.h"

namespace {

using swarm::kernels::GgmlType;
namespace cpu = swarm::kernels::cpu;

struct AlignedFree {
  void operator()(uint8_t* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<uint8_t[], AlignedFree>;

Buffer Allocate(size_t bytes) {
  return Buffer(static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)));
}

// A weight matrix of n_out rows of n_in values of `type`, random values quantized row by row.
Buffer MakeWeights(GgmlType type, int64_t n_in, int64_t n_out, size_t* row_bytes) {
  *row_bytes = swarm::kernels::RowBytes(type, n_in).value();
  Buffer w = Allocate(*row_bytes * n_out);
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  std::vector<float> row(n_in);
  // Quantizing every row of a large matrix is slow: make 64 distinct rows and repeat them.
  const int64_t distinct = std::min<int64_t>(n_out, 64);
  for (int64_t r = 0; r < distinct; ++r) {
    for (float& v : row) v = dist(rng);
    swarm::kernels::QuantizeRow(type, row.data(), w.get() + r * *row_bytes, n_in);
  }
  for (int64_t r = distinct; r < n_out; ++r) {
    std::memcpy(w.get() + r * *row_bytes, w.get() + (r % distinct) * *row_bytes, *row_bytes);
  }
  return w;
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Best bytes/s of `kernel` and of `read` (each processing `bytes` per call), over calls that
// alternate between the two for `seconds`: a machine whose memory rate drifts then gives both
// figures from the same moments.
template <class Kernel, class Read>
std::pair<double, double> BestRates(size_t bytes, double seconds, Kernel&& kernel, Read&& read) {
  double best_kernel = 0, best_read = 0;
  const double end = Now() + seconds;
  do {
    double t0 = Now();
    kernel();
    best_kernel = std::max(best_kernel, static_cast<double>(bytes) / (Now() - t0));
    t0 = Now();
    read();
    best_read = std::max(best_read, static_cast<double>(bytes) / (Now() - t0));
  } while (Now() < end);
  return {best_kernel, best_read};
}

uint64_t ReadSum(cpu::Isa isa, const uint8_t* p, size_t n) {
  switch (isa) {
    case cpu::Isa::kAvx512:
      return cpu::avx512::ReadSum(p, n);
    case cpu::Isa::kAvx2:
      return cpu::avx2::ReadSum(p, n);
    default: {
      uint64_t s = 0;
      for (size_t i = 0; i < n; i += 8) {
        uint64_t v;
        std::memcpy(&v, p + i, 8);
        s += v;
      }
      return s;
    }
  }
}

struct Figures {
  double kernel_cached = 0;  // bytes/s
  double kernel_memory = 0;
  double read_cached = 0;
  double read_memory = 0;
};

// lanes: the weights rewritten into the backend's own layout of the type (a lane layout of the
// 32-value block types, the row panels of the float types and K-quants), read by its kernel for it.
Figures Measure(cpu::Isa isa, GgmlType type, bool lanes, double seconds) {
  const cpu::KernelTable& table = cpu::KernelsFor(isa);
  constexpr int64_t kIn = 2048;  // TinyLlama's width
  const int64_t cached_rows = 192;
  size_t row_bytes = 0;
  // The memory case: rows enough for ~512 MiB, far past any cache.
  const size_t bytes_per_row = swarm::kernels::RowBytes(type, kIn).value();
  const int64_t memory_rows = static_cast<int64_t>((size_t{512} << 20) / bytes_per_row);
  Buffer w = MakeWeights(type, kIn, memory_rows, &row_bytes);
  if (lanes) {
    Buffer gguf = std::move(w);
    w = Allocate(row_bytes * memory_rows);
    if (cpu::HasRowPanels(type)) {
      // Whole panels of 64 rows: the first cached_rows rows are panels of their own too.
      cpu::RowsToPanels(type, gguf.get(), w.get(), kIn, memory_rows, 0,
                        (memory_rows + cpu::kPanelRows - 1) / cpu::kPanelRows);
    } else {
      for (int64_t r = 0; r < memory_rows; ++r) {
        cpu::RowToLanes(type, gguf.get() + r * row_bytes, w.get() + r * row_bytes, kIn);
      }
    }
  }

  std::vector<float> x(kIn);
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (float& v : x) v = dist(rng);
  cpu::MatMulArgs a;
  a.type = type;
  a.row_bytes = row_bytes;
  a.n_in = kIn;
  a.n_tokens = 1;
  Buffer xq;
  if (cpu::UsesX8(type)) {
    a.x8 = cpu::MakeX8Layout(kIn, cpu::X8Group(type),
                             table.x8_lanes || lanes ? cpu::X8LaneOrder(type) : 0);
    xq = Allocate(a.x8.bytes);
    table.quantize_x8(x.data(), a.x8, xq.get());
    a.x = xq.get();
    a.x_stride = a.x8.bytes;
  } else {
    a.x = reinterpret_cast<const uint8_t*>(x.data());
    a.x_stride = kIn * sizeof(float);
  }
  std::vector<float> y(memory_rows);
  a.y = y.data();
  const int slot = cpu::MatMulSlot(type);
  const cpu::MatMulFn fn = lanes ? table.matmul_packed[slot] : table.matmul[slot];

  Figures f;
  volatile uint64_t sink = 0;
  a.w = w.get();
  a.n_out = cached_rows;
  const size_t cached_bytes = row_bytes * cached_rows;
  std::tie(f.kernel_cached, f.read_cached) = BestRates(
      cached_bytes, seconds, [&] { fn(a, 0, cached_rows); },
      [&] { sink = sink + ReadSum(isa, a.w, cached_bytes / 256 * 256); });
  const size_t memory_bytes = row_bytes * memory_rows;
  std::tie(f.kernel_memory, f.read_memory) = BestRates(
      memory_bytes, seconds,
      [&] {
        a.n_out = memory_rows;
        fn(a, 0, memory_rows);
      },
      [&] { sink = sink + ReadSum(isa, a.w, memory_bytes / 256 * 256); });
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  cpu::Isa isa = cpu::BestIsa(cpu::DetectCpuFeatures());
  std::string types = "f32,f16,bf16,q8_0,q4_0,q4_k,q6_k";
  double seconds = 0.5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--isa") {
      auto parsed = cpu::ParseIsa(argv[i + 1]);
      if (!parsed.ok() || !cpu::IsaSupported(*parsed, cpu::DetectCpuFeatures())) {
        std::fprintf(stderr, "matvec_bench: this processor cannot run --isa %s\n", argv[i + 1]);
        return 2;
      }
      isa = *parsed;
    } else if (flag == "--types") {
      types = argv[i + 1];
    } else if (flag == "--seconds") {
      seconds = std::atof(argv[i + 1]);
    } else {
      std::fprintf(stderr, "matvec_bench: unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  std::printf(
      "{\"isa\": \"%s\", \"threads\": 1, \"n_in\": 2048, \"unit\": \"GB/s of weights\",\n "
      "\"types\": [",
      std::string(cpu::IsaName(isa)).c_str());
  bool first = true;
  size_t start = 0;
  while (start < types.size()) {
    size_t comma = types.find(',', start);
    if (comma == std::string::npos) comma = types.size();
    const std::string name = types.substr(start, comma - start);
    start = comma + 1;
    auto type = swarm::kernels::ParseGgmlType(name);
    if (!type.ok()) {
      std::fprintf(stderr, "matvec_bench: unknown type %s\n", name.c_str());
      return 2;
    }
    const int slot = cpu::MatMulSlot(*type);
    for (bool lanes : {false, true}) {
      if (lanes && cpu::KernelsFor(isa).matmul_packed[slot] == nullptr) continue;
      const Figures f = Measure(isa, *type, lanes, seconds);
      std::printf(
          "%s\n  {\"type\": \"%s\", \"layout\": \"%s\", \"kernel_cached\": %.1f, "
          "\"read_cached\": %.1f, \"kernel_memory\": %.1f, \"read_memory\": %.1f, "
          "\"memory_fraction\": %.3f}",
          first ? "" : ",", name.c_str(),
          !lanes                     ? "gguf"
          : cpu::HasRowPanels(*type) ? "panels"
                                     : "lanes",
          f.kernel_cached / 1e9, f.read_cached / 1e9, f.kernel_memory / 1e9, f.read_memory / 1e9,
          f.kernel_memory / f.read_memory);
      std::fflush(stdout);
      first = false;
    }
  }
  std::printf("\n]}\n");
  return 0;
}
