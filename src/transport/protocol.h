// The Swarm wire protocol as C++ value types. A message is a Cap'n Proto header frame
// (protocol.capnp, read and written only in protocol.cpp) plus, for messages that carry
// activations, one tensor frame of codec bytes. DecodeMessage treats both frames as hostile: it
// bounds the Cap'n Proto reader, validates every field and returns InvalidArgument / DataLoss /
// FailedPrecondition (protocol version) instead of throwing. Pure functions, any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "transport/capability.h"
#include "transport/codec.h"
#include "transport/payload.h"

namespace swarm::transport {

// Must equal `protocolVersion` in protocol.capnp (checked by a static_assert in protocol.cpp).
inline constexpr uint16_t kProtocolVersion = 2;

// Limits every decoded message is held to. Far below Cap'n Proto's own limits: a header is a few
// hundred bytes in practice.
inline constexpr size_t kMaxHeaderBytes = 64 * 1024;
inline constexpr size_t kMaxShortTextBytes = 256;  // ids, addresses, backend names
inline constexpr size_t kMaxErrorMessageBytes = 4096;
inline constexpr size_t kMaxRouteHops = 64;  // hops one sealed route may name
inline constexpr size_t kMaxSealedRouteBytes = 48 * 1024;
inline constexpr size_t kMaxTensorDims = 4;
inline constexpr uint64_t kMaxTensorElements = uint64_t{1} << 26;  // 256 MiB of f32
inline constexpr uint32_t kMaxBlocks = 4096;
inline constexpr int32_t kMaxTokensPerStep = 1 << 16;
inline constexpr int64_t kMaxPosition = int64_t{1} << 24;  // also the longest session

struct SessionId {
  uint64_t hi = 0;
  uint64_t lo = 0;
  friend bool operator==(const SessionId&, const SessionId&) = default;
  friend auto operator<=>(const SessionId&, const SessionId&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const SessionId& id) {
    return H::combine(std::move(h), id.hi, id.lo);
  }
  std::string ToString() const;  // 32 hex digits
  // 128 random bits from the OS (std::random_device). Knowing a session's id grants nothing: its
  // capabilities (transport/capability.h) authorise steps, rollbacks and closes.
  static SessionId Random();
};

// Shape and codec of a tensor frame. shape is in ggml order: dimension 0 innermost.
struct TensorDesc {
  Codec codec;
  std::vector<uint32_t> shape;  // e.g. [n_embd, n_tokens]
  friend bool operator==(const TensorDesc&, const TensorDesc&) = default;
  uint64_t num_elements() const;  // 0 if the shape is invalid
};

// The next hop of a pushed step, as the hop before it learns it (from its sealed route layer).
struct Hop {
  std::string address;  // a ZeroMQ endpoint, e.g. tcp://10.0.0.5:31337
  SessionId session_id;
  Codec codec;                 // codec of the link into this hop
  Capability push_capability;  // lets the hop before it push steps into that session
  friend bool operator==(const Hop&, const Hop&) = default;
};

struct InfoRequest {
  friend bool operator==(const InfoRequest&, const InfoRequest&) = default;
};

struct InfoReply {
  std::string peer_id;
  std::string model_id;
  uint32_t first_block = 0;
  uint32_t last_block = 0;  // exclusive
  std::string backend;
  double forward_tokens_per_sec = 0;
  double inference_steps_per_sec = 0;
  uint64_t free_cache_tokens = 0;
  uint32_t max_session_length = 0;
  friend bool operator==(const InfoReply&, const InfoReply&) = default;
};

struct OpenSession {
  SessionId session_id;
  uint32_t first_block = 0;
  uint32_t last_block = 0;
  uint32_t max_length = 0;
  Codec output_codec;
  uint32_t hop_index = 0;
  bool return_outputs = true;
  SessionCapabilities capabilities;  // all three required
  friend bool operator==(const OpenSession&, const OpenSession&) = default;
};

struct OpenSessionReply {
  SessionId session_id;
  bool accepted = false;
  uint32_t granted_length = 0;
  std::string reason;
  friend bool operator==(const OpenSessionReply&, const OpenSessionReply&) = default;
};

// The tensor frame holds the step's input: [n_embd, n_tokens].
struct Step {
  SessionId session_id;
  uint64_t step_id = 0;
  int64_t start_position = 0;
  int32_t n_tokens = 0;
  TensorDesc tensor;
  // The session's owner capability (a step from the client) or its push capability (a step the
  // upstream hop pushed).
  Capability capability;
  // This hop's RouteLayer sealed with its route key (route_seal.h); empty: no hop follows. A
  // pushed step must carry one.
  std::vector<uint8_t> sealed_route;
  friend bool operator==(const Step&, const Step&) = default;
};

// One hop's layer of a step's route, as that hop reads it after opening it with its route key. It
// is bound to one step (id, positions), names the next hop alone, and carries the next hop's
// layer sealed with the next hop's key, which this hop cannot read.
struct RouteLayer {
  uint64_t step_id = 0;
  int64_t start_position = 0;
  int32_t n_tokens = 0;
  bool redo =
      false;  // the client redoes positions this hop may hold (a step retried after failover)
  std::optional<Hop> next;           // none on the last hop
  std::vector<uint8_t> sealed_next;  // the next hop's sealed layer (empty when next is none)
  friend bool operator==(const RouteLayer&, const RouteLayer&) = default;
};

// The tensor frame holds the output of hop `hop_index`: [n_embd, n_tokens].
struct StepOutput {
  SessionId session_id;
  uint64_t step_id = 0;
  int64_t start_position = 0;
  int32_t n_tokens = 0;
  uint32_t hop_index = 0;
  uint32_t first_block = 0;
  uint32_t last_block = 0;
  TensorDesc tensor;
  friend bool operator==(const StepOutput&, const StepOutput&) = default;
};

struct CloseSession {
  SessionId session_id;
  Capability owner_capability;
  friend bool operator==(const CloseSession&, const CloseSession&) = default;
};

struct CloseSessionReply {
  SessionId session_id;
  friend bool operator==(const CloseSessionReply&, const CloseSessionReply&) = default;
};

struct ErrorReply {
  absl::StatusCode code = absl::StatusCode::kUnknown;
  std::string message;
  std::optional<SessionId> session_id;
  std::optional<uint64_t> step_id;
  friend bool operator==(const ErrorReply&, const ErrorReply&) = default;

  static ErrorReply FromStatus(const absl::Status& status,
                               std::optional<SessionId> session_id = std::nullopt,
                               std::optional<uint64_t> step_id = std::nullopt);
  absl::Status ToStatus() const;  // "peer: <message>" with the same code
};

struct Ping {
  uint64_t nonce = 0;
  uint64_t send_time_ns = 0;
  friend bool operator==(const Ping&, const Ping&) = default;
};

struct Pong {
  uint64_t nonce = 0;
  uint64_t send_time_ns = 0;
  friend bool operator==(const Pong&, const Pong&) = default;
};

// Reachability (peer/reachability.h): a peer asks a helper to dial `address` back; the helper
// sends a DialBackProbe there on a fresh connection and the answer must carry `nonce`, which only
// the asker knows.
struct DialBackRequest {
  std::string address;  // tcp://HOST:PORT (a helper dials nothing else)
  uint64_t nonce = 0;
  friend bool operator==(const DialBackRequest&, const DialBackRequest&) = default;
};

struct DialBackReply {
  bool reachable = false;
  std::string detail;  // why not
  friend bool operator==(const DialBackReply&, const DialBackReply&) = default;
};

struct DialBackProbe {
  friend bool operator==(const DialBackProbe&, const DialBackProbe&) = default;
};

struct DialBackProbeReply {
  uint64_t nonce = 0;  // the answering peer's dial-back nonce
  friend bool operator==(const DialBackProbeReply&, const DialBackProbeReply&) = default;
};

// A peer that cannot be reached registers with a relay (peer/relay_service.h), which answers with
// the public endpoint it opened for it.
struct RelayRegister {
  friend bool operator==(const RelayRegister&, const RelayRegister&) = default;
};

struct RelayRegistered {
  std::string endpoint;
  friend bool operator==(const RelayRegistered&, const RelayRegistered&) = default;
};

using Message =
    std::variant<InfoRequest, InfoReply, OpenSession, OpenSessionReply, Step, StepOutput,
                 CloseSession, CloseSessionReply, ErrorReply, Ping, Pong, DialBackRequest,
                 DialBackReply, DialBackProbe, DialBackProbeReply, RelayRegister, RelayRegistered>;

std::string_view MessageName(const Message& message);
// The tensor a message carries, or null for messages without a tensor frame.
const TensorDesc* MessageTensor(const Message& message);

// What travels: a header frame and, for Step/StepOutput, a tensor frame.
struct WireMessage {
  Payload header;
  std::optional<Payload> tensor;
};

struct Envelope {
  uint64_t request_id = 0;  // echoed by replies
  Message body;
  std::optional<Payload> tensor;  // codec bytes for messages that carry a tensor
};

struct DecodedMessage {
  uint16_t protocol_version = 0;
  uint64_t request_id = 0;
  Message body;
  std::optional<Payload> tensor;  // validated against the body's TensorDesc (size, codec)
};

// Checks every field the way DecodeMessage does (tensor frame size included); the same rules on
// both sides, so an encoder never emits what a decoder refuses.
absl::Status ValidateMessage(const Message& body, const std::optional<Payload>& tensor);

// InvalidArgument for a message that breaks the limits above.
absl::StatusOr<WireMessage> EncodeMessage(const Envelope& envelope);
absl::StatusOr<WireMessage> EncodeMessage(uint64_t request_id, Message body,
                                          std::optional<Payload> tensor = std::nullopt);

// header: untrusted bytes; tensor: the frame after it, if any.
// DataLoss: not a readable header, or a tensor frame whose size disagrees with its description.
// InvalidArgument: a field out of range, a missing or unexpected tensor frame.
// FailedPrecondition: another protocol version (the message says which).
absl::StatusOr<DecodedMessage> DecodeMessage(std::span<const uint8_t> header,
                                             std::optional<Payload> tensor);
absl::StatusOr<DecodedMessage> DecodeMessage(const WireMessage& wire);

// A route layer as the bytes route_seal.h seals, and back. Decoding treats the bytes as hostile
// (they open only with the hop's key, but the client who sealed them is not trusted either):
// DataLoss for unreadable bytes, InvalidArgument for a field out of range.
absl::StatusOr<std::vector<uint8_t>> EncodeRouteLayer(const RouteLayer& layer);
absl::StatusOr<RouteLayer> DecodeRouteLayer(std::span<const uint8_t> bytes);

// Best effort: the request id of a header DecodeMessage refused, so the error reply can echo it.
std::optional<uint64_t> PeekRequestId(std::span<const uint8_t> header);

// Encodes x: [shape] with codec into a tensor frame and its description.
struct EncodedTensor {
  TensorDesc desc;
  Payload bytes;
};
absl::StatusOr<EncodedTensor> EncodeActivations(std::span<const float> x,
                                                std::vector<uint32_t> shape, const Codec& codec,
                                                CodecWorkspace* workspace = nullptr);
// Decodes the tensor of a decoded message (Step, StepOutput).
absl::StatusOr<std::vector<float>> DecodeActivations(const DecodedMessage& message,
                                                     CodecWorkspace* workspace = nullptr);
// The same, for a receiver that knows what it asked for: DataLoss, before anything is allocated
// or inflated, when the message declares another shape or codec than `expected` (a peer's output
// declaring more values than the step has would otherwise cost what it declares).
absl::StatusOr<std::vector<float>> DecodeActivations(const DecodedMessage& message,
                                                     const TensorDesc& expected,
                                                     CodecWorkspace* workspace = nullptr);

}  // namespace swarm::transport
