// Test inputs that are bit-identical on every platform and standard library: integers from
// SplitMix64 turned into floats by exact or IEEE-rounded conversions only (no <random>
// distributions, no libm), so that golden outputs recorded elsewhere stay valid here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace swarm::kernels::testing {

class PortableRandom {
 public:
  explicit PortableRandom(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1) on a grid of 2^-23 (exact).
  float Uniform() {
    return static_cast<float>(static_cast<int32_t>(Next() >> 40) - (1 << 23)) * 0x1p-23f;
  }
  // Roughly normal with unit variance: the sum of 3 uniforms (variance 1) on the same grid.
  float Normal() {
    int32_t sum = 0;
    for (int i = 0; i < 3; ++i) sum += static_cast<int32_t>(Next() >> 40) - (1 << 23);
    return static_cast<float>(sum) * 0x1p-23f;
  }

 private:
  uint64_t state_;
};

// The input families of the llama.cpp golden test. n must be a multiple of 256.
// n values of rng.Normal() * scale.
inline std::vector<float> NormalVector(PortableRandom& rng, size_t n, float scale = 1.0f) {
  std::vector<float> v(n);
  for (float& x : v) x = rng.Normal() * scale;
  return v;
}

enum class InputKind { kNormal, kSmallNormal, kPositive, kOutliers, kCount };

inline std::vector<float> MakeInput(InputKind kind, int64_t n, uint64_t seed) {
  PortableRandom rng(seed);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) {
    switch (kind) {
      case InputKind::kNormal:
      case InputKind::kOutliers:
        v = rng.Normal();
        break;
      case InputKind::kSmallNormal:
        v = rng.Normal() * 0.02f;
        break;
      case InputKind::kPositive:
        v = rng.Uniform() * 0.5f + 0.5f;
        break;
      case InputKind::kCount:
        break;
    }
  }
  if (kind == InputKind::kOutliers) {
    for (size_t i = 0; i < x.size(); i += 97) x[i] *= 30.0f;
    for (size_t i = 256; i < 512 && i < x.size(); ++i) x[i] = 0.0f;    // an all-zero block
    for (size_t i = 512; i < 768 && i < x.size(); ++i) x[i] = -0.75f;  // a constant block
  }
  return x;
}

inline uint64_t Fnv1a64(const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < size; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace swarm::kernels::testing
