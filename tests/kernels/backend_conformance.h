// Backend conformance harness (the idea of llama.cpp's test-backend-ops): every operation of the
// Backend interface runs on random inputs of several shapes and every weight type, once on the
// backend under test (through its own memory: Allocate, CopyToBackend, PrepareWeight, CopyToHost)
// and once on CpuReferenceBackend; outputs are compared by normalized mean squared error
// NMSE = sum((a - b)^2) / sum(b^2) against a per-operation, per-weight-type bound.
//
// To run a new backend through it, add to its test file:
//
//   #include "backend_conformance.h"
//   INSTANTIATE_TEST_SUITE_P(Cuda, BackendConformanceTest,
//                            ::testing::Values(BackendUnderTest{"cuda", [] { return MakeCuda();
//                            }}), BackendUnderTestName);
//
// and link the test with swarm_backend_conformance (tests/kernels/CMakeLists.txt). The functions
// below can also be called directly (e.g. from a benchmark or a self-check command).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/backend.h"
#include "kernels/ggml_type.h"
#include "support/nmse.h"

namespace swarm::kernels::testing {

enum class Op {
  kMatMul,
  kAddBias,
  kGetRows,
  kRmsNorm,
  kRope,
  kSwiGlu,
  kAdd,
  kStoreKv,
  kAttention,
  kAddScaledColumns,
};
inline constexpr Op kAllOps[] = {Op::kMatMul,    Op::kAddBias,         Op::kGetRows, Op::kRmsNorm,
                                 Op::kRope,      Op::kSwiGlu,          Op::kAdd,     Op::kStoreKv,
                                 Op::kAttention, Op::kAddScaledColumns};
std::string_view OpName(Op op);

// The weight types MatMul and GetRows are checked with.
inline constexpr GgmlType kConformanceWeightTypes[] = {
    GgmlType::kF32,    GgmlType::kF16,  GgmlType::kBF16, GgmlType::kQ8_0, GgmlType::kQ4_0,
    GgmlType::kQ4_K,   GgmlType::kQ6_K, GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1,
    GgmlType::kIQ4_NL, GgmlType::kQ5_K, GgmlType::kQ2_K, GgmlType::kQ3_K, GgmlType::kIQ4_XS};

// Default NMSE bounds. Copies and single float additions must be exact (bound 0). MatMul allows
// for activations quantized to VecDotType (measured ~2e-5 to 5e-5 NMSE for Q8_0/Q8_K on these
// inputs) or rounded to f16/bf16 for float weights; the other operations allow float instead of
// double accumulation and fast exp/sin/cos; Attention is looked up with the V cache's type.
double DefaultNmseBound(Op op, GgmlType weight_type);

struct ConformanceOptions {
  uint64_t seed = 1234;
  // Elements listed per failing case (largest absolute differences first).
  int max_reported_mismatches = 5;
  // Adds larger shapes (model-sized rows, long contexts) on top of the quick default set.
  bool large_shapes = false;
  // Optional: adjusts a bound, e.g. for a backend that knowingly trades accuracy. Receives the
  // default bound; returns the bound to use.
  std::function<double(Op, GgmlType, double)> adjust_bound;
};

struct CaseResult {
  std::string op;           // OpName, or "Memory"
  std::string description;  // shape and parameters, e.g. "q4_K n_in=256 n_out=3 T=2"
  double nmse = 0;
  double bound = 0;
  bool passed = false;
  std::string details;  // the error or the worst mismatches when it failed
};

struct ConformanceReport {
  std::vector<CaseResult> cases;
  int failures() const;
  // gtest-friendly: success, or a message naming every failing case with its worst elements.
  ::testing::AssertionResult Ok() const;
};

// NMSE of `actual` against `expected` (support/nmse.h).
using test_support::Nmse;

// Runs every case of `op` on `under_test` and on a fresh CpuReferenceBackend.
ConformanceReport RunConformance(Backend& under_test, Op op,
                                 const ConformanceOptions& options = {});
// All operations, plus the memory functions (Allocate/Copy round trips).
ConformanceReport RunAllConformance(Backend& under_test, const ConformanceOptions& options = {});
// Allocate of several sizes (including 0), CopyToBackend/CopyToHost round trips, PrepareWeight.
ConformanceReport RunMemoryConformance(Backend& under_test);

// ---- gtest fixture -------------------------------------------------------------------------

struct BackendUnderTest {
  std::string name;  // a valid gtest name part: letters, digits, underscores
  std::function<std::unique_ptr<Backend>()> make;
  ConformanceOptions options = {};
};

std::string BackendUnderTestName(const ::testing::TestParamInfo<BackendUnderTest>& info);

// One test per operation (BackendConformanceTest.MatMul, .Rope, ...) and one for memory.
class BackendConformanceTest : public ::testing::TestWithParam<BackendUnderTest> {
 protected:
  void SetUp() override;
  std::unique_ptr<Backend> backend_;
};

}  // namespace swarm::kernels::testing
