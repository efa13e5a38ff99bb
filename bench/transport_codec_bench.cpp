// Activation codec benchmark: for each codec, the bytes a hop sends per token, the error it
// introduces, and encode/decode speed, on synthetic activations shaped like a transformer's
// hidden state (gaussian, plus a few outlier channels that stay large across tokens, as in real
// LLMs). Prints one JSON document.
//
// Usage: transport_codec_bench [--n-embd 2048] [--tokens 1,128] [--seed 1] [--min-ms 200]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "transport/codec.h"

namespace {

using swarm::transport::Codec;
using Clock = std::chrono::steady_clock;

// x: [n_embd, n_tokens]. ~0.5% of channels are outliers of 20-60 sigma, the same channels for
// every token; the other values are N(0, 1) with a per-token scale.
std::vector<float> SyntheticActivations(size_t n_embd, size_t n_tokens, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> outlier(20.0f, 60.0f);
  std::vector<size_t> outlier_channels;
  std::vector<float> outlier_values;
  for (size_t c = 0; c < n_embd; ++c) {
    if (rng() % 200 == 0) {
      outlier_channels.push_back(c);
      outlier_values.push_back((rng() % 2 ? 1 : -1) * outlier(rng));
    }
  }
  std::vector<float> x(n_embd * n_tokens);
  for (size_t t = 0; t < n_tokens; ++t) {
    const float scale = 0.5f + (rng() % 1000) / 1000.0f;
    for (size_t c = 0; c < n_embd; ++c) x[t * n_embd + c] = scale * normal(rng);
    for (size_t k = 0; k < outlier_channels.size(); ++k) {
      x[t * n_embd + outlier_channels[k]] = outlier_values[k] * (0.8f + 0.4f * normal(rng) / 4);
    }
  }
  return x;
}

// Runs `fn` repeatedly for at least min_ms and returns seconds per call.
template <typename Fn>
double TimePerCall(Fn fn, double min_ms) {
  fn();  // warm up
  size_t calls = 0;
  const auto start = Clock::now();
  double elapsed = 0;
  do {
    fn();
    ++calls;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed * 1e3 < min_ms);
  return elapsed / calls;
}

// "1,128" -> {1, 128}; empty on any non-positive entry.
std::vector<size_t> ParseList(const std::string& s) {
  std::vector<size_t> out;
  for (size_t start = 0; start <= s.size();) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    const size_t v = std::strtoull(s.substr(start, comma - start).c_str(), nullptr, 10);
    if (v == 0) return {};
    out.push_back(v);
    start = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  size_t n_embd = 2048;
  std::vector<size_t> token_counts = {1, 128};
  uint32_t seed = 1;
  double min_ms = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--n-embd") {
      n_embd = std::strtoull(argv[i + 1], nullptr, 10);
    } else if (flag == "--tokens") {
      token_counts = ParseList(argv[i + 1]);
    } else if (flag == "--seed") {
      seed = static_cast<uint32_t>(std::strtoul(argv[i + 1], nullptr, 10));
    } else if (flag == "--min-ms") {
      min_ms = std::strtod(argv[i + 1], nullptr);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (n_embd == 0 || token_counts.empty()) {
    std::fprintf(stderr, "--n-embd and --tokens must be positive\n");
    return 2;
  }

  const char* codec_names[] = {"f32",       "f32+zstd", "f16",       "f16+zstd", "bf16",
                               "bf16+zstd", "int8",     "int8+zstd", "int8h",    "int8h/32"};
  nlohmann::json results = nlohmann::json::array();
  swarm::transport::CodecWorkspace workspace;
  for (size_t n_tokens : token_counts) {
    const std::vector<float> x = SyntheticActivations(n_embd, n_tokens, seed);
    for (const char* name : codec_names) {
      const Codec codec = swarm::transport::ParseCodec(name).value();
      auto error = swarm::transport::MeasureCodec(x.data(), x.size(), codec);
      auto bytes = swarm::transport::EncodeTensor(x.data(), x.size(), codec, &workspace);
      if (!error.ok() || !bytes.ok()) {
        std::fprintf(stderr, "%s failed\n", name);
        return 1;
      }
      std::vector<float> y(x.size());
      const double encode_s = TimePerCall(
          [&] { (void)swarm::transport::EncodeTensor(x.data(), x.size(), codec, &workspace); },
          min_ms);
      const double decode_s = TimePerCall(
          [&] { (void)swarm::transport::DecodeTensorInto(*bytes, y, codec, &workspace); }, min_ms);
      const double input_mb = x.size() * sizeof(float) / 1e6;
      results.push_back({
          {"codec", name},
          {"n_embd", n_embd},
          {"n_tokens", n_tokens},
          {"bytes_per_token", static_cast<double>(bytes->size()) / n_tokens},
          {"bytes_per_value", error->bytes_per_value},
          {"compression_vs_f32", x.size() * sizeof(float) / static_cast<double>(bytes->size())},
          {"nmse", error->nmse},
          {"max_abs_error", error->max_abs_error},
          {"encode_us", encode_s * 1e6},
          {"decode_us", decode_s * 1e6},
          {"encode_mb_per_s", input_mb / encode_s},
          {"decode_mb_per_s", input_mb / decode_s},
      });
    }
  }
  nlohmann::json out = {
      {"benchmark", "transport_codec"},
      {"data", "synthetic gaussian activations with ~0.5% persistent outlier channels (20-60x)"},
      {"seed", seed},
      {"results", results},
  };
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
