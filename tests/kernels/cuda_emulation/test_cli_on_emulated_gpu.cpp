// `swarm generate` and `swarm bench` in-process on an emulated GPU (`swarm_emulated_gpu`, the
// `swarm` binary linked with the emulated GPU of this folder): the CLI's GPU paths run end to end
// without a GPU. The bench's figures here are the emulator's and mean nothing about a GPU; the test
// checks that every GPU field is produced, not its value.
#include <nlohmann/json.hpp>

#include "cli_test_util.h"
#include "support/shared_model.h"

namespace swarm::cli_test {
namespace {

TEST(CliOnEmulatedGpu, GenerateOnTheGpuGivesTheReferenceBeginning) {
  const Result r =
      RunSwarm({"generate", "-m", kModel, "-p", "", "-n", "40", "--temp", "0", "--device", "cuda"},
               SWARM_EMULATED_GPU_BINARY);
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  std::string text = r.stdout_text;
  ASSERT_FALSE(text.empty());
  text.pop_back();  // the final newline
  EXPECT_GT(text.size(), 100u);
  EXPECT_EQ(text, ReadFile(test_support::kSharedReferenceText).substr(0, text.size()));
}

TEST(CliOnEmulatedGpu, BenchReportsTheDeviceAndTheFractionsOfItsLimits) {
  const Result r = RunSwarm(
      {"bench", "-m", kModel, "--device", "cuda:0", "-p", "20", "-n", "4", "-r", "1",
       "--bandwidth-mib", "64", "--gpu-copy-mib", "4", "--gemm-n", "128", "--long-context", "0"},
      SWARM_EMULATED_GPU_BINARY);
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  const nlohmann::json j =
      nlohmann::json::parse(r.stdout_text, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << r.stdout_text;
  ASSERT_TRUE(j.contains("device")) << j.dump(2);
  EXPECT_EQ(j["device"]["backend"], "cuda:0");
  EXPECT_EQ(j["device"]["f16_gemm_n"], 128);
  EXPECT_GT(j["device"].value("copy_bandwidth_gb_per_s", 0.0), 0.0) << j.dump(2);
  EXPECT_GT(j["device"].value("f16_gemm_peak_gflops", 0.0), 0.0) << j.dump(2);
  EXPECT_TRUE(j["prompt"].contains("fraction_of_tensor_core_peak")) << j.dump(2);
  EXPECT_TRUE(j["generation"].contains("fraction_of_device_bandwidth_bound")) << j.dump(2);
}

}  // namespace
}  // namespace swarm::cli_test
