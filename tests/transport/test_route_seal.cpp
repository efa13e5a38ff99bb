// Session capabilities and onion-sealed routes: each hop opens only its own layer, which names the
// next hop alone; the bytes a hop holds (its layer, sealed and opened) contain nothing of the hops
// after the next; a layer altered, forged, or opened with another hop's key is refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "transport/capability.h"
#include "transport/protocol.h"
#include "transport/route_seal.h"

namespace swarm::transport {
namespace {

using absl::StatusCode;

template <typename T>
bool Contains(std::span<const uint8_t> haystack, const T& needle) {
  const auto* begin = reinterpret_cast<const uint8_t*>(&needle);
  return std::search(haystack.begin(), haystack.end(), begin, begin + sizeof(T)) != haystack.end();
}
bool Contains(std::span<const uint8_t> haystack, const std::string& needle) {
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end()) !=
         haystack.end();
}

struct TestHop {
  SealingHop sealing;
  SessionCapabilities caps;
};

std::vector<TestHop> MakeHops(size_t n) {
  std::vector<TestHop> hops;
  for (size_t i = 0; i < n; ++i) {
    TestHop h;
    h.caps = SessionCapabilities::Random();
    h.sealing.hop = {"tcp://10.0.0." + std::to_string(i) + ":7000", SessionId::Random(),
                     ParseCodec(i % 2 ? "f16" : "f32").value(), h.caps.push};
    h.sealing.key = h.caps.route_key;
    hops.push_back(h);
  }
  return hops;
}

std::vector<SealingHop> Sealing(const std::vector<TestHop>& hops) {
  std::vector<SealingHop> out;
  for (const TestHop& h : hops) out.push_back(h.sealing);
  return out;
}

TEST(CapabilityTest, RandomSecretsAreDistinctAndMatchOnlyThemselves) {
  const Capability a = Capability::Random(), b = Capability::Random();
  EXPECT_FALSE(a.empty());
  EXPECT_NE(a, b);
  EXPECT_TRUE(a.Matches(a));
  EXPECT_FALSE(a.Matches(b));
  Capability almost = a;
  almost.bytes[15] ^= 1;
  EXPECT_FALSE(a.Matches(almost));
  // "None" matches nothing, not even another "none".
  EXPECT_FALSE(Capability{}.Matches(Capability{}));
  EXPECT_FALSE(a.Matches(Capability{}));
  EXPECT_TRUE(SessionCapabilities::Random().complete());
  EXPECT_FALSE(SessionCapabilities{}.complete());
  // A wrong size reads as none.
  const std::vector<uint8_t> fifteen(15, 7);
  EXPECT_TRUE(Capability::FromBytes(fifteen).empty());
}

TEST(RouteSealTest, EachHopOpensOnlyItsOwnLayerAndLearnsOnlyTheNextHop) {
  const auto hops = MakeHops(4);
  const SealedStep step{77, 12, 3, false};
  auto sealed = SealRoute(Sealing(hops), step);
  ASSERT_TRUE(sealed.ok()) << sealed.status();

  std::vector<uint8_t> current = *sealed;
  for (size_t j = 0; j < hops.size(); ++j) {
    SCOPED_TRACE(j);
    // What hop j receives: its sealed layer. Opened with its key, it names hop j + 1 alone.
    for (size_t other = 0; other < hops.size(); ++other) {
      if (other == j) continue;
      auto wrong = OpenRouteLayer(hops[other].caps.route_key, current);
      EXPECT_EQ(wrong.status().code(), StatusCode::kPermissionDenied);
    }
    auto layer = OpenRouteLayer(hops[j].caps.route_key, current);
    ASSERT_TRUE(layer.ok()) << layer.status();
    EXPECT_EQ(layer->step_id, 77u);
    EXPECT_EQ(layer->start_position, 12);
    EXPECT_EQ(layer->n_tokens, 3);
    EXPECT_FALSE(layer->redo);
    auto plain = EncodeRouteLayer(*layer);
    ASSERT_TRUE(plain.ok());
    if (j + 1 == hops.size()) {
      EXPECT_FALSE(layer->next.has_value());
      EXPECT_TRUE(layer->sealed_next.empty());
    } else {
      ASSERT_TRUE(layer->next.has_value());
      EXPECT_EQ(*layer->next, hops[j + 1].sealing.hop);
    }
    // Nothing hop j holds, sealed or opened, carries anything of the hops after the next one,
    // nor any hop's owner capability or route key.
    for (size_t k = 0; k < hops.size(); ++k) {
      for (std::span<const uint8_t> bytes :
           {std::span<const uint8_t>(current), std::span<const uint8_t>(*plain)}) {
        EXPECT_FALSE(Contains(bytes, hops[k].caps.owner.bytes)) << k;
        EXPECT_FALSE(Contains(bytes, hops[k].caps.route_key.bytes)) << k;
        if (k > j + 1) {
          EXPECT_FALSE(Contains(bytes, hops[k].sealing.hop.session_id)) << k;
          EXPECT_FALSE(Contains(bytes, hops[k].caps.push.bytes)) << k;
          EXPECT_FALSE(Contains(bytes, hops[k].sealing.hop.address)) << k;
        }
      }
    }
    current = layer->sealed_next;
  }
}

TEST(RouteSealTest, AlteredOrForgedLayersAreRefused) {
  const auto hops = MakeHops(2);
  auto sealed = SealRoute(Sealing(hops), {5, 0, 1, true});
  ASSERT_TRUE(sealed.ok()) << sealed.status();
  const RouteKey& key = hops[0].caps.route_key;
  auto layer = OpenRouteLayer(key, *sealed);
  ASSERT_TRUE(layer.ok()) << layer.status();
  EXPECT_TRUE(layer->redo);
  // Every single flipped bit breaks the seal.
  for (size_t i = 0; i < sealed->size(); i += 7) {
    std::vector<uint8_t> altered = *sealed;
    altered[i] ^= 0x10;
    EXPECT_EQ(OpenRouteLayer(key, altered).status().code(), StatusCode::kPermissionDenied) << i;
  }
  // A layer sealed with a key of the forger's own, too short, empty.
  const auto forger = MakeHops(2);
  auto forged = SealRoute(Sealing(forger), {5, 0, 1, true});
  ASSERT_TRUE(forged.ok());
  EXPECT_EQ(OpenRouteLayer(key, *forged).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(OpenRouteLayer(key, std::vector<uint8_t>(10, 0)).status().code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(OpenRouteLayer(key, {}).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(OpenRouteLayer(RouteKey{}, *sealed).status().code(), StatusCode::kPermissionDenied);
  // Two seals of the same route differ (fresh nonces): an observer cannot link them.
  auto again = SealRoute(Sealing(hops), {5, 0, 1, true});
  ASSERT_TRUE(again.ok());
  EXPECT_NE(*again, *sealed);
}

TEST(RouteSealTest, LongestRouteFitsAndLongerIsRefused) {
  auto hops = MakeHops(kMaxRouteHops);
  for (TestHop& h : hops)
    h.sealing.hop.address = "tcp://" + std::string(kMaxShortTextBytes - 8, 'a') + ":1";
  auto sealed = SealRoute(Sealing(hops), {1, 0, 1, false});
  ASSERT_TRUE(sealed.ok()) << sealed.status();
  EXPECT_LE(sealed->size(), kMaxSealedRouteBytes);
  std::printf("sealed route of %zu hops: %zu bytes\n", hops.size(), sealed->size());
  // It travels in a step.
  Step step;
  step.n_tokens = 1;
  step.tensor = TensorDesc{ParseCodec("f32").value(), {4, 1}};
  step.sealed_route = *sealed;
  EXPECT_TRUE(EncodeMessage(1, step, Payload::FromVector(std::vector<uint8_t>(16))).ok());

  hops.push_back(MakeHops(1)[0]);
  EXPECT_EQ(SealRoute(Sealing(hops), {1, 0, 1, false}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(SealRoute({}, {1, 0, 1, false}).status().code(), StatusCode::kInvalidArgument);
  auto keyless = MakeHops(2);
  keyless[1].sealing.key = {};
  EXPECT_EQ(SealRoute(Sealing(keyless), {1, 0, 1, false}).status().code(),
            StatusCode::kInvalidArgument);
  auto pushless = MakeHops(2);
  pushless[1].sealing.hop.push_capability = {};
  EXPECT_EQ(SealRoute(Sealing(pushless), {1, 0, 1, false}).status().code(),
            StatusCode::kInvalidArgument);
}

// What sealing costs a client per step and opening costs a hop (printed, not asserted).
TEST(RouteSealTest, SealingAndOpeningCost) {
  const auto hops = MakeHops(3);
  const auto sealing = Sealing(hops);
  constexpr int kRounds = 2000;
  std::vector<uint8_t> sealed;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kRounds; ++i) sealed = SealRoute(sealing, {uint64_t(i + 1), i, 1}).value();
  const double seal_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() /
      kRounds;
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < kRounds; ++i)
    ASSERT_TRUE(OpenRouteLayer(hops[0].caps.route_key, sealed).ok());
  const double open_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() /
      kRounds;
  std::printf("3-hop route: %zu sealed bytes, %.1f us to seal, %.1f us to open a layer\n",
              sealed.size(), seal_us, open_us);
}

// A layer that opens (the client sealed it) is still checked like any input.
TEST(RouteSealTest, DecodedLayersAreValidated) {
  RouteLayer layer;
  layer.n_tokens = 0;
  EXPECT_EQ(EncodeRouteLayer(layer).status().code(), StatusCode::kInvalidArgument);
  layer.n_tokens = 1;
  layer.sealed_next = {1, 2, 3};  // a next layer with no next hop
  EXPECT_EQ(EncodeRouteLayer(layer).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeRouteLayer(std::vector<uint8_t>(24, 0xff)).status().code(),
            StatusCode::kDataLoss);
  EXPECT_EQ(DecodeRouteLayer(std::vector<uint8_t>(13, 0)).status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace swarm::transport
