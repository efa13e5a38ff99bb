// libFuzzer target: a peer's incoming message, header frame and optional tensor frame, through
// transport::DecodeMessage, then what a peer does with an accepted one (decode its activations).
// Input: u32 little-endian (bit 31: a tensor frame follows; low bits: header length), the
// header bytes, then the tensor frame. An accepted message must re-encode to the same message.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>

#include "transport/payload.h"
#include "transport/protocol.h"

namespace {

using swarm::transport::Payload;

// Activations larger than this are not decoded: a zstd frame may legitimately declare up to
// kMaxTensorElements values (256 MiB), which only slows the fuzzer down.
constexpr uint64_t kMaxDecodedElements = uint64_t{1} << 20;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_wire_message: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  uint32_t prefix;
  std::memcpy(&prefix, data, 4);
  std::span<const uint8_t> rest(data + 4, size - 4);
  const size_t header_size = std::min<size_t>(prefix & 0x7fffffffu, rest.size());
  std::span<const uint8_t> header = rest.first(header_size);
  std::optional<Payload> tensor;
  if (prefix & 0x80000000u) tensor = Payload::Copy(rest.subspan(header_size));

  const std::optional<uint64_t> peeked = swarm::transport::PeekRequestId(header);
  auto decoded = swarm::transport::DecodeMessage(header, tensor);
  if (!decoded.ok()) return 0;
  Check(peeked == decoded->request_id, "PeekRequestId disagrees with DecodeMessage");
  Check(swarm::transport::ValidateMessage(decoded->body, decoded->tensor).ok(),
        "a decoded message fails ValidateMessage");

  // What the decoder accepts, the encoder writes, and it reads back as the same message.
  auto wire = swarm::transport::EncodeMessage(decoded->request_id, decoded->body, decoded->tensor);
  Check(wire.ok(), "a decoded message does not re-encode");
  auto again = swarm::transport::DecodeMessage(*wire);
  Check(again.ok(), "a re-encoded message does not decode");
  Check(again->request_id == decoded->request_id && again->body == decoded->body,
        "a re-encoded message decodes differently");

  const swarm::transport::TensorDesc* desc = swarm::transport::MessageTensor(decoded->body);
  if (desc != nullptr && desc->num_elements() <= kMaxDecodedElements) {
    auto values = swarm::transport::DecodeActivations(*decoded);
    Check(!values.ok() || values->size() == desc->num_elements(),
          "decoded activations do not match their shape");
  }
  return 0;
}
