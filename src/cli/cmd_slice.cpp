// `swarm slice`: writes a GGUF holding only some blocks of a model (plus all metadata), so a
// volunteer stores only the part it serves.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "model/gguf.h"
#include "model/slice.h"

namespace swarm::cli {
namespace {

struct SliceFlags {
  std::string model_path;
  std::string blocks;
  std::string out_path;
  bool with_client = false;
};

int RunSlice(const SliceFlags& flags) {
  auto range = model::ParseBlockRange(flags.blocks);
  if (!range.ok()) {
    std::fprintf(stderr, "error: --blocks: %s\n", std::string(range.status().message()).c_str());
    return 2;
  }
  auto file = model::GgufFile::Open(flags.model_path);
  if (!file.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(file.status().message()).c_str());
    return 1;
  }
  auto summary = model::WriteSlice(**file, {*range, flags.with_client}, flags.out_path);
  if (!summary.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(summary.status().message()).c_str());
    return 1;
  }
  std::printf("wrote %s: blocks [%lld, %lld)%s, %zu tensors, %.1f MiB of weights, model id %s\n",
              flags.out_path.c_str(), static_cast<long long>(range->first),
              static_cast<long long>(range->last), flags.with_client ? " with client tensors" : "",
              summary->n_tensors, static_cast<double>(summary->tensor_bytes) / (1 << 20),
              summary->model_id.c_str());
  return 0;
}

}  // namespace

void AddSliceCommand(CLI::App& app, ExitCode& exit_code) {
  auto flags = std::make_shared<SliceFlags>();
  CLI::App* cmd = app.add_subcommand("slice", "Write a GGUF holding only blocks A..B-1 of a model");
  cmd->footer(
      "The slice keeps the tensors' names (blk.N.*), every metadata key, and records its range\n"
      "(swarm.block_first/swarm.block_last, end exclusive) and the full model's id.\n"
      "Examples:\n"
      "  swarm slice -m llama.gguf --blocks 0:11 -o part0.gguf\n"
      "  swarm slice -m llama.gguf --blocks 11:22 -o part1.gguf --with-client");
  cmd->add_option("-m,--model", flags->model_path, "Source GGUF (a full model or a slice)")
      ->required();
  cmd->add_option("--blocks", flags->blocks, "Block range A:B (blocks A..B-1)")->required();
  cmd->add_option("-o,--output", flags->out_path, "Output GGUF")->required();
  cmd->add_flag("--with-client", flags->with_client,
                "Also copy token_embd, output_norm and output (what a client needs)");
  cmd->callback([flags, &exit_code] { exit_code.value = RunSlice(*flags); });
}

}  // namespace swarm::cli
