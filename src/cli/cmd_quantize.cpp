// `swarm quantize IN.gguf OUT.gguf TYPE`: an F32/F16/BF16 model quantized with llama.cpp's schemes
// (Q4_K_M, Q8_0, ...), one line per tensor on stderr.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "model/quant_mixture.h"
#include "model/quantize.h"

namespace swarm::cli {
namespace {

struct QuantizeFlags {
  std::string in_path;
  std::string out_path;
  std::string type;
  int threads = 0;
  bool quiet = false;
};

int RunQuantize(const QuantizeFlags& flags) {
  model::QuantizeOptions options;
  options.scheme = flags.type;
  options.threads = flags.threads;
  if (!flags.quiet) {
    options.progress = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  }
  // Exit 2: TYPE is not a scheme, or needs a type this build cannot write; 1: the files.
  if (auto scheme = model::ParseQuantScheme(flags.type); !scheme.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(scheme.status().message()).c_str());
    return 2;
  }
  auto report = model::QuantizeModel(flags.in_path, flags.out_path, options);
  if (!report.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(report.status().message()).c_str());
    return absl::IsUnimplemented(report.status()) ? 2 : 1;
  }
  int fallbacks = 0;
  for (const model::QuantizedTensor& t : report->tensors) fallbacks += !t.fallback.empty();
  std::fprintf(stderr, "%s: %zu tensors, %.2f MiB -> %.2f MiB%s\n", flags.out_path.c_str(),
               report->tensors.size(), report->bytes_in / 1048576.0, report->bytes_out / 1048576.0,
               fallbacks > 0 ? (", " + std::to_string(fallbacks) + " fallbacks").c_str() : "");
  return 0;
}

}  // namespace

void AddQuantizeCommand(CLI::App& app, ExitCode& exit_code) {
  auto flags = std::make_shared<QuantizeFlags>();
  CLI::App* cmd = app.add_subcommand(
      "quantize", "Quantize an F32/F16/BF16 GGUF model (llama.cpp's schemes, e.g. Q4_K_M)");
  cmd->footer("TYPE: " + model::QuantSchemeNames() +
              ".\nA scheme gives each matrix llama.cpp's type for it (llama-quantize's rules: "
              "more bits for the output matrix and some attn_v / ffn_down layers); Q3_K, Q4_K "
              "and Q5_K are aliases of Q3_K_M, Q4_K_M and Q5_K_M, as in llama-quantize. 1-D "
              "tensors keep their type.\n"
              "Example:\n  swarm quantize model-f16.gguf model-q4_k_m.gguf Q4_K_M");
  cmd->add_option("IN", flags->in_path, "Source GGUF (F32, F16 or BF16 matrices)")->required();
  cmd->add_option("OUT", flags->out_path, "Output GGUF")->required();
  cmd->add_option("TYPE", flags->type, "Quantization scheme or type")->required();
  cmd->add_option("-t,--threads", flags->threads, "Worker threads (0 = all hardware threads)")
      ->check(CLI::Range(0, 1024));
  cmd->add_flag("-q,--quiet", flags->quiet, "No line per tensor");
  cmd->callback([flags, &exit_code] { exit_code.value = RunQuantize(*flags); });
}

}  // namespace swarm::cli
