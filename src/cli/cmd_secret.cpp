// `swarm secret -o FILE`: makes a new private swarm's secret (see transport::SwarmSecret), to be
// handed to every member and passed to serve, generate, api, status and demo as --swarm-secret.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "transport/swarm_secret.h"

namespace swarm::cli {
namespace {

struct SecretFlags {
  std::string output;
  bool force = false;
};

int MakeSecret(const SecretFlags& flags) {
  auto secret = transport::SwarmSecret::Generate();
  absl::Status status = secret.ok() ? secret->Save(flags.output, flags.force) : secret.status();
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  std::fprintf(stderr,
               "wrote a new swarm secret to %s (mode 0600, fingerprint %s).\n"
               "Give it, privately, to every member of the swarm and pass --swarm-secret %s to\n"
               "serve, generate, api, status and demo. Whoever holds it can join the swarm.\n",
               flags.output.c_str(), secret->Fingerprint().c_str(), flags.output.c_str());
  return 0;
}

}  // namespace

void AddSecretCommand(CLI::App& app, ExitCode& exit_code) {
  auto flags = std::make_shared<SecretFlags>();
  CLI::App* cmd = app.add_subcommand("secret", "Make a new private swarm's secret");
  cmd->footer(
      "A private swarm's members hold the same secret file: their peer traffic is encrypted and\n"
      "authenticated (CurveZMQ), their DHT is separate and its records sealed; a process without\n"
      "the file can neither join, read nor generate.\n"
      "Examples:\n"
      "  swarm secret -o swarm.secret\n"
      "  swarm serve -m stories260K.gguf --num-blocks 2 --swarm-secret swarm.secret\n"
      "  swarm generate -m stories260K.gguf --initial-peers 127.0.0.1:4000 --swarm-secret "
      "swarm.secret -p \"Once\"");
  cmd->add_option("-o,--output", flags->output, "File to write (created with mode 0600)")
      ->required();
  cmd->add_flag("--force", flags->force, "Replace an existing file");
  cmd->callback([flags, &exit_code] { exit_code.value = MakeSecret(*flags); });
}

}  // namespace swarm::cli
