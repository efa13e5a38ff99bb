// libFuzzer target: activation tensor frames (transport/codec.h) as a peer receives them: f32,
// f16, bf16 and blockwise int8 (f32 or f16 scales), each optionally one zstd frame. Input: a
// 6-byte codec and size prefix, then the frame. Also parses the prefix's tail as a codec name,
// and encodes the frame's bytes read as floats, which must decode to as many values (bit for bit
// for f32).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "transport/codec.h"

namespace {

namespace t = swarm::transport;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_activations: %s\n", what);
    std::abort();
  }
}

// Byte 0: dtype (bits 0-1), zstd (bit 2), f16 scales (bit 3); bytes 1-2: int8 block size
// (unchecked, so invalid sizes reach ValidateCodec); bytes 3-5: the number of values expected.
constexpr size_t kPrefix = 6;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kPrefix) return 0;
  t::Codec codec;
  codec.dtype = static_cast<t::Dtype>(data[0] & 3);
  codec.zstd = (data[0] & 4) != 0;
  codec.scale_f16 = (data[0] & 8) != 0;
  codec.block_size = static_cast<uint32_t>(data[1]) | static_cast<uint32_t>(data[2]) << 8;
  const size_t n = static_cast<size_t>(data[3]) | static_cast<size_t>(data[4]) << 8 |
                   static_cast<size_t>(data[5]) << 16;
  std::span<const uint8_t> frame(data + kPrefix, size - kPrefix);

  // Codec names ("int8h/32+zstd:3") as flags and configuration give them.
  std::string_view name(reinterpret_cast<const char*>(frame.data()),
                        std::min<size_t>(frame.size(), 24));
  if (auto parsed = t::ParseCodec(name); parsed.ok()) {
    Check(t::ValidateCodec(*parsed).ok(), "ParseCodec accepted an invalid codec");
    auto again = t::ParseCodec(t::CodecName(*parsed));
    Check(again.ok() && *again == *parsed, "CodecName does not parse back to its codec");
  }

  if (!t::ValidateCodec(codec).ok()) return 0;
  t::CodecWorkspace workspace;
  auto decoded = t::DecodeTensor(frame, n, codec, &workspace);
  Check(!decoded.ok() || decoded->size() == n, "DecodeTensor returned another number of values");

  // Any floats (NaN and Inf included) encode, and decode to as many values.
  const size_t n_values = std::min<size_t>(frame.size() / sizeof(float), 4096);
  if (n_values == 0) return 0;
  std::vector<float> x(n_values);
  std::memcpy(x.data(), frame.data(), n_values * sizeof(float));
  auto encoded = t::EncodeTensor(x.data(), x.size(), codec, &workspace);
  Check(encoded.ok(), "EncodeTensor failed");
  auto round = t::DecodeTensor(*encoded, x.size(), codec, &workspace);
  Check(round.ok() && round->size() == x.size(), "an encoded tensor does not decode");
  if (codec.dtype == t::Dtype::kF32) {
    Check(std::memcmp(round->data(), x.data(), x.size() * sizeof(float)) == 0,
          "f32 does not round-trip bit for bit");
  }
  return 0;
}
