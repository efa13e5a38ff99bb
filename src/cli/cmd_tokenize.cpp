// `swarm tokenize`: prints the token ids of the text on stdin, as the model's tokenizer (from the
// GGUF's tokenizer.ggml.* metadata) encodes it. Useful to compare with llama.cpp's tokenizer.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "model/gguf.h"
#include "model/tokenizer.h"

namespace swarm::cli {
namespace {

struct TokenizeFlags {
  std::string model_path;
  bool add_bos = false;
  bool parse_special = false;
};

int RunTokenize(const TokenizeFlags& flags) {
  auto file = model::GgufFile::Open(flags.model_path);
  if (!file.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(file.status().message()).c_str());
    return 1;
  }
  auto tokenizer = model::Tokenizer::FromGguf(**file);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(tokenizer.status().message()).c_str());
    return 1;
  }
  std::ios::sync_with_stdio(false);
  const std::string text((std::istreambuf_iterator<char>(std::cin)),
                         std::istreambuf_iterator<char>());
  if (std::cin.bad()) {
    std::fprintf(stderr, "error: cannot read stdin\n");
    return 1;
  }
  if (flags.add_bos && (*tokenizer)->bos_id() < 0) {
    std::fprintf(stderr, "error: --add-bos: the vocabulary has no BOS token\n");
    return 1;
  }
  const std::vector<int32_t> ids = (*tokenizer)->Encode(text, flags.add_bos, flags.parse_special);
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) line += ' ';
    line += std::to_string(ids[i]);
  }
  line += '\n';
  if (std::fwrite(line.data(), 1, line.size(), stdout) != line.size() || std::fflush(stdout) != 0) {
    std::fprintf(stderr, "error: cannot write stdout\n");
    return 1;
  }
  return 0;
}

}  // namespace

void AddTokenizeCommand(CLI::App& app, ExitCode& exit_code) {
  auto flags = std::make_shared<TokenizeFlags>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize", "Print the token ids of all of stdin's text, space-separated on one line");
  cmd->footer(
      "Examples:\n"
      "  printf 'Hello world' | swarm tokenize -m stories260K.gguf\n"
      "  swarm tokenize -m model.gguf --add-bos --parse-special < prompt.txt\n");
  cmd->add_option("-m,--model", flags->model_path, "GGUF file holding the tokenizer")->required();
  cmd->add_flag("--add-bos", flags->add_bos, "Start with the BOS token (not added by default)");
  cmd->add_flag("--parse-special", flags->parse_special,
                "Turn special-token text such as <|im_start|> or </s> into its token id");
  cmd->callback([flags, &exit_code] { exit_code.value = RunTokenize(*flags); });
}

}  // namespace swarm::cli
