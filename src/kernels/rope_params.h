// Rotary position embedding parameters (RoPE style, base, Llama 3 frequency factors, linear and
// YaRN context scaling) and the per-pair frequency table every backend rotates by. A value type
// and a pure function; any thread.
#pragma once

#include <cstdint>
#include <vector>

namespace swarm::kernels {

enum class RopeStyle {
  kAdjacentPairs,  // GGUF `llama`: rotates (x[2i], x[2i+1])
  kNeox,           // `qwen2`, `qwen3`: rotates (x[i], x[i + head_dim/2])
};

// As GGUF metadata and llama.cpp define them. Pair i of a head at position p turns by the angle
// p * freq[i] and its cos and sin are scaled by mscale, where (d = head_dim)
//   extrap[i] = freq_base^(-2i/d) / freq_factors[i]          (factors: rope_freqs.weight, or 1)
//   interp[i] = freq_scale * extrap[i]                       (linear scaling: 1 / factor)
//   freq[i]   = interp[i]                                    (ext_factor == 0)
//             = interp[i] (1 - mix[i]) + extrap[i] mix[i]    (YaRN: mix = ramp(i) * ext_factor)
//   mscale    = attn_factor, times 1 + 0.1 ln(1 / freq_scale) with YaRN
// and ramp(i) falls from 1 to 0 between the correction dims where a pair turns beta_fast and
// beta_slow times over n_ctx_orig positions.
struct RopeParams {
  float freq_base = 10000.0f;
  RopeStyle style = RopeStyle::kAdjacentPairs;
  float freq_scale = 1.0f;
  float ext_factor = 0.0f;
  float attn_factor = 1.0f;
  float beta_fast = 32.0f;
  float beta_slow = 1.0f;
  int64_t n_ctx_orig = 0;
  std::vector<float> freq_factors;  // [head_dim / 2] or empty

  bool operator==(const RopeParams&) const = default;
};

struct RopeTable {
  std::vector<double> freq;  // [head_dim / 2]: radians per position of each pair
  double mscale = 1.0;
};

// The table for heads of head_dim (even) values. Without factors or scaling, freq[i] is exactly
// pow(freq_base, -2i/head_dim) in double.
RopeTable MakeRopeTable(const RopeParams& params, int64_t head_dim);

}  // namespace swarm::kernels
