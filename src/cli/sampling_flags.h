// Sampling flags shared by the subcommands that generate text (llama.cpp's names and defaults).
#pragma once

#include <CLI/CLI.hpp>

#include "model/sampler.h"

namespace swarm::cli {

inline void AddSamplingFlags(CLI::App& cmd, model::SamplingParams& p) {
  cmd.add_option("--temp", p.temperature, "Temperature; 0 = greedy")->capture_default_str();
  cmd.add_option("--top-k", p.top_k, "Top-k sampling; <= 0 = off")->capture_default_str();
  cmd.add_option("--top-p", p.top_p, "Top-p (nucleus) sampling; 1 = off")->capture_default_str();
  cmd.add_option("--min-p", p.min_p, "Min-p sampling; 0 = off")->capture_default_str();
  cmd.add_option("--repeat-penalty", p.repeat_penalty, "Repetition penalty; 1 = off")
      ->capture_default_str();
  cmd.add_option("--repeat-last-n", p.repeat_last_n, "Tokens the repetition penalty looks at")
      ->capture_default_str();
  cmd.add_option("--seed", p.seed, "Random seed")->capture_default_str();
}

}  // namespace swarm::cli
