// Where a CPU prompt product's time goes, per weight type and instruction set, on one thread: the
// matrix-matrix kernel (64 tokens, the rows of a few weight panels, weights and activations
// cache-resident) against the instruction set's fp32 FMA loop (the probe's peak), the two timed
// in alternation so that both see the same moments of a machine whose speed drifts. Prints JSON;
// no thresholds.
//
// Usage: matmat_bench [--isa avx512|avx2] [--types f16,q4_0,...] [--rows R] [--tokens T]
//                     [--seconds S]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
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

constexpr int64_t kIn = 2048;  // TinyLlama's width
int64_t kRows = 128;           // --rows: a few panels stay in cache; thousands come from memory

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Figures {
  double kernel_flops = 0;  // per second, best call
  double fma_flops = 0;
};

Figures Measure(cpu::Isa isa, GgmlType type, bool packed, int64_t tokens, double seconds) {
  const cpu::KernelTable& table = cpu::KernelsFor(isa);
  const size_t row_bytes = swarm::kernels::RowBytes(type, kIn).value();
  std::vector<uint8_t> gguf(row_bytes * kRows), w(row_bytes * kRows);
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  std::vector<float> values(kIn);
  for (int64_t r = 0; r < kRows; ++r) {
    for (float& v : values) v = dist(rng);
    swarm::kernels::QuantizeRow(type, values.data(), gguf.data() + r * row_bytes, kIn);
  }
  if (packed && cpu::HasRowPanels(type)) {
    cpu::RowsToPanels(type, gguf.data(), w.data(), kIn, kRows, 0, kRows / cpu::kPanelRows);
  } else if (packed) {
    for (int64_t r = 0; r < kRows; ++r) {
      cpu::RowToLanes(type, gguf.data() + r * row_bytes, w.data() + r * row_bytes, kIn);
    }
  } else {
    w = gguf;
  }
  std::vector<float> x(static_cast<size_t>(kIn * tokens));
  std::normal_distribution<float> unit(0.0f, 1.0f);
  for (float& v : x) v = unit(rng);
  cpu::MatMulArgs a;
  a.type = type;
  a.w = w.data();
  a.row_bytes = row_bytes;
  a.n_in = kIn;
  a.n_out = kRows;
  a.n_tokens = tokens;
  std::vector<uint8_t> xq;
  if (cpu::UsesX8(type)) {
    a.x8 = cpu::MakeX8Layout(kIn, cpu::X8Group(type),
                             table.x8_lanes || packed ? cpu::X8LaneOrder(type) : 0);
    xq.resize(a.x8.bytes * tokens + 64);
    auto* base =
        reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(xq.data()) + 63) / 64 * 64);
    for (int64_t t = 0; t < tokens; ++t) {
      table.quantize_x8(x.data() + t * kIn, a.x8, base + t * a.x8.bytes);
    }
    a.x = base;
    a.x_stride = a.x8.bytes;
  } else {
    a.x = reinterpret_cast<const uint8_t*>(x.data());
    a.x_stride = kIn * sizeof(float);
  }
  std::vector<float> y(static_cast<size_t>(kRows * tokens));
  a.y = y.data();
  const int slot = cpu::MatMulSlot(type);
  const cpu::MatMulFn fn = packed ? table.matmul_packed[slot] : table.matmul[slot];
  const double kernel_flops = 2.0 * kRows * kIn * static_cast<double>(tokens);

  float (*fma_loop)(int64_t) = isa == cpu::Isa::kAvx512 ? cpu::avx512::FmaLoop : cpu::avx2::FmaLoop;
  const int lanes = isa == cpu::Isa::kAvx512 ? 16 : 8;
  // As many FMA iterations as the kernel's flops: the two calls take about as long.
  const int64_t iters = static_cast<int64_t>(kernel_flops / (2.0 * cpu::kFmaChains * lanes));
  const double loop_flops = 2.0 * cpu::kFmaChains * lanes * static_cast<double>(iters);

  Figures f;
  volatile float sink = 0;
  const double end = Now() + seconds;
  do {
    double t0 = Now();
    fn(a, 0, kRows);
    f.kernel_flops = std::max(f.kernel_flops, kernel_flops / (Now() - t0));
    t0 = Now();
    sink = sink + fma_loop(iters);
    f.fma_flops = std::max(f.fma_flops, loop_flops / (Now() - t0));
  } while (Now() < end);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  cpu::Isa isa = cpu::BestIsa(cpu::DetectCpuFeatures());
  std::string types = "f32,f16,bf16,q8_0,q4_0,q4_k,q6_k";
  double seconds = 0.5;
  int64_t tokens = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--isa") {
      auto parsed = cpu::ParseIsa(argv[i + 1]);
      if (!parsed.ok() || *parsed == cpu::Isa::kGeneric ||
          !cpu::IsaSupported(*parsed, cpu::DetectCpuFeatures())) {
        std::fprintf(stderr, "matmat_bench: this processor cannot run --isa %s\n", argv[i + 1]);
        return 2;
      }
      isa = *parsed;
    } else if (flag == "--types") {
      types = argv[i + 1];
    } else if (flag == "--seconds") {
      seconds = std::atof(argv[i + 1]);
    } else if (flag == "--rows") {
      kRows = std::atoll(argv[i + 1]);
      if (kRows < 64 || kRows % 64 != 0 || kRows > 65536) {
        std::fprintf(stderr, "matmat_bench: --rows must be a multiple of 64 in [64, 65536]\n");
        return 2;
      }
    } else if (flag == "--tokens") {
      tokens = std::atoll(argv[i + 1]);
      if (tokens < 1 || tokens > 4096) {
        std::fprintf(stderr, "matmat_bench: --tokens must be in [1, 4096]\n");
        return 2;
      }
    } else {
      std::fprintf(stderr, "matmat_bench: unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  if (isa == cpu::Isa::kGeneric) {
    std::fprintf(stderr, "matmat_bench: needs AVX2 or AVX-512 (the FMA loop)\n");
    return 2;
  }
  std::printf(
      "{\"isa\": \"%s\", \"threads\": 1, \"n_in\": %lld, \"rows\": %lld, \"tokens\": %lld,\n "
      "\"unit\": \"GFLOP/s\", \"types\": [",
      std::string(cpu::IsaName(isa)).c_str(), static_cast<long long>(kIn),
      static_cast<long long>(kRows), static_cast<long long>(tokens));
  bool first = true;
  size_t start = 0;
  while (start < types.size()) {
    size_t comma = types.find(',', start);
    if (comma == std::string::npos) comma = types.size();
    const std::string name = types.substr(start, comma - start);
    start = comma + 1;
    auto type = swarm::kernels::ParseGgmlType(name);
    if (!type.ok() || cpu::MatMulSlot(*type) < 0) {
      std::fprintf(stderr, "matmat_bench: unknown type %s\n", name.c_str());
      return 2;
    }
    const int slot = cpu::MatMulSlot(*type);
    for (bool packed : {false, true}) {
      if (packed && cpu::KernelsFor(isa).matmul_packed[slot] == nullptr) continue;
      const Figures f = Measure(isa, *type, packed, tokens, seconds);
      std::printf(
          "%s\n  {\"type\": \"%s\", \"layout\": \"%s\", \"kernel\": %.1f, \"fma_peak\": %.1f, "
          "\"fraction_of_peak\": %.3f}",
          first ? "" : ",", name.c_str(),
          !packed                    ? "gguf"
          : cpu::HasRowPanels(*type) ? "panels"
                                     : "lanes",
          f.kernel_flops / 1e9, f.fma_flops / 1e9, f.kernel_flops / f.fma_flops);
      std::fflush(stdout);
      first = false;
    }
  }
  std::printf("\n]}\n");
  return 0;
}
