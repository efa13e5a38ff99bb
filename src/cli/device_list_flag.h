// Parses the device list of `swarm serve --device`: one device, or several comma-separated over
// which the peer spreads its blocks ("cuda:0,cuda:1", or "cuda:0,1" for short; "cpu,cpu"). Checks
// what can be known without opening a device: no empty name, no "auto" in a list (it stands for
// one device), no GPU named twice. Whether each name is a usable backend is MakeBackend's to say.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace swarm::cli {

inline bool IsCudaDeviceName(std::string_view name) {
  return name == "cuda" || name.substr(0, 5) == "cuda:";
}

inline absl::StatusOr<std::vector<std::string>> ParseDeviceList(const std::string& text) {
  std::vector<std::string> devices;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    std::string name(absl::StripAsciiWhitespace(part));
    if (name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--device '", text, "': an empty device name (write cpu,cpu or cuda:0,1)"));
    }
    // "cuda:0,1": a bare number after a GPU is another GPU.
    if (!devices.empty() && IsCudaDeviceName(devices.back()) &&
        name.find_first_not_of("0123456789") == std::string::npos) {
      name = absl::StrCat("cuda:", name);
    }
    devices.push_back(std::move(name));
  }
  if (devices.size() == 1) return devices;
  std::vector<int> gpus;
  for (const std::string& name : devices) {
    if (name == "auto") {
      return absl::InvalidArgumentError(absl::StrCat(
          "--device '", text, "': auto stands for one device; name each device of a list"));
    }
    // cuda and cuda:0 are the same GPU. A malformed name (cuda:x) is left to MakeBackend.
    int gpu = 0;
    if (!IsCudaDeviceName(name) || (name != "cuda" && !absl::SimpleAtoi(name.substr(5), &gpu))) {
      continue;
    }
    for (int seen : gpus) {
      if (seen == gpu) {
        return absl::InvalidArgumentError(
            absl::StrCat("--device '", text, "': GPU cuda:", gpu,
                         " is named twice (each device serves its own share of the blocks)"));
      }
    }
    gpus.push_back(gpu);
  }
  return devices;
}

}  // namespace swarm::cli
