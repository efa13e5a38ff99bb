// `swarm generate`: text generation, streamed to stdout. Without peers every block runs in-process
// (the reference the swarm must match).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/cache_type_flags.h"
#include "cli/chain_client.h"
#include "cli/commands.h"
#include "cli/draft_flags.h"
#include "cli/model_source.h"
#include "cli/sampling_flags.h"
#include "model/generator.h"
#include "model/speculative_generator.h"
#include "shard/local_model.h"
#include "shard/speculation.h"

namespace swarm::cli {
namespace {

struct GenerateFlags {
  std::string model_path;
  ModelSourceFlags source;  // -m URL / --model-url: the client part (all of it in process)
  std::string prompt;
  int64_t n_predict = 128;
  model::SamplingParams sampling;
  kernels::BackendOptions backend;
  int64_t context = 0;
  bool ignore_eos = false;
  ChainFlags chain;            // where the blocks run
  CacheTypeFlags cache_types;  // in-process blocks' KV caches
  shard::SpeculationFlags draft;
};

int RunGenerate(const GenerateFlags& flags) {
  if (auto status = flags.sampling.Validate(); !status.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    return 2;
  }
  const auto load_start = std::chrono::steady_clock::now();
  // With peers the client holds only the embeddings, output norm, head and tokenizer.
  const bool in_process = flags.chain.in_process();
  auto swarm_secret = LoadChainSecret(flags.chain);
  if (!swarm_secret.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(swarm_secret.status().message()).c_str());
    return flags.chain.in_process() ? 2 : 1;  // 2: a secret without peers; 1: an unusable file
  }
  auto model_path = ResolveClientModel(flags.source, flags.model_path, in_process);
  if (!model_path.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(model_path.status().message()).c_str());
    return 1;
  }
  auto local =
      shard::LocalModel::Load(*model_path, flags.backend, in_process, flags.cache_types.Types());
  if (!local.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(local.status().message()).c_str());
    return 1;
  }
  shard::LocalModel& m = **local;
  auto speculation = shard::Speculation::Create(flags.draft, *m.tokenizer, flags.backend);
  if (!speculation.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(speculation.status().message()).c_str());
    return speculation.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  const double load_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();

  std::vector<int32_t> prompt;
  if (m.tokenizer->add_bos() && m.tokenizer->bos_id() >= 0) prompt.push_back(m.tokenizer->bos_id());
  for (int32_t id : m.tokenizer->Encode(flags.prompt, false, false)) prompt.push_back(id);
  if (prompt.empty()) {
    std::fprintf(stderr, "error: the prompt is empty and the model has no BOS token\n");
    return 2;
  }
  const int64_t context =
      flags.context > 0 ? flags.context : static_cast<int64_t>(prompt.size()) + flags.n_predict;
  if (static_cast<int64_t>(prompt.size()) + flags.n_predict > context) {
    std::fprintf(stderr, "error: prompt (%zu tokens) + -n %lld exceeds the context of %lld\n",
                 prompt.size(), static_cast<long long>(flags.n_predict),
                 static_cast<long long>(context));
    return 2;
  }
  zmq::context_t zmq_context(1);
  SwarmClient swarm_client;
  auto opened = OpenBlocks(zmq_context, flags.chain, m, context, *swarm_secret, swarm_client);
  if (!opened.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(opened.status().message()).c_str());
    return 1;
  }
  model::BlockPipeline& pipeline = *opened->pipeline;
  model::Sampler sampler(flags.sampling);
  // SPM drops the space before the first word only when the text starts right after BOS.
  const bool at_start = prompt.size() == 1 && prompt[0] == m.tokenizer->bos_id();
  model::StreamingDecoder decoder(*m.tokenizer, at_start);
  model::GenerateOptions options;
  options.max_new_tokens = flags.n_predict;
  options.stop_at_end_of_generation = !flags.ignore_eos;
  auto print = [&](int32_t token) {
    const std::string text = decoder.Push(token);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return true;
  };
  absl::StatusOr<model::GenerationStats> stats;
  model::SpeculativeStats speculative;
  std::unique_ptr<model::Drafter> drafter;
  if (*speculation != nullptr) {
    auto made = (*speculation)->NewDrafter(flags.sampling, context);
    if (!made.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(made.status().message()).c_str());
      return 1;
    }
    drafter = std::move(*made);
    // Verification rolls back the blocks after a rejection: a chain without it decodes plainly.
    if (!pipeline.Rollback(0).ok()) {
      std::fprintf(stderr, "speculative: these blocks cannot roll back: decoding plainly\n");
      drafter.reset();
    }
  }
  if (drafter != nullptr) {
    stats =
        model::GenerateSpeculative(prompt, options, (*speculation)->options(), *m.head, pipeline,
                                   sampler, *m.tokenizer, *drafter, print, &speculative);
  } else {
    stats = model::Generate(prompt, options, *m.head, pipeline, sampler, *m.tokenizer, print);
  }
  // The text ends with a newline, as llama2.c's and llama.cpp's command-line tools end theirs.
  const std::string tail = decoder.Finish() + "\n";
  std::fwrite(tail.data(), 1, tail.size(), stdout);
  std::fflush(stdout);
  if (!stats.ok()) {
    std::fprintf(stderr, "\nerror: %s\n", std::string(stats.status().message()).c_str());
    return 1;
  }
  std::fprintf(stderr,
               "load: %.3f s | prompt: %lld tokens, %.2f tokens/s | generation: %lld tokens, "
               "%.2f tokens/s | backend %s\n",
               load_seconds, static_cast<long long>(stats->prompt_tokens),
               stats->prompt_seconds > 0 ? stats->prompt_tokens / stats->prompt_seconds : 0.0,
               static_cast<long long>(stats->generated_tokens),
               stats->generation_seconds > 0
                   ? (stats->generated_tokens - 1) / stats->generation_seconds
                   : 0.0,
               m.backend->name().c_str());
  if (drafter != nullptr) {
    std::fprintf(stderr, "%s%s\n", model::SpeculativeSummary(speculative).c_str(),
                 opened->chain != nullptr ? ChainSpeculationSummary(*opened->chain).c_str() : "");
  }
  if (opened->chain != nullptr) PrintChainReport(*opened->chain);
  return 0;
}

}  // namespace

void AddGenerateCommand(CLI::App& app, ExitCode& exit_code) {
  auto flags = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text from a prompt, streamed to stdout");
  cmd->footer(
      "Examples:\n"
      "  swarm generate -m stories260K.gguf -p \"Once upon a time\" -n 64\n"
      "  swarm generate -m stories260K.gguf -p \"\" -n 200 --temp 0   # BOS only, greedy\n"
      "  swarm generate -m stories260K.gguf --peers tcp://127.0.0.1:5001,tcp://127.0.0.1:5002 "
      "-p \"Once\"\n"
      "  swarm generate -m stories260K.gguf -p \"Once\" --draft lookup   # speculative decoding");
  cmd->add_option("-m,--model", flags->model_path,
                  "Model GGUF file, or an http:// URL (as --model-url)");
  AddModelSourceFlags(*cmd, flags->source);
  cmd->add_option("-p,--prompt", flags->prompt, "Prompt text (\"\" = BOS alone)");
  cmd->add_option("-n,--n-predict", flags->n_predict, "Tokens to generate")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("-c,--ctx-size", flags->context, "Context length (0 = prompt + n)");
  cmd->add_flag("--ignore-eos", flags->ignore_eos, "Keep generating past end-of-text tokens");
  cmd->add_option("--backend,--device", flags->backend.name,
                  "Backend, alias --device: auto (GPU 0 if usable, else cpu), cpu, cpu:generic, "
                  "cpu:avx2, cpu:avx512, reference, cuda (= cuda:0), cuda:N")
      ->capture_default_str();
  cmd->add_option("-t,--threads", flags->backend.threads, "CPU threads (0 = physical cores)");
  AddChainFlags(*cmd, flags->chain);
  AddSamplingFlags(*cmd, flags->sampling);
  AddCacheTypeFlags(*cmd, flags->cache_types);
  AddDraftFlags(*cmd, flags->draft);
  cmd->callback([flags, &exit_code] { exit_code.value = RunGenerate(*flags); });
}

}  // namespace swarm::cli
