// Checks on a hop's output before the client uses it: the shape, finite values, and each
// token's norm relative to the hop's input (a residual stream carries its input forward, so an
// output of zeros, or one that grew by orders of magnitude, is no honest computation). Pure
// functions of the values; any thread.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/status.h"

namespace swarm::router {

struct OutputBounds {
  // Per token, rms(output) / rms(input) must lie in [min_rms_ratio, max_rms_ratio]. The residual
  // stream adds each block's contribution to its input; its norm grows through a model's blocks
  // (most in the first ones, where some models' "massive activations" appear) and never falls to
  // a small fraction of it. A token whose input rms is below min_input_rms has only the upper
  // bound checked against min_input_rms.
  double min_rms_ratio = 1e-2;
  double max_rms_ratio = 1e4;
  double min_input_rms = 1e-6;
};

// input, output: [n_embd, n_tokens], a hop's input and the output it returned. Ok, or
// DataLoss naming the first token and what is wrong (wrong size, NaN/infinity, norm out of
// bounds).
absl::Status CheckHopOutput(std::span<const float> input, std::span<const float> output,
                            int64_t n_embd, int64_t n_tokens, const OutputBounds& bounds = {});

}  // namespace swarm::router
