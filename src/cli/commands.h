// Subcommands of the `swarm` binary. Each Add*Command registers its flags on `app` and a callback
// that builds the components it needs; main() lists them all (no global registry).
#pragma once

namespace CLI {
class App;
}

namespace swarm::cli {

// Exit code a subcommand callback stores for main() to return.
struct ExitCode {
  int value = 0;
};

// One line per subcommand (cmd_NAME.cpp).
void AddGenerateCommand(CLI::App& app, ExitCode& exit_code);
void AddBenchCommand(CLI::App& app, ExitCode& exit_code);
void AddServeCommand(CLI::App& app, ExitCode& exit_code);
void AddApiCommand(CLI::App& app, ExitCode& exit_code);
void AddStatusCommand(CLI::App& app, ExitCode& exit_code);
void AddTokenizeCommand(CLI::App& app, ExitCode& exit_code);
void AddInspectCommand(CLI::App& app, ExitCode& exit_code);
void AddSliceCommand(CLI::App& app, ExitCode& exit_code);
void AddMakeModelCommand(CLI::App& app, ExitCode& exit_code);
void AddLinkEmulatorCommand(CLI::App& app, ExitCode& exit_code);
void AddDemoCommand(CLI::App& app, ExitCode& exit_code);
void AddSecretCommand(CLI::App& app, ExitCode& exit_code);
void AddPerplexityCommand(CLI::App& app, ExitCode& exit_code);
void AddChatCommand(CLI::App& app, ExitCode& exit_code);
void AddQuantizeCommand(CLI::App& app, ExitCode& exit_code);
void AddManifestCommand(CLI::App& app, ExitCode& exit_code);

}  // namespace swarm::cli
