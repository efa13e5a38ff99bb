// The `swarm` binary: one subcommand per user task (see README).
#include <CLI/CLI.hpp>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"swarm: run large language models collectively across volunteer peers"};
  app.require_subcommand(1);
  swarm::cli::ExitCode exit_code;
  // One line per subcommand.
  swarm::cli::AddGenerateCommand(app, exit_code);
  swarm::cli::AddBenchCommand(app, exit_code);
  swarm::cli::AddServeCommand(app, exit_code);
  swarm::cli::AddApiCommand(app, exit_code);
  swarm::cli::AddStatusCommand(app, exit_code);
  swarm::cli::AddTokenizeCommand(app, exit_code);
  swarm::cli::AddInspectCommand(app, exit_code);
  swarm::cli::AddSliceCommand(app, exit_code);
  swarm::cli::AddMakeModelCommand(app, exit_code);
  swarm::cli::AddLinkEmulatorCommand(app, exit_code);
  swarm::cli::AddDemoCommand(app, exit_code);
  swarm::cli::AddSecretCommand(app, exit_code);
  swarm::cli::AddPerplexityCommand(app, exit_code);
  swarm::cli::AddChatCommand(app, exit_code);
  swarm::cli::AddQuantizeCommand(app, exit_code);
  swarm::cli::AddManifestCommand(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return exit_code.value;
}
