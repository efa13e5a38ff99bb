// `swarm perplexity`: a model's perplexity on a text, computed as llama.cpp's llama-perplexity
// computes it, so that a quantized model or a swarm can be checked against a reference. In-process
// without peers; with --initial-peers every chunk runs through a chain of the swarm's peers.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "cli/cache_type_flags.h"
#include "cli/chain_client.h"
#include "cli/commands.h"
#include "gateway/completion_engine.h"
#include "gateway/local_engine.h"
#include "gateway/swarm_engine.h"

namespace swarm::cli {
namespace {

struct PerplexityFlags {
  std::string model_path;
  std::string text_path;
  int64_t context = 512;
  int64_t batch = 2048;
  int64_t chunks = -1;  // -1: all
  kernels::BackendOptions backend;
  ChainFlags chain;  // the peer flags of generate and chat
  CacheTypeFlags cache_types;
};

absl::StatusOr<std::unique_ptr<gateway::CompletionEngine>> MakeEngine(
    const PerplexityFlags& flags) {
  const ChainFlags& chain = flags.chain;
  if (!chain.peers.empty()) {
    // Scoring runs on the gateway's swarm engine, which routes through the DHT only.
    return absl::InvalidArgumentError(
        "perplexity runs through the swarm's DHT: give --initial-peers instead of --peers");
  }
  auto swarm_secret = LoadChainSecret(chain);
  if (!swarm_secret.ok()) return swarm_secret.status();
  if (chain.in_process()) {
    gateway::LocalEngineOptions options;
    options.backend = flags.backend;
    options.n_ctx = static_cast<int32_t>(flags.context);
    options.kv_types = flags.cache_types.Types();
    auto engine = gateway::LocalEngine::Load(flags.model_path, options);
    if (!engine.ok()) return engine.status();
    return std::unique_ptr<gateway::CompletionEngine>(std::move(*engine));
  }
  gateway::SwarmEngineOptions options;
  options.initial_peers = chain.initial_peers;
  options.dht_bind = chain.dht_bind;
  options.backend = flags.backend;
  options.codec = chain.codec;
  options.n_ctx = static_cast<int32_t>(flags.context);
  options.route_wait_s = chain.route_wait_s;
  options.min_step_timeout_ms = chain.min_step_timeout_ms;
  options.max_step_timeout_ms = chain.max_step_timeout_ms;
  options.swarm_secret = std::move(*swarm_secret);
  options.verify_share = chain.verify_share;
  options.verify_tolerance = chain.verify_tolerance;
  auto engine = gateway::SwarmEngine::Create(flags.model_path, options);
  if (!engine.ok()) return engine.status();
  return std::unique_ptr<gateway::CompletionEngine>(std::move(*engine));
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
  return 1;
}

int RunPerplexity(const PerplexityFlags& flags) {
  std::ifstream in(flags.text_path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "error: cannot read %s\n", flags.text_path.c_str());
    return 1;
  }
  std::stringstream text;
  text << in.rdbuf();
  auto engine = MakeEngine(flags);
  if (!engine.ok()) return Fail(engine.status());
  const model::Tokenizer& tokenizer = (*engine)->tokenizer();

  // As llama-perplexity: the whole text tokenized once (with BOS when the model wants one), cut
  // into chunks of n_ctx tokens, each evaluated on an empty cache with its first token replaced by
  // BOS; only the second half of each chunk is scored, so every scored token has at least n_ctx/2
  // tokens of context.
  const bool add_bos = tokenizer.add_bos() && tokenizer.bos_id() >= 0;
  std::vector<int32_t> tokens = tokenizer.Encode(text.str(), add_bos, /*parse_special=*/false);
  const int64_t n_ctx = flags.context;
  if (static_cast<int64_t>(tokens.size()) < 2 * n_ctx) {
    std::fprintf(stderr,
                 "error: you need at least %lld tokens to evaluate perplexity with a context of "
                 "%lld; %s tokenizes to only %zu tokens\n",
                 static_cast<long long>(2 * n_ctx), static_cast<long long>(n_ctx),
                 flags.text_path.c_str(), tokens.size());
    return 1;
  }
  int64_t n_chunk = static_cast<int64_t>(tokens.size()) / n_ctx;
  if (flags.chunks >= 0) n_chunk = std::min(n_chunk, flags.chunks);
  if (n_chunk == 0) {
    std::fprintf(stderr, "error: --chunks 0 leaves nothing to evaluate\n");
    return 2;
  }
  const int64_t batch = std::min(flags.batch, n_ctx);
  const int64_t first = n_ctx / 2;
  std::fprintf(stderr,
               "perplexity: %zu tokens, calculating perplexity over %lld chunks, n_ctx=%lld, "
               "batch_size=%lld, %s\n",
               tokens.size(), static_cast<long long>(n_chunk), static_cast<long long>(n_ctx),
               static_cast<long long>(batch),
               flags.chain.in_process() ? "in-process" : "through the swarm");

  double nll = 0;   // sum of -log p over the scored tokens
  double nll2 = 0;  // sum of (log p)^2
  int64_t count = 0;
  for (int64_t i = 0; i < n_chunk; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    gateway::ScoreRequest request;
    request.tokens.assign(tokens.begin() + i * n_ctx, tokens.begin() + (i + 1) * n_ctx);
    if (add_bos) request.tokens[0] = tokenizer.bos_id();
    // Positions first .. n_ctx-2 predict tokens first+1 .. n_ctx-1.
    request.options.first = first + 1;
    request.options.batch = batch;
    request.request_id = absl::StrCat("perplexity-", i);
    auto scored = (*engine)->Score(request);
    if (!scored.ok()) {
      std::fprintf(stdout, "\n");
      return Fail(scored.status());
    }
    for (const model::TokenLogprob& t : *scored) {
      nll -= t.logprob;
      nll2 += t.logprob * t.logprob;
    }
    count += static_cast<int64_t>(scored->size());
    if (i == 0) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "perplexity: %.2f seconds per pass - ETA %.2f minutes\n", s,
                   s * static_cast<double>(n_chunk) / 60.0);
    }
    std::fprintf(stdout, "[%lld]%.4f,", static_cast<long long>(i + 1), std::exp(nll / count));
    std::fflush(stdout);
  }
  std::fprintf(stdout, "\n");
  const double mean = nll / count;
  const double ppl = std::exp(mean);
  const double variance = nll2 / count - mean * mean;
  if (variance > 0 && count > 1) {
    // The standard error of the mean log-probability, carried to the perplexity.
    const double error = std::sqrt(variance / static_cast<double>(count - 1));
    std::fprintf(stdout, "Final estimate: PPL = %.4f +/- %.5f\n", ppl, error * ppl);
  } else {
    std::fprintf(stdout, "Final estimate: PPL = %.4f\n", ppl);
    std::fprintf(stderr, "Unexpected negative standard deviation of log(prob)\n");
  }
  return 0;
}

}  // namespace

void AddPerplexityCommand(CLI::App& app, ExitCode& exit_code) {
  auto flags = std::make_shared<PerplexityFlags>();
  CLI::App* cmd = app.add_subcommand(
      "perplexity", "Perplexity of a model on a text file, as llama.cpp's llama-perplexity");
  cmd->footer(
      "The text is cut into chunks of -c tokens (each started with BOS when the model uses it);\n"
      "the second half of every chunk is scored. Prints the running value after each chunk,\n"
      "[1]X,[2]Y,..., then `Final estimate: PPL = X +/- ERROR`.\n"
      "Examples:\n"
      "  swarm perplexity -m model.gguf -f wiki.test.raw -c 512\n"
      "  swarm perplexity -m model.gguf -f wiki.test.raw --initial-peers 10.0.0.5:4000");
  cmd->add_option("-m,--model", flags->model_path, "Model GGUF file")->required();
  cmd->add_option("-f,--file", flags->text_path, "Text file to evaluate")->required();
  cmd->add_option("-c,--ctx-size", flags->context, "Tokens per chunk")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{4}, int64_t{1} << 20));
  cmd->add_option("-b,--batch-size", flags->batch,
                  "Positions per forward step (a chunk takes ceil(c / b) steps)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--chunks", flags->chunks, "Evaluate at most this many chunks (-1: all)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{-1}, int64_t{1} << 30));
  cmd->add_option("--backend,--device", flags->backend.name,
                  "Backend, alias --device: auto, cpu, cpu:generic, cpu:avx2, cpu:avx512, "
                  "reference, cuda (= cuda:0), cuda:N")
      ->capture_default_str();
  cmd->add_option("-t,--threads", flags->backend.threads, "CPU threads (0 = physical cores)");
  AddChainFlags(*cmd, flags->chain);
  AddCacheTypeFlags(*cmd, flags->cache_types);
  cmd->callback([flags, &exit_code] { exit_code.value = RunPerplexity(*flags); });
}

}  // namespace swarm::cli
