// A private swarm's secret: 32 random bytes every member holds (`swarm secret -o FILE`, then
// --swarm-secret FILE), and the keys derived from it for the wire: one CurveZMQ key pair that
// every peer's ROUTER serves with, and one that every member's DEALER connects with (the
// registry derives its own keys with Derive()). Value types; any thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "transport/zmq_curve.h"
#include "transport/zmq_socket.h"

namespace swarm::transport {

class SwarmSecret {
 public:
  static constexpr size_t kSize = 32;
  // The secret's line in its file: this prefix, then 64 hex digits. Lines starting with '#' and
  // blank lines are allowed around it.
  static constexpr std::string_view kPrefix = "swarm-secret-v1:";

  // 32 bytes from the operating system's random source (libsodium's randombytes).
  static absl::StatusOr<SwarmSecret> Generate();
  // InvalidArgument naming what is wrong (another kind of file, another version, a bad length).
  static absl::StatusOr<SwarmSecret> Parse(std::string_view text);
  // Reads and parses a secret file; the errors name the file and say how to make one.
  static absl::StatusOr<SwarmSecret> Load(const std::string& path);

  SwarmSecret(const SwarmSecret&) = default;
  SwarmSecret& operator=(const SwarmSecret&) = default;
  ~SwarmSecret();  // wipes the bytes

  // The file's text: a comment saying what it is, then the secret's line.
  std::string Format() const;
  // Writes Format() with mode 0600. AlreadyExists when `path` exists, unless `overwrite`.
  absl::Status Save(const std::string& path, bool overwrite) const;

  // A key of `bytes` bytes (16..64) for one purpose: keyed BLAKE2b of the purpose's name, so
  // keys for different purposes are independent and none reveals the secret.
  std::vector<uint8_t> Derive(std::string_view purpose, size_t bytes) const;
  // 8 hex digits that name the secret in logs without revealing it (a derived hash).
  std::string Fingerprint() const;

  friend bool operator==(const SwarmSecret&, const SwarmSecret&) = default;

 private:
  SwarmSecret() = default;
  std::array<uint8_t, kSize> bytes_{};
};

// The swarm's CurveZMQ keys, derived from its secret (crypto_box_seed_keypair): every peer's
// ROUTER is a CURVE server with `server` and admits only `client`'s public key; every member's
// DEALER is a CURVE client with `client`, expecting `server`'s public key. A process without the
// secret knows neither secret key, so it can neither complete a handshake with a member nor
// accept one from a member.
struct SwarmCurveKeys {
  CurveKeyPair server;
  CurveKeyPair client;
};

absl::StatusOr<SwarmCurveKeys> DeriveCurveKeys(const SwarmSecret& secret);
// What a member's DEALERs connect with.
CurveClientOptions SwarmCurveClient(const SwarmCurveKeys& keys);
// What a peer's ROUTER serves with; `authenticator` must allow keys.client.public_key (see
// ZapAuthenticator) and run on the ROUTER's context.
CurveServerOptions SwarmCurveServer(const SwarmCurveKeys& keys,
                                    const ZapAuthenticator* authenticator);

}  // namespace swarm::transport
