// Speculative decoding's flags, shared by the subcommands that generate text (generate, api, demo).
#pragma once

#include <CLI/CLI.hpp>

#include "shard/speculation.h"

namespace swarm::cli {

inline void AddDraftFlags(CLI::App& cmd, shard::SpeculationFlags& f) {
  cmd.add_option("--draft", f.draft,
                 "Speculative decoding's drafter: lookup (continuations found in the prompt and "
                 "the text so far) or none")
      ->capture_default_str();
  cmd.add_option("--draft-model", f.draft_model,
                 "Speculative decoding with this small GGUF as the drafter (the target's "
                 "vocabulary), run in this process");
  cmd.add_option("--draft-max", f.draft_max,
                 "Drafted tokens per verification chunk at most (0 = 16); below it the length "
                 "follows the measured acceptance")
      ->capture_default_str();
}

}  // namespace swarm::cli
