// `swarm serve --device A,B,...` spreads a peer's blocks over several devices. A list it cannot
// serve from (an empty name, auto in a list, a GPU named twice, an unknown or missing device, more
// devices than blocks) is a clear error and a non-zero exit before the peer listens, never a crash.
// The list itself (ParseDeviceList) is checked here too; serving over a list is in
// tests/chain/test_chain_multi_device.cpp.
#include <gtest/gtest.h>

#include "cli/device_list_flag.h"
#include "cli_test_util.h"

namespace swarm {
namespace {

using cli_test::kModel;
using cli_test::Result;
using cli_test::RunSwarm;

using Devices = std::vector<std::string>;

TEST(DeviceListTest, OneOrSeveralDevices) {
  EXPECT_EQ(cli::ParseDeviceList("cpu").value(), Devices({"cpu"}));
  EXPECT_EQ(cli::ParseDeviceList("auto").value(), Devices({"auto"}));
  EXPECT_EQ(cli::ParseDeviceList("cpu,cpu").value(), Devices({"cpu", "cpu"}));
  EXPECT_EQ(cli::ParseDeviceList(" cpu:avx2 , reference").value(),
            Devices({"cpu:avx2", "reference"}));
  EXPECT_EQ(cli::ParseDeviceList("cuda:0,cuda:1").value(), Devices({"cuda:0", "cuda:1"}));
  // A bare number after a GPU is another GPU.
  EXPECT_EQ(cli::ParseDeviceList("cuda:0,1,3").value(), Devices({"cuda:0", "cuda:1", "cuda:3"}));
  EXPECT_EQ(cli::ParseDeviceList("cuda,2").value(), Devices({"cuda", "cuda:2"}));
  EXPECT_EQ(cli::ParseDeviceList("cuda:1,cpu").value(), Devices({"cuda:1", "cpu"}));
}

TEST(DeviceListTest, RefusesWhatNoPeerCanServe) {
  for (const char* text : {"", "cpu,", ",cpu", "cpu,,cpu"}) {
    auto parsed = cli::ParseDeviceList(text);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(parsed.status().message().find("empty device name"), std::string::npos) << text;
  }
  for (const char* text : {"auto,cpu", "cpu,auto"}) {
    auto parsed = cli::ParseDeviceList(text);
    EXPECT_NE(parsed.status().message().find("auto stands for one device"), std::string::npos)
        << text << ": " << parsed.status();
  }
  for (const char* text : {"cuda:0,cuda:0", "cuda,cuda:0", "cuda:0,0", "cuda:1,cpu,cuda:1"}) {
    auto parsed = cli::ParseDeviceList(text);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(parsed.status().message().find("named twice"), std::string::npos)
        << text << ": " << parsed.status();
  }
}

Result Serve(const std::string& blocks, const std::string& devices) {
  return RunSwarm({"serve", "-m", kModel, "--blocks", blocks, "--no-dht", "--listen",
                   "tcp://127.0.0.1:0", "-t", "1", "--device", devices});
}

void ExpectCleanError(const Result& r, const std::string& what, const std::string& devices) {
  EXPECT_NE(r.exit_code, 0) << devices;
  EXPECT_LT(r.exit_code, 128) << devices << ": killed by a signal";
  EXPECT_EQ(r.stdout_text.find("listening on"), std::string::npos) << devices << ": it served";
  EXPECT_NE(r.stderr_text.find("error: "), std::string::npos) << devices << ": " << r.stderr_text;
  EXPECT_NE(r.stderr_text.find(what), std::string::npos) << devices << ": " << r.stderr_text;
}

TEST(ServeDevicesCliTest, BadListsAreClearErrors) {
  ExpectCleanError(Serve("0:5", "cpu,,cpu"), "empty device name", "cpu,,cpu");
  ExpectCleanError(Serve("0:5", "auto,cpu"), "auto stands for one device", "auto,cpu");
  ExpectCleanError(Serve("0:5", "cpu,banana"), "unknown backend 'banana'", "cpu,banana");
  // Named twice is refused before any GPU is opened, so on any machine.
  for (const char* devices : {"cuda:0,cuda:0", "cuda:0,0", "cuda,cuda:0"}) {
    ExpectCleanError(Serve("0:5", devices), "named twice", devices);
  }
}

TEST(ServeDevicesCliTest, MoreDevicesThanBlocksIsAClearError) {
  ExpectCleanError(Serve("0:5", "cpu,cpu,cpu,cpu,cpu,cpu"),
                   "6 devices for blocks [0, 5), 5 blocks: each device needs at least one block",
                   "six CPUs");
  ExpectCleanError(Serve("2:3", "cpu,reference"), "2 devices for blocks [2, 3), 1 block",
                   "two for one");
}

// No machine has GPUs 98 and 99: without CUDA in the build, without a driver or a device, or with
// fewer GPUs, the list is an error that names CUDA.
TEST(ServeDevicesCliTest, MissingGpusAreAClearError) {
  ExpectCleanError(Serve("0:5", "cuda:98,cuda:99"), "CUDA", "cuda:98,cuda:99");
  ExpectCleanError(Serve("0:5", "cpu,cuda:99"), "CUDA", "cpu,cuda:99");
}

}  // namespace
}  // namespace swarm
