#include "transport/capability.h"

#include <sodium.h>

#include <algorithm>
#include <cstdlib>

namespace swarm::transport {
void InitSodium() {
  static const bool ready = sodium_init() >= 0;
  if (!ready) std::abort();
}

template <size_t N>
bool Secret<N>::empty() const {
  return sodium_is_zero(bytes.data(), N) == 1;
}

template <size_t N>
bool Secret<N>::Matches(const Secret& other) const {
  return !empty() && sodium_memcmp(bytes.data(), other.bytes.data(), N) == 0;
}

template <size_t N>
Secret<N> Secret<N>::Random() {
  InitSodium();
  Secret s;
  do {
    randombytes_buf(s.bytes.data(), N);
  } while (s.empty());
  return s;
}

template <size_t N>
Secret<N> Secret<N>::FromBytes(std::span<const uint8_t> bytes) {
  Secret s;
  if (bytes.size() == N) std::copy(bytes.begin(), bytes.end(), s.bytes.begin());
  return s;
}

template struct Secret<16>;
template struct Secret<32>;

SessionCapabilities SessionCapabilities::Random() {
  return {Capability::Random(), Capability::Random(), RouteKey::Random()};
}

}  // namespace swarm::transport
