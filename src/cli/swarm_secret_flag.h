// --swarm-secret FILE, shared by the subcommands that join a swarm (serve, generate, api, status,
// demo): the private swarm's secret (`swarm secret -o FILE`). Loaded before anything runs; a
// file others may read is used, with a warning.
#pragma once

#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "transport/swarm_secret.h"

namespace swarm::cli {

inline CLI::Option* AddSwarmSecretFlag(CLI::App& cmd, std::string& path) {
  return cmd.add_option("--swarm-secret", path,
                        "Private swarm: its secret file (make one with `swarm secret -o FILE`). "
                        "Peer traffic is encrypted and authenticated (CurveZMQ), the DHT is the "
                        "swarm's own and its records sealed; without the file nothing gets in");
}

// The secret at `path`; nullopt when `path` is empty (an open swarm).
inline absl::StatusOr<std::optional<transport::SwarmSecret>> LoadSwarmSecretFlag(
    const std::string& path) {
  if (path.empty()) return std::optional<transport::SwarmSecret>();
  auto secret = transport::SwarmSecret::Load(path);
  if (!secret.ok()) return secret.status();
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    std::fprintf(stderr,
                 "warning: %s can be read by other users (mode %03o); whoever reads it can join "
                 "the swarm: chmod 600 %s\n",
                 path.c_str(), static_cast<unsigned>(st.st_mode & 0777), path.c_str());
  }
  return std::optional<transport::SwarmSecret>(std::move(*secret));
}

}  // namespace swarm::cli
