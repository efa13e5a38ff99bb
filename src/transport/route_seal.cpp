#include "transport/route_seal.h"

#include <sodium.h>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace swarm::transport {
namespace {

static_assert(RouteKey::kSize == crypto_secretbox_KEYBYTES);
constexpr size_t kSealOverhead = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES;

// nonce || secretbox(plain): a fresh random nonce per layer (192 bits, so collisions never occur).
std::vector<uint8_t> Seal(const RouteKey& key, std::span<const uint8_t> plain) {
  std::vector<uint8_t> sealed(kSealOverhead + plain.size());
  uint8_t* nonce = sealed.data();
  randombytes_buf(nonce, crypto_secretbox_NONCEBYTES);
  crypto_secretbox_easy(sealed.data() + crypto_secretbox_NONCEBYTES, plain.data(), plain.size(),
                        nonce, key.bytes.data());
  return sealed;
}

}  // namespace

absl::StatusOr<std::vector<uint8_t>> SealRoute(std::span<const SealingHop> hops,
                                               const SealedStep& step) {
  if (hops.empty() || hops.size() > kMaxRouteHops) {
    return absl::InvalidArgumentError(
        absl::StrCat("a sealed route has 1..", kMaxRouteHops, " hops, not ", hops.size()));
  }
  for (const SealingHop& h : hops) {
    if (h.key.empty()) return absl::InvalidArgumentError("a route hop without its route key");
  }
  InitSodium();
  std::vector<uint8_t> inner;  // hops[j + 1]'s sealed layer
  for (size_t j = hops.size(); j-- > 0;) {
    RouteLayer layer;
    layer.step_id = step.step_id;
    layer.start_position = step.start_position;
    layer.n_tokens = step.n_tokens;
    layer.redo = step.redo;
    if (j + 1 < hops.size()) {
      layer.next = hops[j + 1].hop;
      layer.sealed_next = std::move(inner);
    }
    SWARM_ASSIGN_OR_RETURN(std::vector<uint8_t> plain, EncodeRouteLayer(layer));
    inner = Seal(hops[j].key, plain);
    sodium_memzero(plain.data(), plain.size());
    if (inner.size() > kMaxSealedRouteBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the sealed route of ", hops.size(), " hops exceeds ", kMaxSealedRouteBytes, " bytes"));
    }
  }
  return inner;
}

absl::StatusOr<RouteLayer> OpenRouteLayer(const RouteKey& key, std::span<const uint8_t> sealed) {
  InitSodium();
  if (key.empty()) return absl::PermissionDeniedError("no route key to open the route with");
  if (sealed.size() < kSealOverhead || sealed.size() > kMaxSealedRouteBytes) {
    return absl::PermissionDeniedError(
        absl::StrCat("a sealed route layer of ", sealed.size(), " bytes is not one"));
  }
  std::vector<uint8_t> plain(sealed.size() - kSealOverhead);
  const uint8_t* nonce = sealed.data();
  if (crypto_secretbox_open_easy(plain.data(), sealed.data() + crypto_secretbox_NONCEBYTES,
                                 sealed.size() - crypto_secretbox_NONCEBYTES, nonce,
                                 key.bytes.data()) != 0) {
    return absl::PermissionDeniedError(
        "the route layer was not sealed by this session's client (forged, altered, or for "
        "another hop)");
  }
  return DecodeRouteLayer(plain);
}

}  // namespace swarm::transport
