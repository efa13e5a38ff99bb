// The CUDA backend through the shared conformance harness (every operation and weight type against
// CpuReferenceBackend by NMSE), plus its construction and error paths. On a machine without a GPU
// (or without a CUDA build) the GPU tests skip with the reason; the factory tests still run and
// check that asking for a GPU there is a clear error, not a crash.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "backend_conformance.h"
#include "kernels/backend_factory.h"
#if SWARM_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

#if SWARM_HAVE_CUDA && defined(__SANITIZE_ADDRESS__)
// ASan's default shadow-gap protection makes the CUDA driver fail to initialize (it maps memory
// there); without this, a GPU machine running the sanitized suite would skip every GPU test.
extern "C" const char* __asan_default_options() { return "protect_shadow_gap=0"; }
// The driver keeps some allocations until process exit.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libcuda.so\nleak:libcudart.so\nleak:libcublas\nleak:libnccl.so\n";
}
#endif

namespace swarm::kernels {
namespace {

using testing::BackendConformanceTest;
using testing::BackendUnderTest;

#if SWARM_HAVE_CUDA

std::vector<BackendUnderTest> CudaBackendsUnderTest() {
  std::vector<BackendUnderTest> list;
  if (!CudaDeviceCount().ok()) return list;  // CudaPresence below says why
  BackendUnderTest cuda;
  cuda.name = "cuda";
  cuda.make = []() -> std::unique_ptr<Backend> {
    auto backend = CudaBackend::Create({});
    if (!backend.ok()) return nullptr;
    return std::move(*backend);
  };
  cuda.options.large_shapes = true;  // model-sized rows, prompts through cuBLAS, long contexts
  list.push_back(cuda);
  return list;
}

INSTANTIATE_TEST_SUITE_P(Cuda, BackendConformanceTest, ::testing::ValuesIn(CudaBackendsUnderTest()),
                         testing::BackendUnderTestName);

// Says, in the test log, whether the conformance tests above ran on a GPU.
TEST(CudaPresence, ConformanceRunsOnlyWithAGpu) {
  auto count = CudaDeviceCount();
  if (!count.ok()) GTEST_SKIP() << "no CUDA GPU, conformance not run: " << count.status().message();
  SUCCEED() << *count << " CUDA device(s)";
}

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto count = CudaDeviceCount();
    if (!count.ok()) GTEST_SKIP() << "no CUDA GPU: " << count.status().message();
    auto backend = CudaBackend::Create({});
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
  }
  std::unique_ptr<CudaBackend> backend_;
};

TEST_F(CudaBackendTest, DescribesItsDevice) {
  EXPECT_EQ(backend_->name(), "cuda:0");
  EXPECT_FALSE(backend_->host_memory());
  Backend& backend = *backend_;
  ASSERT_NE(backend.device_probe(), nullptr);
  const DeviceInfo& info = backend.device_probe()->device_info();
  EXPECT_FALSE(info.name.empty());
  EXPECT_GT(info.sm_count, 0);
  EXPECT_GT(info.total_memory, 0u);
}

// Graph capture and device links are reached through the Backend interface; the CPU backends
// have neither.
TEST_F(CudaBackendTest, OffersItsCapabilitiesThroughTheBackendInterface) {
  Backend& backend = *backend_;
  EXPECT_NE(backend.graph_capture(), nullptr);
  EXPECT_EQ(backend.op_profiler(), nullptr);
  auto other = CudaBackend::Create({});
  ASSERT_TRUE(other.ok()) << other.status();
  Backend* pair[] = {backend_.get(), other->get()};
  auto link = backend.OpenDeviceLink(pair);
  ASSERT_TRUE(link.ok()) << link.status();
  EXPECT_NE(*link, nullptr);
  EXPECT_FALSE((*link)->uses_nccl()) << "one device: a stream-ordered copy, not NCCL";

  auto cpu = MakeBackend(BackendOptions{"cpu", 1});
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ((*cpu)->graph_capture(), nullptr);
  EXPECT_EQ((*cpu)->device_probe(), nullptr);
  Backend* mixed[] = {backend_.get(), cpu->get()};
  auto none = backend.OpenDeviceLink(mixed);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, nullptr) << "a CPU backend among them: host memory";
}

TEST_F(CudaBackendTest, OutOfMemoryIsResourceExhaustedAndTheBackendStaysUsable) {
  auto huge = backend_->Allocate(size_t{1} << 52);  // 4 PiB
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted) << huge.status();
  EXPECT_NE(huge.status().message().find("out of memory"), std::string::npos) << huge.status();

  auto small = backend_->Allocate(1024);
  ASSERT_TRUE(small.ok()) << small.status();
  std::vector<float> in(256, 1.5f), out(256, 0.0f);
  ASSERT_TRUE(backend_->CopyToBackend((*small)->data(), in.data(), 1024).ok());
  ASSERT_TRUE(backend_->CopyToHost(out.data(), (*small)->data(), 1024).ok());
  ASSERT_TRUE(backend_->Synchronize().ok());
  EXPECT_EQ(out, in);
}

TEST_F(CudaBackendTest, AnUnsupportedShapeIsReportedBySynchronize) {
  auto buffer = backend_->Allocate(4 * 300 * 4);
  ASSERT_TRUE(buffer.ok());
  float* p = static_cast<float*>((*buffer)->data());
  const int32_t position = 0;
  backend_->Attention(p, p, p, AttentionShape{1, 1, 300}, 1, &position, p);
  const absl::Status status = backend_->Synchronize();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_TRUE(backend_->Synchronize().ok()) << "the error is reported once";
}

TEST_F(CudaBackendTest, AWeightTypeItCannotUseIsRefused) {
  std::vector<uint8_t> data(292);
  std::vector<std::unique_ptr<Buffer>> storage;
  auto w = backend_->PrepareWeight(Weight{GgmlType::kQ8_K, 256, 1, data.data()}, storage);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << w.status();
  auto partial = backend_->PrepareWeight(Weight{GgmlType::kQ4_0, 48, 1, data.data()}, storage);
  EXPECT_EQ(partial.status().code(), absl::StatusCode::kInvalidArgument) << partial.status();
  EXPECT_TRUE(storage.empty());
}

TEST_F(CudaBackendTest, ANonexistentDeviceIsAClearError) {
  CudaBackendOptions options;
  options.device = 4096;
  auto backend = CudaBackend::Create(options);
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kInvalidArgument) << backend.status();
}

TEST(CudaDeviceName, Parses) {
  EXPECT_EQ(ParseCudaDeviceName("cuda").value(), 0);
  EXPECT_EQ(ParseCudaDeviceName("cuda:3").value(), 3);
  EXPECT_FALSE(ParseCudaDeviceName("cuda:").ok());
  EXPECT_FALSE(ParseCudaDeviceName("cuda:-1").ok());
  EXPECT_FALSE(ParseCudaDeviceName("cuda:1x").ok());
  EXPECT_FALSE(ParseCudaDeviceName("gpu").ok());
}

TEST(CudaFactory, BadDeviceNameIsInvalidArgument) {
  BackendOptions options;
  options.name = "cuda:x";
  auto backend = MakeBackend(options);
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kInvalidArgument) << backend.status();
}

#else

TEST(CudaPresence, ConformanceRunsOnlyWithAGpu) {
  GTEST_SKIP() << "this build has no CUDA backend (no toolkit found at configure time)";
}

#endif  // SWARM_HAVE_CUDA

// Runs everywhere: with a GPU "cuda" is the GPU backend; without one (or without a CUDA build) it
// is an Unavailable error that says why, and "auto" falls back to a CPU backend.
TEST(CudaFactory, CudaWithoutAGpuIsAClearErrorAndAutoFallsBack) {
  BackendOptions cuda;
  cuda.name = "cuda";
  auto gpu = MakeBackend(cuda);
  BackendOptions automatic;
  automatic.name = "auto";
  auto chosen = MakeBackend(automatic);
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  if (gpu.ok()) {
    EXPECT_EQ((*gpu)->name(), "cuda:0");
    EXPECT_EQ((*chosen)->name(), "cuda:0") << "auto prefers a present GPU";
    return;
  }
  EXPECT_EQ(gpu.status().code(), absl::StatusCode::kUnavailable) << gpu.status();
  EXPECT_NE(gpu.status().message().find("CUDA"), std::string::npos) << gpu.status();
  EXPECT_TRUE((*chosen)->host_memory()) << "auto without a GPU is a CPU backend";
}

}  // namespace
}  // namespace swarm::kernels
