// `swarm manifest`: the integrity manifest of a whole local model file (BLAKE2b of its header and
// of each tensor), printed as JSON; peers that download the model from a mirror check every
// tensor they fetch against it (--manifest).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "peer/tensor_manifest.h"

namespace swarm::cli {

void AddManifestCommand(CLI::App& app, ExitCode& exit_code) {
  auto path = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "manifest", "Print the tensor hashes of a model file (for --manifest of a download)");
  cmd->footer(
      "Examples:\n"
      "  swarm manifest model.gguf > model.gguf.manifest.json\n"
      "  swarm serve --model-url http://host/model.gguf --manifest model.gguf.manifest.json");
  cmd->add_option("file", *path, "The whole model GGUF")->required();
  cmd->callback([path, &exit_code] {
    auto manifest = peer::TensorManifest::Compute(*path);
    if (!manifest.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(manifest.status().message()).c_str());
      exit_code.value = 1;
      return;
    }
    const std::string json = manifest->ToJson();
    std::fwrite(json.data(), 1, json.size(), stdout);
    std::fprintf(stderr, "manifest: %zu tensors, digest %s\n", manifest->tensors.size(),
                 manifest->Digest().c_str());
  });
}

}  // namespace swarm::cli
