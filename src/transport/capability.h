// The secrets that make a session on a peer belong to the client that opened it: an owner
// capability (open again, close, roll back, any step from the client), a push capability (the
// upstream hop delivers the next steps, nothing else) and a route key (seals the part of each
// step's route meant for this hop). All random (libsodium's CSPRNG), none derived from the
// session id; compared in constant time. Value types; any thread.
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace swarm::transport {

// Initialises libsodium once (idempotent, thread-safe); aborts when the machine offers no secure
// randomness, rather than hand out weak secrets. Everything here calls it first.
void InitSodium();

// A fixed-size secret; all zero means "none given" (Random() never returns it).
template <size_t N>
struct Secret {
  std::array<uint8_t, N> bytes{};

  static constexpr size_t kSize = N;
  bool empty() const;
  // Constant time: how long it takes tells nothing about how many bytes agree.
  bool Matches(const Secret& other) const;
  static Secret Random();
  // Exactly N bytes, or an empty secret for anything else (the wire reader checks the size).
  static Secret FromBytes(std::span<const uint8_t> bytes);
  // Bitwise, for value comparisons of messages; authorisation uses Matches().
  friend bool operator==(const Secret&, const Secret&) = default;
};

using Capability = Secret<16>;  // 128 bits
using RouteKey = Secret<32>;    // a crypto_secretbox key

// What the client gives one hop when it opens a session there.
struct SessionCapabilities {
  Capability owner;    // kept by the client alone
  Capability push;     // given to the upstream hop (inside its sealed route layer)
  RouteKey route_key;  // opens this hop's layer of every step's sealed route
  bool complete() const { return !owner.empty() && !push.empty() && !route_key.empty(); }
  static SessionCapabilities Random();
  friend bool operator==(const SessionCapabilities&, const SessionCapabilities&) = default;
};

}  // namespace swarm::transport
