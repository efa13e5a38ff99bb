// `swarm make-model`: writes a seeded synthetic model at a real model's shape (weights are random,
// so throughput measurements are realistic while no real model is needed).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "kernels/ggml_type.h"
#include "model/synthetic_model.h"

namespace swarm::cli {
namespace {

struct MakeModelFlags {
  std::string preset;
  std::string arch = "llama";
  int64_t n_layer = 0, n_embd = 0, n_ff = 0, n_head = 0, n_head_kv = 0, n_vocab = 0;
  int64_t context = 0;
  int64_t head_dim = 0;
  std::string rope_scaling;
  float rope_scaling_factor = 4.0f;
  std::string type = "f16";
  uint64_t seed = 1;
  std::string vocab_path;
  std::string name;
  std::string out_path;
  int threads = 0;
  int64_t n_expert = 8, n_expert_used = 2, n_ff_exp = 0;  // mixture-of-experts architectures
  // Which shape flags were given (they override the preset's values).
  CLI::Option* n_layer_opt = nullptr;
  CLI::Option* n_embd_opt = nullptr;
  CLI::Option* n_ff_opt = nullptr;
  CLI::Option* n_head_opt = nullptr;
  CLI::Option* n_head_kv_opt = nullptr;
  CLI::Option* n_vocab_opt = nullptr;
};

int RunMakeModel(const MakeModelFlags& f) {
  model::SyntheticModelSpec spec;
  if (!f.preset.empty()) {
    auto preset = model::SyntheticPreset(f.preset);
    if (!preset.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(preset.status().message()).c_str());
      return 2;
    }
    spec = *preset;
  }
  auto set = [](const CLI::Option* opt, int64_t value, int64_t& field) {
    if (opt->count() > 0) field = value;
  };
  set(f.n_layer_opt, f.n_layer, spec.n_layer);
  set(f.n_embd_opt, f.n_embd, spec.n_embd);
  set(f.n_ff_opt, f.n_ff, spec.n_ff);
  set(f.n_head_opt, f.n_head, spec.n_head);
  set(f.n_vocab_opt, f.n_vocab, spec.n_vocab);
  if (f.n_head_kv_opt->count() > 0) {
    spec.n_head_kv = f.n_head_kv;
  } else if (f.preset.empty()) {
    spec.n_head_kv = spec.n_head;
  }
  if (f.preset.empty()) {
    for (const CLI::Option* opt : {f.n_layer_opt, f.n_embd_opt, f.n_ff_opt, f.n_head_opt}) {
      if (opt->count() == 0) {
        std::fprintf(stderr, "error: %s is required without --preset\n", opt->get_name().c_str());
        return 2;
      }
    }
    if (f.n_vocab_opt->count() == 0 && f.vocab_path.empty()) {
      std::fprintf(stderr, "error: give --n-vocab or --vocab (or a --preset)\n");
      return 2;
    }
  }
  if (!f.vocab_path.empty() && f.n_vocab_opt->count() > 0) {
    std::fprintf(stderr,
                 "error: --n-vocab and --vocab exclude each other (the vocabulary sets "
                 "n_vocab)\n");
    return 2;
  }
  auto type = kernels::ParseGgmlType(f.type);
  if (!type.ok()) {
    std::fprintf(stderr, "error: --type: %s\n", std::string(type.status().message()).c_str());
    return 2;
  }
  spec.type = *type;
  spec.arch = f.arch;
  spec.seed = f.seed;
  spec.vocab_path = f.vocab_path;
  spec.name = f.name;
  spec.n_threads = f.threads;
  spec.n_expert = f.n_expert;
  spec.n_expert_used = f.n_expert_used;
  spec.n_ff_exp = f.n_ff_exp;
  if (f.context > 0) spec.n_ctx = f.context;
  spec.head_dim = f.head_dim;
  spec.rope_scaling = f.rope_scaling;
  spec.rope_scaling_factor = f.rope_scaling_factor;

  const auto start = std::chrono::steady_clock::now();
  auto summary = model::WriteSyntheticModel(spec, f.out_path);
  if (!summary.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(summary.status().message()).c_str());
    return 1;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "wrote %s: %s, %lld blocks, n_embd %lld, n_ff %lld, %lld heads (%lld KV), vocab %lld, "
      "%s, seed %llu: %zu tensors, %.1f MiB in %.1f s\n",
      f.out_path.c_str(), spec.arch.c_str(), static_cast<long long>(spec.n_layer),
      static_cast<long long>(spec.n_embd), static_cast<long long>(spec.n_ff),
      static_cast<long long>(spec.n_head), static_cast<long long>(spec.n_head_kv),
      static_cast<long long>(summary->n_vocab),
      std::string(kernels::GgmlTypeName(spec.type)).c_str(),
      static_cast<unsigned long long>(spec.seed), summary->n_tensors,
      static_cast<double>(summary->tensor_bytes) / (1 << 20), seconds);
  if (!summary->fallbacks.empty()) {
    std::printf("%zu matrices have rows that do not fit %s blocks and use another type, e.g. %s\n",
                summary->fallbacks.size(), std::string(kernels::GgmlTypeName(spec.type)).c_str(),
                summary->fallbacks.front().c_str());
  }
  return 0;
}

}  // namespace

void AddMakeModelCommand(CLI::App& app, ExitCode& exit_code) {
  auto flags = std::make_shared<MakeModelFlags>();
  CLI::App* cmd = app.add_subcommand(
      "make-model", "Write a synthetic model with seeded random weights at a real model's shape");
  cmd->footer(
      "Presets: tinyllama-1.1b (22 blocks, n_embd 2048, n_ff 5632, 32/4 heads, vocab 32000),\n"
      "llama-7b (32, 4096, 11008, 32/32, 32000), stories260k-shape (5, 64, 172, 8/4, 512).\n"
      "Shape flags override the preset. Norms are 1, matrices uniform with std 1/sqrt(n_in).\n"
      "Examples:\n"
      "  swarm make-model --preset tinyllama-1.1b --type q4_k \\\n"
      "      --vocab ../shared/tokenizer-vectors/ggml-vocab-llama-spm.gguf -o tinyllama-q4k.gguf\n"
      "  swarm make-model --n-layer 2 --n-embd 64 --n-ff 128 --n-head 4 --n-vocab 300 \\\n"
      "      --type f32 --seed 7 -o tiny.gguf\n"
      "  swarm make-model --preset stories260k-shape --arch llama3 --rope-scaling yarn \\\n"
      "      --type q8_0 -o tiny-llama3.gguf\n"
      "  swarm make-model --preset stories260k-shape --arch qwen3 --type f32 -o tiny-qwen3.gguf");
  cmd->add_option("--preset", flags->preset, "tinyllama-1.1b, llama-7b or stories260k-shape");
  flags->n_layer_opt = cmd->add_option("--n-layer", flags->n_layer, "Transformer blocks");
  flags->n_embd_opt = cmd->add_option("--n-embd", flags->n_embd, "Embedding width");
  flags->n_ff_opt = cmd->add_option("--n-ff", flags->n_ff, "Feed-forward width");
  flags->n_head_opt = cmd->add_option("--n-head", flags->n_head, "Attention heads");
  flags->n_head_kv_opt =
      cmd->add_option("--n-head-kv", flags->n_head_kv, "KV heads (default: --n-head)");
  flags->n_vocab_opt = cmd->add_option("--n-vocab", flags->n_vocab,
                                       "Vocabulary size (built-in SPM vocabulary, >= 259)");
  cmd->add_option("--arch", flags->arch,
                  "llama, llama3 (llama with Llama 3.1 rope_freqs factors), qwen2, qwen3 "
                  "(q/k norms, head size 2 * n_embd / n_head unless --head-dim), mixtral (llama "
                  "with experts) or qwen3moe (qwen3 with experts)")
      ->capture_default_str()
      ->check(CLI::IsMember({"llama", "llama3", "qwen2", "qwen3", "mixtral", "qwen3moe"}));
  cmd->add_option("--n-expert", flags->n_expert, "Experts per block (mixture-of-experts archs)")
      ->capture_default_str();
  cmd->add_option("--n-expert-used", flags->n_expert_used, "Experts each token uses")
      ->capture_default_str();
  cmd->add_option("--n-ff-exp", flags->n_ff_exp,
                  "Width of each expert (qwen3moe's expert_feed_forward_length; 0 = --n-ff)")
      ->capture_default_str();
  cmd->add_option("--head-dim", flags->head_dim,
                  "Head size, written as attention.key_length (0 = architecture's default)")
      ->capture_default_str();
  cmd->add_option("--rope-scaling", flags->rope_scaling,
                  "Write rope.scaling.type (none, linear or yarn) and its factor")
      ->check(CLI::IsMember({"none", "linear", "yarn"}));
  cmd->add_option("--rope-scaling-factor", flags->rope_scaling_factor,
                  "rope.scaling.factor; yarn's original_context_length is the context / factor")
      ->capture_default_str();
  cmd->add_option("--type", flags->type,
                  "Matrix type: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, "
                  "q5_k, q6_k, iq4_nl, iq4_xs")
      ->capture_default_str();
  cmd->add_option("--seed", flags->seed, "Random seed")->capture_default_str();
  cmd->add_option("--vocab", flags->vocab_path,
                  "GGUF whose tokenizer.* metadata is copied (sets n_vocab)");
  cmd->add_option("--context", flags->context,
                  "context_length to record (default: preset or 2048)");
  cmd->add_option("--name", flags->name, "general.name (default: derived from shape and seed)");
  cmd->add_option("-t,--threads", flags->threads, "Worker threads (0 = all hardware threads)")
      ->capture_default_str();
  cmd->add_option("-o,--output", flags->out_path, "Output GGUF")->required();
  cmd->callback([flags, &exit_code] { exit_code.value = RunMakeModel(*flags); });
}

}  // namespace swarm::cli
