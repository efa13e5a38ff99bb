// Helpers shared by the optimized CPU backend's tests: the instruction-set levels this processor
// runs, a backend per level, random weight rows, bit-for-bit comparison, and the check that a
// backend refuses a weight in a layout it has no kernel for.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/quant_reference.h"

namespace swarm::kernels::testing {

inline std::vector<cpu::Isa> AvailableIsas() {
  const cpu::CpuFeatures features = cpu::DetectCpuFeatures();
  std::vector<cpu::Isa> isas;
  for (cpu::Isa isa : {cpu::Isa::kGeneric, cpu::Isa::kAvx2, cpu::Isa::kAvx512}) {
    if (cpu::IsaSupported(isa, features)) isas.push_back(isa);
  }
  return isas;
}

inline std::unique_ptr<cpu::CpuBackend> MakeCpu(cpu::Isa isa, int threads) {
  cpu::CpuBackendOptions options;
  options.isa = isa;
  options.threads = threads;
  auto backend = cpu::CpuBackend::Create(options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? std::move(*backend) : nullptr;
}

inline bool BitIdentical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// n_out rows of n_in values drawn from N(0, 0.5), stored as `type` (GGUF rows).
inline std::vector<uint8_t> RandomRows(std::mt19937& rng, GgmlType type, int64_t n_in,
                                       int64_t n_out) {
  std::normal_distribution<float> normal(0.0f, 0.5f);
  std::vector<float> values(static_cast<size_t>(n_in));
  const size_t row_bytes = RowBytes(type, n_in).value();
  std::vector<uint8_t> bytes(row_bytes * n_out);
  for (int64_t r = 0; r < n_out; ++r) {
    for (float& v : values) v = normal(rng);
    QuantizeRow(type, values.data(), bytes.data() + r * row_bytes, n_in);
  }
  return bytes;
}

// The generic backend (no kernels for the CPU layouts) refuses a `type` weight said to be in
// `layout` with InvalidArgument naming the layout (`phrase`), rather than misreading it.
inline void ExpectGenericRefuses(GgmlType type, WeightLayout layout, const std::string& phrase) {
  auto generic = MakeCpu(cpu::Isa::kGeneric, 1);
  ASSERT_NE(generic, nullptr);
  constexpr int64_t kIn = 512, kOut = 64;
  std::vector<uint8_t> bytes(RowBytes(type, kIn).value() * kOut);
  Weight w{type, kIn, kOut, bytes.data()};
  w.layout = layout;
  std::vector<std::unique_ptr<Buffer>> storage;
  auto prepared = generic->PrepareWeight(w, storage);
  ASSERT_FALSE(prepared.ok());
  EXPECT_EQ(prepared.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(prepared.status().message().find(phrase), std::string::npos) << prepared.status();
}

}  // namespace swarm::kernels::testing
