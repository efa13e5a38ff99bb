// `--device` is another name for `--backend` in `swarm generate`, `serve`, `bench` and `api`: the
// real binary with the real model gives the same text under either name, and a device it cannot
// use (an unknown name, a GPU this machine does not have) is a clear error and a non-zero exit,
// never a crash.
#include <gtest/gtest.h>

#include "cli_test_util.h"
#include "support/shared_model.h"

namespace swarm {
namespace {

using cli_test::kModel;
using cli_test::ReadFile;
using cli_test::Result;
using cli_test::RunSwarm;

TEST(DeviceFlagCliTest, DeviceGivesTheSameTextAsBackend) {
  for (const char* name : {"cpu", "reference"}) {
    const std::vector<std::string> common = {"generate", "-m", kModel,   "-p", "Once upon",
                                             "-n",       "60", "--temp", "0"};
    std::vector<std::string> with_backend = common, with_device = common;
    with_backend.insert(with_backend.end(), {"--backend", name});
    with_device.insert(with_device.end(), {"--device", name});
    Result a = RunSwarm(with_backend), b = RunSwarm(with_device);
    EXPECT_EQ(a.exit_code, 0) << a.stderr_text;
    EXPECT_EQ(b.exit_code, 0) << b.stderr_text;
    EXPECT_GT(a.stdout_text.size(), 20u) << name;
    EXPECT_EQ(a.stdout_text, b.stdout_text) << name;
  }
}

TEST(DeviceFlagCliTest, DeviceCpuGivesTheReferenceText) {
  Result r =
      RunSwarm({"generate", "-m", kModel, "-p", "", "-n", "200", "--temp", "0", "--device", "cpu"});
  EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_EQ(r.stdout_text, ReadFile(test_support::kSharedReferenceText));
}

// The command line of each subcommand with a device appended, up to the point where the backend
// is made (bench measures the machine first: a small probe buffer keeps that short).
std::vector<std::vector<std::string>> Commands(const std::string& device) {
  return {
      {"generate", "-m", kModel, "-p", "x", "-n", "4", "--device", device},
      {"bench", "-m", kModel, "-p", "8", "-n", "4", "-r", "1", "--bandwidth-mib", "64", "--device",
       device},
      {"serve", "-m", kModel, "--blocks", "0:1", "--no-dht", "--listen", "tcp://127.0.0.1:0",
       "--device", device},
  };
}

void ExpectCleanError(const Result& r, const std::string& what, const std::string& command) {
  EXPECT_NE(r.exit_code, 0) << command;
  EXPECT_LT(r.exit_code, 128) << command << ": killed by a signal";
  EXPECT_NE(r.stderr_text.find("error: "), std::string::npos) << command << ": " << r.stderr_text;
  EXPECT_NE(r.stderr_text.find(what), std::string::npos) << command << ": " << r.stderr_text;
}

TEST(DeviceFlagCliTest, UnknownDeviceIsAClearError) {
  for (const auto& args : Commands("banana")) {
    ExpectCleanError(RunSwarm(args), "unknown backend 'banana'", args[0]);
  }
}

// No machine has a hundred GPUs: without CUDA in the build, without a driver or a device, or with
// fewer GPUs, cuda:99 is an error that names CUDA. cuda:x is not a device name.
TEST(DeviceFlagCliTest, MissingOrMalformedGpuIsAClearError) {
  for (const auto& args : Commands("cuda:99")) ExpectCleanError(RunSwarm(args), "CUDA", args[0]);
  ExpectCleanError(RunSwarm(Commands("cuda:x")[0]), "CUDA", "generate");
}

// The GPU probe sizes of `swarm bench` are checked before anything runs: out of range or not a
// number is a usage error that names the flag (CLI11's message), on any machine.
TEST(DeviceFlagCliTest, BadGpuProbeSizesAreRefused) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"--gemm-n", "1"},       {"--gemm-n", "100000"},   {"--gemm-n", "many"},
      {"--gpu-copy-mib", "0"}, {"--gpu-copy-mib", "-5"}, {"--gpu-copy-mib", "1e99"}};
  for (const auto& [flag, value] : bad) {
    const Result r = RunSwarm({"bench", "-m", kModel, flag, value});
    EXPECT_NE(r.exit_code, 0) << flag << " " << value;
    EXPECT_LT(r.exit_code, 128) << flag << " " << value << ": killed by a signal";
    EXPECT_NE(r.stderr_text.find(flag), std::string::npos)
        << flag << " " << value << ": " << r.stderr_text;
  }
}

// A CPU run of `swarm bench` keeps its CPU figures and has no GPU section: the GPU figures appear
// only when the backend is a CUDA backend, and only as measured there.
TEST(DeviceFlagCliTest, BenchOnTheCpuReportsNoDeviceFigures) {
  Result r = RunSwarm({"bench", "-m", kModel, "-p", "8", "-n", "4", "-r", "1", "--bandwidth-mib",
                       "64", "-t", "1", "--device", "cpu"});
  EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
  for (const char* key : {"\"machine\"", "\"read_bandwidth_gb_per_s\"", "\"fma_peak_gflops\"",
                          "\"fraction_of_fma_peak\"", "\"fraction_of_bandwidth_bound\"",
                          "\"weights_read_gb_per_s\""}) {
    EXPECT_NE(r.stdout_text.find(key), std::string::npos) << key << " missing:\n" << r.stdout_text;
  }
  for (const char* key :
       {"\"device\"", "\"copy_bandwidth_gb_per_s\"", "\"f16_gemm_peak_gflops\"",
        "\"fraction_of_device_bandwidth_bound\"", "\"fraction_of_tensor_core_peak\""}) {
    EXPECT_EQ(r.stdout_text.find(key), std::string::npos) << key << " on a CPU run";
  }
}

}  // namespace
}  // namespace swarm
