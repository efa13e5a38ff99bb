// Onion-sealed routes: the client seals one layer per hop of a step's route with the route key it
// gave that hop at open (XSalsa20-Poly1305, libsodium's crypto_secretbox), innermost first. Hop j
// opens its own layer and learns the next hop alone (address, session, push capability, codec)
// plus that hop's sealed layer, which it passes on unread: no hop learns anything about the hops
// after the next, and no hop can forge or alter a layer, since only the client and the layer's hop
// hold its key. Pure functions, any thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "transport/capability.h"
#include "transport/protocol.h"

namespace swarm::transport {

// One hop of a route as the client seals it: the hop itself (how the hop before reaches it) and
// the route key it gave that hop.
struct SealingHop {
  Hop hop;
  RouteKey key;
};

// What every layer of one step's route is bound to.
struct SealedStep {
  uint64_t step_id = 0;
  int64_t start_position = 0;
  int32_t n_tokens = 0;
  bool redo = false;  // see RouteLayer::redo
};

// Seals the route of one step over hops[0..n): hop j's layer names hops[j + 1].hop and carries
// hop j + 1's sealed layer. Returns hop 0's sealed layer (Step::sealed_route of the step the
// client sends to hops[0]; hops[0].hop is not sealed anywhere). InvalidArgument for an empty or
// too long route, a hop without its key or push capability, or a result over the limits.
absl::StatusOr<std::vector<uint8_t>> SealRoute(std::span<const SealingHop> hops,
                                               const SealedStep& step);

// Opens the layer sealed for the hop holding `key`. PermissionDenied when it was not sealed with
// this key (forged, altered, or meant for another hop); DataLoss / InvalidArgument when it opens
// but does not decode or breaks the limits.
absl::StatusOr<RouteLayer> OpenRouteLayer(const RouteKey& key, std::span<const uint8_t> sealed);

}  // namespace swarm::transport
