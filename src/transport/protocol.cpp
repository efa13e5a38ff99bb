#include "transport/protocol.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cmath>
#include <cstring>
#include <new>
#include <random>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/absl_compat.h"
#include "base/checked_math.h"
#include "base/status_macros.h"
#include "transport/protocol.capnp.h"

namespace swarm::transport {

static_assert(kProtocolVersion == wire::PROTOCOL_VERSION,
              "kProtocolVersion must match protocolVersion in protocol.capnp");

namespace {

// A header is at most kMaxHeaderBytes; the decoder reads each word at most about twice, so any
// message that makes the reader traverse more is hostile (shared or overlapping pointers).
constexpr uint64_t kTraversalLimitWords = 2 * kMaxHeaderBytes / sizeof(capnp::word);
constexpr int kNestingLimit = 8;  // the schema nests 4 deep (Envelope > Step > TensorDesc > Codec)

capnp::ReaderOptions HeaderReaderOptions() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = kTraversalLimitWords;
  options.nestingLimit = kNestingLimit;
  return options;
}

// ---------------------------------------------------------------------------------------------
// Validation (shared by encoder and decoder)

absl::Status CheckText(const std::string& s, size_t max, std::string_view field) {
  if (s.size() > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(ToAbsl(field), " is ", s.size(), " bytes, longer than ", max));
  }
  return absl::OkStatus();
}

absl::Status CheckBlockRange(uint32_t first, uint32_t last, bool allow_empty) {
  if (last > kMaxBlocks || first > last || (!allow_empty && first == last)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad block range [", first, ", ", last, ") (at most ", kMaxBlocks, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckTokens(int64_t start_position, int32_t n_tokens) {
  if (n_tokens <= 0 || n_tokens > kMaxTokensPerStep) {
    return absl::InvalidArgumentError(
        absl::StrCat("n_tokens ", n_tokens, " outside [1, ", kMaxTokensPerStep, "]"));
  }
  // Both bounded, so the sum cannot overflow.
  if (start_position < 0 || start_position > kMaxPosition ||
      start_position + n_tokens > kMaxPosition) {
    return absl::InvalidArgumentError(absl::StrCat("positions [", start_position, ", +", n_tokens,
                                                   ") outside [0, ", kMaxPosition, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckTensor(const TensorDesc& desc, int32_t n_tokens, size_t min_dims, size_t max_dims,
                         const std::optional<Payload>& tensor) {
  SWARM_RETURN_IF_ERROR(ValidateCodec(desc.codec));
  if (desc.shape.size() < min_dims || desc.shape.size() > max_dims) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor has ", desc.shape.size(), " dimensions, expected ", min_dims, "..", max_dims));
  }
  uint64_t elements = 1;
  for (uint32_t d : desc.shape) {
    auto product = CheckedMul(elements, d);
    if (d == 0 || !product || *product > kMaxTensorElements) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor shape has a zero dimension or more than ", kMaxTensorElements, " elements"));
    }
    elements = *product;
  }
  if (desc.shape.size() >= 2 && desc.shape[1] != static_cast<uint64_t>(n_tokens)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor shape[1] = ", desc.shape[1], " but n_tokens = ", n_tokens));
  }
  if (!tensor) return absl::InvalidArgumentError("message lacks its tensor frame");
  SWARM_ASSIGN_OR_RETURN(uint64_t raw, RawEncodedSize(desc.codec, elements));
  if (!desc.codec.zstd) {
    if (tensor->size() != raw) {
      return absl::DataLossError(absl::StrCat("tensor frame of ", tensor->size(),
                                              " bytes, expected ", raw, " for ",
                                              CodecName(desc.codec), " x ", elements));
    }
  } else {
    SWARM_ASSIGN_OR_RETURN(uint64_t bound, MaxEncodedSize(desc.codec, elements));
    if (tensor->empty() || tensor->size() > bound) {
      return absl::DataLossError(absl::StrCat("zstd tensor frame of ", tensor->size(),
                                              " bytes for ", elements, " values"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckNoTensor(const std::optional<Payload>& tensor) {
  if (tensor) return absl::InvalidArgumentError("unexpected tensor frame");
  return absl::OkStatus();
}

absl::Status CheckRate(double v, std::string_view field) {
  if (!std::isfinite(v) || v < 0) {
    return absl::InvalidArgumentError(absl::StrCat(ToAbsl(field), " is not a finite rate: ", v));
  }
  return absl::OkStatus();
}

absl::Status CheckLength(uint64_t length, std::string_view field) {
  if (length > static_cast<uint64_t>(kMaxPosition)) {
    return absl::InvalidArgumentError(
        absl::StrCat(ToAbsl(field), " ", length, " exceeds ", kMaxPosition));
  }
  return absl::OkStatus();
}

absl::Status CheckSealedBytes(size_t size, std::string_view field) {
  if (size > kMaxSealedRouteBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(ToAbsl(field), " of ", size, " bytes, at most ", kMaxSealedRouteBytes));
  }
  return absl::OkStatus();
}

absl::Status CheckHop(const Hop& hop) {
  if (hop.address.empty()) return absl::InvalidArgumentError("route hop without address");
  SWARM_RETURN_IF_ERROR(CheckText(hop.address, kMaxShortTextBytes, "hop address"));
  SWARM_RETURN_IF_ERROR(ValidateCodec(hop.codec));
  if (hop.push_capability.empty()) {
    return absl::InvalidArgumentError("route hop without its push capability");
  }
  return absl::OkStatus();
}

absl::Status CheckRouteLayer(const RouteLayer& layer) {
  SWARM_RETURN_IF_ERROR(CheckTokens(layer.start_position, layer.n_tokens));
  if (layer.next) SWARM_RETURN_IF_ERROR(CheckHop(*layer.next));
  if (!layer.next && !layer.sealed_next.empty()) {
    return absl::InvalidArgumentError("route layer carries a layer for no next hop");
  }
  return CheckSealedBytes(layer.sealed_next.size(), "next hop's sealed layer");
}

struct Validator {
  const std::optional<Payload>& tensor;

  absl::Status operator()(const InfoRequest&) const { return CheckNoTensor(tensor); }
  absl::Status operator()(const InfoReply& m) const {
    SWARM_RETURN_IF_ERROR(CheckText(m.peer_id, kMaxShortTextBytes, "peer_id"));
    SWARM_RETURN_IF_ERROR(CheckText(m.model_id, kMaxShortTextBytes, "model_id"));
    SWARM_RETURN_IF_ERROR(CheckText(m.backend, kMaxShortTextBytes, "backend"));
    SWARM_RETURN_IF_ERROR(CheckBlockRange(m.first_block, m.last_block, /*allow_empty=*/true));
    SWARM_RETURN_IF_ERROR(CheckRate(m.forward_tokens_per_sec, "forward_tokens_per_sec"));
    SWARM_RETURN_IF_ERROR(CheckRate(m.inference_steps_per_sec, "inference_steps_per_sec"));
    SWARM_RETURN_IF_ERROR(CheckLength(m.max_session_length, "max_session_length"));
    return CheckNoTensor(tensor);
  }
  absl::Status operator()(const OpenSession& m) const {
    SWARM_RETURN_IF_ERROR(CheckBlockRange(m.first_block, m.last_block, false));
    if (m.max_length == 0) return absl::InvalidArgumentError("max_length is 0");
    SWARM_RETURN_IF_ERROR(CheckLength(m.max_length, "max_length"));
    SWARM_RETURN_IF_ERROR(ValidateCodec(m.output_codec));
    if (m.hop_index > kMaxBlocks) {
      return absl::InvalidArgumentError(absl::StrCat("hop_index ", m.hop_index, " too large"));
    }
    if (!m.capabilities.complete()) {
      return absl::InvalidArgumentError(
          "opening without its capabilities (owner, push, route key): the session would belong "
          "to anyone who knows its id");
    }
    return CheckNoTensor(tensor);
  }
  absl::Status operator()(const OpenSessionReply& m) const {
    SWARM_RETURN_IF_ERROR(CheckLength(m.granted_length, "granted_length"));
    SWARM_RETURN_IF_ERROR(CheckText(m.reason, kMaxErrorMessageBytes, "reason"));
    return CheckNoTensor(tensor);
  }
  absl::Status operator()(const Step& m) const {
    SWARM_RETURN_IF_ERROR(CheckTokens(m.start_position, m.n_tokens));
    SWARM_RETURN_IF_ERROR(CheckSealedBytes(m.sealed_route.size(), "sealed route"));
    return CheckTensor(m.tensor, m.n_tokens, 2, 2, tensor);
  }
  absl::Status operator()(const StepOutput& m) const {
    SWARM_RETURN_IF_ERROR(CheckTokens(m.start_position, m.n_tokens));
    SWARM_RETURN_IF_ERROR(CheckBlockRange(m.first_block, m.last_block, false));
    if (m.hop_index > kMaxBlocks) {
      return absl::InvalidArgumentError(absl::StrCat("hop_index ", m.hop_index, " too large"));
    }
    return CheckTensor(m.tensor, m.n_tokens, 2, 2, tensor);
  }
  absl::Status operator()(const CloseSession&) const { return CheckNoTensor(tensor); }
  absl::Status operator()(const CloseSessionReply&) const { return CheckNoTensor(tensor); }
  absl::Status operator()(const ErrorReply& m) const {
    SWARM_RETURN_IF_ERROR(CheckText(m.message, kMaxErrorMessageBytes, "error message"));
    return CheckNoTensor(tensor);
  }
  absl::Status operator()(const Ping&) const { return CheckNoTensor(tensor); }
  absl::Status operator()(const Pong&) const { return CheckNoTensor(tensor); }
  absl::Status operator()(const DialBackRequest& m) const {
    SWARM_RETURN_IF_ERROR(CheckText(m.address, kMaxShortTextBytes, "dial-back address"));
    return CheckNoTensor(tensor);
  }
  absl::Status operator()(const DialBackReply& m) const {
    SWARM_RETURN_IF_ERROR(CheckText(m.detail, kMaxErrorMessageBytes, "dial-back detail"));
    return CheckNoTensor(tensor);
  }
  absl::Status operator()(const DialBackProbe&) const { return CheckNoTensor(tensor); }
  absl::Status operator()(const DialBackProbeReply&) const { return CheckNoTensor(tensor); }
  absl::Status operator()(const RelayRegister&) const { return CheckNoTensor(tensor); }
  absl::Status operator()(const RelayRegistered& m) const {
    SWARM_RETURN_IF_ERROR(CheckText(m.endpoint, kMaxShortTextBytes, "relay endpoint"));
    return CheckNoTensor(tensor);
  }
};

// ---------------------------------------------------------------------------------------------
// C++ -> Cap'n Proto

void Write(const SessionId& id, wire::SessionId::Builder b) {
  b.setHi(id.hi);
  b.setLo(id.lo);
}

void Write(const Codec& c, wire::Codec::Builder b) {
  b.setDtype(static_cast<wire::Dtype>(c.dtype));
  b.setZstd(c.zstd);
  if (c.dtype == Dtype::kInt8Block) {
    b.setBlockSize(c.block_size);
    b.setScaleF16(c.scale_f16);
  }
}

void Write(const TensorDesc& d, uint64_t frame_bytes, wire::TensorDesc::Builder b) {
  Write(d.codec, b.initCodec());
  auto shape = b.initShape(static_cast<unsigned>(d.shape.size()));
  for (size_t i = 0; i < d.shape.size(); ++i) shape.set(static_cast<unsigned>(i), d.shape[i]);
  b.setFrameBytes(frame_bytes);
}

capnp::Text::Reader AsText(const std::string& s) { return capnp::Text::Reader(s.data(), s.size()); }

capnp::Data::Reader AsData(std::span<const uint8_t> bytes) {
  return capnp::Data::Reader(bytes.data(), bytes.size());
}

// An empty secret is not written: the reader takes a missing field for "none given".
template <size_t N>
void WriteSecret(const Secret<N>& secret, auto&& set) {
  if (!secret.empty()) set(AsData(secret.bytes));
}

void Write(const Hop& hop, wire::Hop::Builder b) {
  b.setAddress(AsText(hop.address));
  Write(hop.session_id, b.initSessionId());
  Write(hop.codec, b.initCodec());
  WriteSecret(hop.push_capability, [&](auto d) { b.setPushCapability(d); });
}

struct Writer {
  wire::Envelope::Body::Builder body;
  uint64_t frame_bytes;

  void operator()(const InfoRequest&) { body.initInfoRequest(); }
  void operator()(const InfoReply& m) {
    auto b = body.initInfoReply();
    b.setPeerId(AsText(m.peer_id));
    b.setModelId(AsText(m.model_id));
    b.setFirstBlock(m.first_block);
    b.setLastBlock(m.last_block);
    b.setBackend(AsText(m.backend));
    b.setForwardTokensPerSec(m.forward_tokens_per_sec);
    b.setInferenceStepsPerSec(m.inference_steps_per_sec);
    b.setFreeCacheTokens(m.free_cache_tokens);
    b.setMaxSessionLength(m.max_session_length);
  }
  void operator()(const OpenSession& m) {
    auto b = body.initOpenSession();
    Write(m.session_id, b.initSessionId());
    b.setFirstBlock(m.first_block);
    b.setLastBlock(m.last_block);
    b.setMaxLength(m.max_length);
    Write(m.output_codec, b.initOutputCodec());
    b.setHopIndex(m.hop_index);
    b.setReturnOutputs(m.return_outputs);
    WriteSecret(m.capabilities.owner, [&](auto d) { b.setOwnerCapability(d); });
    WriteSecret(m.capabilities.push, [&](auto d) { b.setPushCapability(d); });
    WriteSecret(m.capabilities.route_key, [&](auto d) { b.setRouteKey(d); });
  }
  void operator()(const OpenSessionReply& m) {
    auto b = body.initOpenSessionReply();
    Write(m.session_id, b.initSessionId());
    b.setAccepted(m.accepted);
    b.setGrantedLength(m.granted_length);
    b.setReason(AsText(m.reason));
  }
  void operator()(const Step& m) {
    auto b = body.initStep();
    Write(m.session_id, b.initSessionId());
    b.setStepId(m.step_id);
    b.setStartPosition(m.start_position);
    b.setNTokens(m.n_tokens);
    Write(m.tensor, frame_bytes, b.initTensor());
    WriteSecret(m.capability, [&](auto d) { b.setCapability(d); });
    if (!m.sealed_route.empty()) b.setSealedRoute(AsData(m.sealed_route));
  }
  void operator()(const StepOutput& m) {
    auto b = body.initStepOutput();
    Write(m.session_id, b.initSessionId());
    b.setStepId(m.step_id);
    b.setStartPosition(m.start_position);
    b.setNTokens(m.n_tokens);
    b.setHopIndex(m.hop_index);
    b.setFirstBlock(m.first_block);
    b.setLastBlock(m.last_block);
    Write(m.tensor, frame_bytes, b.initTensor());
  }
  void operator()(const CloseSession& m) {
    auto b = body.initCloseSession();
    Write(m.session_id, b.initSessionId());
    WriteSecret(m.owner_capability, [&](auto d) { b.setOwnerCapability(d); });
  }
  void operator()(const CloseSessionReply& m) {
    Write(m.session_id, body.initCloseSessionReply().initSessionId());
  }
  void operator()(const ErrorReply& m) {
    auto b = body.initError();
    b.setCode(static_cast<uint16_t>(m.code));
    b.setMessage(AsText(m.message));
    if (m.session_id) Write(*m.session_id, b.initSessionId());
    b.setHasStepId(m.step_id.has_value());
    b.setStepId(m.step_id.value_or(0));
  }
  void operator()(const Ping& m) {
    auto b = body.initPing();
    b.setNonce(m.nonce);
    b.setSendTimeNs(m.send_time_ns);
  }
  void operator()(const Pong& m) {
    auto b = body.initPong();
    b.setNonce(m.nonce);
    b.setSendTimeNs(m.send_time_ns);
  }
  void operator()(const DialBackRequest& m) {
    auto b = body.initDialBackRequest();
    b.setAddress(AsText(m.address));
    b.setNonce(m.nonce);
  }
  void operator()(const DialBackReply& m) {
    auto b = body.initDialBackReply();
    b.setReachable(m.reachable);
    b.setDetail(AsText(m.detail));
  }
  void operator()(const DialBackProbe&) { body.initDialBackProbe(); }
  void operator()(const DialBackProbeReply& m) { body.initDialBackProbeReply().setNonce(m.nonce); }
  void operator()(const RelayRegister&) { body.initRelayRegister(); }
  void operator()(const RelayRegistered& m) {
    body.initRelayRegistered().setEndpoint(AsText(m.endpoint));
  }
};

// ---------------------------------------------------------------------------------------------
// Cap'n Proto -> C++ (every getter may throw kj::Exception on a malformed pointer; the caller
// catches it)

absl::StatusOr<std::string> ReadText(bool has, capnp::Text::Reader text, size_t max,
                                     std::string_view field) {
  if (!has) return std::string();
  if (text.size() > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(ToAbsl(field), " is ", text.size(), " bytes, longer than ", max));
  }
  return std::string(text.cStr(), text.size());
}

SessionId Read(wire::SessionId::Reader r) { return SessionId{r.getHi(), r.getLo()}; }

// A secret field: absent (none given) or exactly its size.
template <typename S>
absl::StatusOr<S> ReadSecret(bool has, capnp::Data::Reader data, std::string_view field) {
  if (!has || data.size() == 0) return S{};
  if (data.size() != S::kSize) {
    return absl::InvalidArgumentError(
        absl::StrCat(ToAbsl(field), " of ", data.size(), " bytes, expected ", S::kSize));
  }
  return S::FromBytes(std::span<const uint8_t>(data.begin(), data.size()));
}

absl::StatusOr<std::vector<uint8_t>> ReadSealed(bool has, capnp::Data::Reader data,
                                                std::string_view field) {
  if (!has) return std::vector<uint8_t>();
  SWARM_RETURN_IF_ERROR(CheckSealedBytes(data.size(), field));
  return std::vector<uint8_t>(data.begin(), data.end());
}

absl::StatusOr<Codec> Read(wire::Codec::Reader r) {
  const auto dtype = static_cast<uint16_t>(r.getDtype());
  if (dtype > static_cast<uint16_t>(Dtype::kInt8Block)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown codec dtype ", dtype));
  }
  Codec codec;
  codec.dtype = static_cast<Dtype>(dtype);
  codec.zstd = r.getZstd();
  if (codec.dtype == Dtype::kInt8Block) {
    codec.block_size = r.getBlockSize();
    codec.scale_f16 = r.getScaleF16();
  }
  SWARM_RETURN_IF_ERROR(ValidateCodec(codec));
  return codec;
}

absl::StatusOr<TensorDesc> Read(wire::TensorDesc::Reader r, const std::optional<Payload>& tensor) {
  TensorDesc desc;
  SWARM_ASSIGN_OR_RETURN(desc.codec, Read(r.getCodec()));
  auto shape = r.getShape();
  if (shape.size() > kMaxTensorDims) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor has ", shape.size(), " dimensions, at most ", kMaxTensorDims));
  }
  for (uint32_t d : shape) desc.shape.push_back(d);
  const uint64_t actual = tensor ? tensor->size() : 0;
  if (tensor && r.getFrameBytes() != actual) {
    return absl::DataLossError(
        absl::StrCat("tensor frame of ", actual, " bytes, header says ", r.getFrameBytes()));
  }
  return desc;
}

absl::StatusOr<Message> ReadBody(wire::Envelope::Body::Reader body,
                                 const std::optional<Payload>& tensor) {
  switch (body.which()) {
    case wire::Envelope::Body::INFO_REQUEST:
      return InfoRequest{};
    case wire::Envelope::Body::INFO_REPLY: {
      auto r = body.getInfoReply();
      InfoReply m;
      SWARM_ASSIGN_OR_RETURN(m.peer_id,
                             ReadText(r.hasPeerId(), r.getPeerId(), kMaxShortTextBytes, "peer_id"));
      SWARM_ASSIGN_OR_RETURN(
          m.model_id, ReadText(r.hasModelId(), r.getModelId(), kMaxShortTextBytes, "model_id"));
      SWARM_ASSIGN_OR_RETURN(
          m.backend, ReadText(r.hasBackend(), r.getBackend(), kMaxShortTextBytes, "backend"));
      m.first_block = r.getFirstBlock();
      m.last_block = r.getLastBlock();
      m.forward_tokens_per_sec = r.getForwardTokensPerSec();
      m.inference_steps_per_sec = r.getInferenceStepsPerSec();
      m.free_cache_tokens = r.getFreeCacheTokens();
      m.max_session_length = r.getMaxSessionLength();
      return m;
    }
    case wire::Envelope::Body::OPEN_SESSION: {
      auto r = body.getOpenSession();
      OpenSession m;
      m.session_id = Read(r.getSessionId());
      m.first_block = r.getFirstBlock();
      m.last_block = r.getLastBlock();
      m.max_length = r.getMaxLength();
      SWARM_ASSIGN_OR_RETURN(m.output_codec, Read(r.getOutputCodec()));
      m.hop_index = r.getHopIndex();
      m.return_outputs = r.getReturnOutputs();
      SWARM_ASSIGN_OR_RETURN(m.capabilities.owner,
                             ReadSecret<Capability>(r.hasOwnerCapability(), r.getOwnerCapability(),
                                                    "owner capability"));
      SWARM_ASSIGN_OR_RETURN(
          m.capabilities.push,
          ReadSecret<Capability>(r.hasPushCapability(), r.getPushCapability(), "push capability"));
      SWARM_ASSIGN_OR_RETURN(m.capabilities.route_key,
                             ReadSecret<RouteKey>(r.hasRouteKey(), r.getRouteKey(), "route key"));
      return m;
    }
    case wire::Envelope::Body::OPEN_SESSION_REPLY: {
      auto r = body.getOpenSessionReply();
      OpenSessionReply m;
      m.session_id = Read(r.getSessionId());
      m.accepted = r.getAccepted();
      m.granted_length = r.getGrantedLength();
      SWARM_ASSIGN_OR_RETURN(
          m.reason, ReadText(r.hasReason(), r.getReason(), kMaxErrorMessageBytes, "reason"));
      return m;
    }
    case wire::Envelope::Body::STEP: {
      auto r = body.getStep();
      Step m;
      m.session_id = Read(r.getSessionId());
      m.step_id = r.getStepId();
      m.start_position = r.getStartPosition();
      m.n_tokens = r.getNTokens();
      SWARM_ASSIGN_OR_RETURN(m.tensor, Read(r.getTensor(), tensor));
      SWARM_ASSIGN_OR_RETURN(
          m.capability, ReadSecret<Capability>(r.hasCapability(), r.getCapability(), "capability"));
      SWARM_ASSIGN_OR_RETURN(m.sealed_route,
                             ReadSealed(r.hasSealedRoute(), r.getSealedRoute(), "sealed route"));
      return m;
    }
    case wire::Envelope::Body::STEP_OUTPUT: {
      auto r = body.getStepOutput();
      StepOutput m;
      m.session_id = Read(r.getSessionId());
      m.step_id = r.getStepId();
      m.start_position = r.getStartPosition();
      m.n_tokens = r.getNTokens();
      m.hop_index = r.getHopIndex();
      m.first_block = r.getFirstBlock();
      m.last_block = r.getLastBlock();
      SWARM_ASSIGN_OR_RETURN(m.tensor, Read(r.getTensor(), tensor));
      return m;
    }
    case wire::Envelope::Body::CLOSE_SESSION: {
      auto r = body.getCloseSession();
      CloseSession m;
      m.session_id = Read(r.getSessionId());
      SWARM_ASSIGN_OR_RETURN(m.owner_capability,
                             ReadSecret<Capability>(r.hasOwnerCapability(), r.getOwnerCapability(),
                                                    "owner capability"));
      return m;
    }
    case wire::Envelope::Body::CLOSE_SESSION_REPLY:
      return CloseSessionReply{Read(body.getCloseSessionReply().getSessionId())};
    case wire::Envelope::Body::ERROR: {
      auto r = body.getError();
      ErrorReply m;
      const uint16_t code = r.getCode();
      // An error is an error: a code this build does not know still fails the request.
      m.code = (code >= 1 && code <= static_cast<uint16_t>(absl::StatusCode::kUnauthenticated))
                   ? static_cast<absl::StatusCode>(code)
                   : absl::StatusCode::kUnknown;
      SWARM_ASSIGN_OR_RETURN(m.message, ReadText(r.hasMessage(), r.getMessage(),
                                                 kMaxErrorMessageBytes, "error message"));
      if (r.hasSessionId()) m.session_id = Read(r.getSessionId());
      if (r.getHasStepId()) m.step_id = r.getStepId();
      return m;
    }
    case wire::Envelope::Body::PING:
      return Ping{body.getPing().getNonce(), body.getPing().getSendTimeNs()};
    case wire::Envelope::Body::PONG:
      return Pong{body.getPong().getNonce(), body.getPong().getSendTimeNs()};
    case wire::Envelope::Body::DIAL_BACK_REQUEST: {
      auto r = body.getDialBackRequest();
      DialBackRequest m;
      SWARM_ASSIGN_OR_RETURN(m.address, ReadText(r.hasAddress(), r.getAddress(), kMaxShortTextBytes,
                                                 "dial-back address"));
      m.nonce = r.getNonce();
      return m;
    }
    case wire::Envelope::Body::DIAL_BACK_REPLY: {
      auto r = body.getDialBackReply();
      DialBackReply m;
      m.reachable = r.getReachable();
      SWARM_ASSIGN_OR_RETURN(m.detail, ReadText(r.hasDetail(), r.getDetail(), kMaxErrorMessageBytes,
                                                "dial-back detail"));
      return m;
    }
    case wire::Envelope::Body::DIAL_BACK_PROBE:
      return DialBackProbe{};
    case wire::Envelope::Body::DIAL_BACK_PROBE_REPLY:
      return DialBackProbeReply{body.getDialBackProbeReply().getNonce()};
    case wire::Envelope::Body::RELAY_REGISTER:
      return RelayRegister{};
    case wire::Envelope::Body::RELAY_REGISTERED: {
      auto r = body.getRelayRegistered();
      RelayRegistered m;
      SWARM_ASSIGN_OR_RETURN(m.endpoint, ReadText(r.hasEndpoint(), r.getEndpoint(),
                                                  kMaxShortTextBytes, "relay endpoint"));
      return m;
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown message type ", static_cast<int>(body.which())));
}

absl::StatusOr<Hop> ReadHop(wire::Hop::Reader hop) {
  Hop h;
  SWARM_ASSIGN_OR_RETURN(
      h.address, ReadText(hop.hasAddress(), hop.getAddress(), kMaxShortTextBytes, "hop address"));
  h.session_id = Read(hop.getSessionId());
  SWARM_ASSIGN_OR_RETURN(h.codec, Read(hop.getCodec()));
  SWARM_ASSIGN_OR_RETURN(
      h.push_capability,
      ReadSecret<Capability>(hop.hasPushCapability(), hop.getPushCapability(), "push capability"));
  return h;
}

absl::StatusOr<RouteLayer> ReadRouteLayer(wire::RouteLayer::Reader r) {
  RouteLayer layer;
  layer.step_id = r.getStepId();
  layer.start_position = r.getStartPosition();
  layer.n_tokens = r.getNTokens();
  layer.redo = r.getRedo();
  if (r.hasNext()) {
    SWARM_ASSIGN_OR_RETURN(layer.next, ReadHop(r.getNext()));
  }
  SWARM_ASSIGN_OR_RETURN(layer.sealed_next, ReadSealed(r.hasSealedNext(), r.getSealedNext(),
                                                       "next hop's sealed layer"));
  return layer;
}

// Copies the header into word-aligned memory (a received frame has no alignment guarantee).
absl::StatusOr<kj::Array<capnp::word>> AlignedWords(std::span<const uint8_t> header) {
  if (header.empty()) return absl::DataLossError("empty message header");
  if (header.size() > kMaxHeaderBytes) {
    return absl::DataLossError(
        absl::StrCat("message header of ", header.size(), " bytes exceeds ", kMaxHeaderBytes));
  }
  if (header.size() % sizeof(capnp::word) != 0) {
    return absl::DataLossError(
        absl::StrCat("message header of ", header.size(), " bytes is not whole words"));
  }
  auto words = kj::heapArray<capnp::word>(header.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), header.data(), header.size());
  return words;
}

}  // namespace

std::string SessionId::ToString() const { return absl::StrFormat("%016x%016x", hi, lo); }

SessionId SessionId::Random() {
  std::random_device rd;
  auto next64 = [&rd] { return (static_cast<uint64_t>(rd()) << 32) ^ rd(); };
  return SessionId{next64(), next64()};
}

uint64_t TensorDesc::num_elements() const {
  if (shape.empty() || shape.size() > kMaxTensorDims) return 0;
  uint64_t n = 1;
  for (uint32_t d : shape) {
    auto p = CheckedMul(n, d);
    if (!p) return 0;
    n = *p;
  }
  return n;
}

ErrorReply ErrorReply::FromStatus(const absl::Status& status, std::optional<SessionId> session_id,
                                  std::optional<uint64_t> step_id) {
  ErrorReply e;
  e.code = status.ok() ? absl::StatusCode::kUnknown : status.code();
  e.message = std::string(status.message());
  if (e.message.size() > kMaxErrorMessageBytes) e.message.resize(kMaxErrorMessageBytes);
  e.session_id = session_id;
  e.step_id = step_id;
  return e;
}

absl::Status ErrorReply::ToStatus() const {
  return absl::Status(code == absl::StatusCode::kOk ? absl::StatusCode::kUnknown : code,
                      absl::StrCat("peer: ", message));
}

std::string_view MessageName(const Message& message) {
  static constexpr std::string_view kNames[] = {"InfoRequest",
                                                "InfoReply",
                                                "OpenSession",
                                                "OpenSessionReply",
                                                "Step",
                                                "StepOutput",
                                                "CloseSession",
                                                "CloseSessionReply",
                                                "Error",
                                                "Ping",
                                                "Pong",
                                                "DialBackRequest",
                                                "DialBackReply",
                                                "DialBackProbe",
                                                "DialBackProbeReply",
                                                "RelayRegister",
                                                "RelayRegistered"};
  static_assert(std::size(kNames) == std::variant_size_v<Message>);
  return kNames[message.index()];
}

const TensorDesc* MessageTensor(const Message& message) {
  return std::visit(
      [](const auto& m) -> const TensorDesc* {
        if constexpr (requires { m.tensor; }) {
          return &m.tensor;
        } else {
          return nullptr;
        }
      },
      message);
}

absl::Status ValidateMessage(const Message& body, const std::optional<Payload>& tensor) {
  return std::visit(Validator{tensor}, body);
}

absl::StatusOr<WireMessage> EncodeMessage(const Envelope& envelope) {
  SWARM_RETURN_IF_ERROR(ValidateMessage(envelope.body, envelope.tensor));
  try {
    capnp::MallocMessageBuilder builder(256);
    auto root = builder.initRoot<wire::Envelope>();
    root.setVersion(kProtocolVersion);
    root.setRequestId(envelope.request_id);
    std::visit(Writer{root.initBody(), envelope.tensor ? envelope.tensor->size() : 0},
               envelope.body);
    auto words = std::make_shared<kj::Array<capnp::word>>(capnp::messageToFlatArray(builder));
    auto bytes = words->asBytes();
    if (bytes.size() > kMaxHeaderBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("message header of ", bytes.size(), " bytes exceeds ", kMaxHeaderBytes));
    }
    WireMessage wire;
    wire.header = Payload::Adopt(words, std::span<const uint8_t>(bytes.begin(), bytes.size()));
    wire.tensor = envelope.tensor;
    return wire;
  } catch (const kj::Exception& e) {
    return absl::InternalError(absl::StrCat("capnp encode: ", e.getDescription().cStr()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory encoding a message");
  }
}

absl::StatusOr<WireMessage> EncodeMessage(uint64_t request_id, Message body,
                                          std::optional<Payload> tensor) {
  return EncodeMessage(Envelope{request_id, std::move(body), std::move(tensor)});
}

absl::StatusOr<DecodedMessage> DecodeMessage(std::span<const uint8_t> header,
                                             std::optional<Payload> tensor) {
  SWARM_ASSIGN_OR_RETURN(kj::Array<capnp::word> words, AlignedWords(header));
  DecodedMessage decoded;
  try {
    capnp::FlatArrayMessageReader reader(words.asPtr(), HeaderReaderOptions());
    if (reader.getEnd() != words.end()) {
      return absl::DataLossError("trailing bytes after the message header");
    }
    auto root = reader.getRoot<wire::Envelope>();
    decoded.protocol_version = root.getVersion();
    decoded.request_id = root.getRequestId();
    if (decoded.protocol_version != kProtocolVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          "protocol version ", decoded.protocol_version, ", this build speaks ", kProtocolVersion));
    }
    SWARM_ASSIGN_OR_RETURN(decoded.body, ReadBody(root.getBody(), tensor));
  } catch (const kj::Exception& e) {
    return absl::DataLossError(
        absl::StrCat("malformed message header: ", e.getDescription().cStr()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory decoding a message");
  }
  SWARM_RETURN_IF_ERROR(ValidateMessage(decoded.body, tensor));
  decoded.tensor = std::move(tensor);
  return decoded;
}

absl::StatusOr<DecodedMessage> DecodeMessage(const WireMessage& wire) {
  return DecodeMessage(wire.header.bytes(), wire.tensor);
}

absl::StatusOr<std::vector<uint8_t>> EncodeRouteLayer(const RouteLayer& layer) {
  SWARM_RETURN_IF_ERROR(CheckRouteLayer(layer));
  try {
    capnp::MallocMessageBuilder builder(128);
    auto b = builder.initRoot<wire::RouteLayer>();
    b.setStepId(layer.step_id);
    b.setStartPosition(layer.start_position);
    b.setNTokens(layer.n_tokens);
    b.setRedo(layer.redo);
    if (layer.next) Write(*layer.next, b.initNext());
    if (!layer.sealed_next.empty()) b.setSealedNext(AsData(layer.sealed_next));
    auto words = capnp::messageToFlatArray(builder);
    auto bytes = words.asBytes();
    return std::vector<uint8_t>(bytes.begin(), bytes.end());
  } catch (const kj::Exception& e) {
    return absl::InternalError(absl::StrCat("capnp encode: ", e.getDescription().cStr()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory encoding a route layer");
  }
}

absl::StatusOr<RouteLayer> DecodeRouteLayer(std::span<const uint8_t> bytes) {
  SWARM_RETURN_IF_ERROR(CheckSealedBytes(bytes.size(), "route layer"));
  SWARM_ASSIGN_OR_RETURN(kj::Array<capnp::word> words, AlignedWords(bytes));
  RouteLayer layer;
  try {
    capnp::FlatArrayMessageReader reader(words.asPtr(), HeaderReaderOptions());
    if (reader.getEnd() != words.end()) {
      return absl::DataLossError("trailing bytes after the route layer");
    }
    SWARM_ASSIGN_OR_RETURN(layer, ReadRouteLayer(reader.getRoot<wire::RouteLayer>()));
  } catch (const kj::Exception& e) {
    return absl::DataLossError(absl::StrCat("malformed route layer: ", e.getDescription().cStr()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory decoding a route layer");
  }
  SWARM_RETURN_IF_ERROR(CheckRouteLayer(layer));
  return layer;
}

std::optional<uint64_t> PeekRequestId(std::span<const uint8_t> header) {
  auto words = AlignedWords(header);
  if (!words.ok()) return std::nullopt;
  try {
    capnp::FlatArrayMessageReader reader(words->asPtr(), HeaderReaderOptions());
    return reader.getRoot<wire::Envelope>().getRequestId();
  } catch (const kj::Exception&) {
    return std::nullopt;
  }
}

absl::StatusOr<EncodedTensor> EncodeActivations(std::span<const float> x,
                                                std::vector<uint32_t> shape, const Codec& codec,
                                                CodecWorkspace* workspace) {
  EncodedTensor out;
  out.desc.codec = codec;
  out.desc.shape = std::move(shape);
  const uint64_t n = out.desc.num_elements();
  if (n == 0 || n != x.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor of ", x.size(), " values does not match its shape"));
  }
  SWARM_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes,
                         EncodeTensor(x.data(), x.size(), codec, workspace));
  out.bytes = Payload::FromVector(std::move(bytes));
  return out;
}

absl::StatusOr<std::vector<float>> DecodeActivations(const DecodedMessage& message,
                                                     CodecWorkspace* workspace) {
  const TensorDesc* desc = MessageTensor(message.body);
  if (desc == nullptr || !message.tensor) {
    return absl::InvalidArgumentError(
        absl::StrCat(ToAbsl(MessageName(message.body)), " carries no tensor"));
  }
  return DecodeTensor(message.tensor->bytes(), desc->num_elements(), desc->codec, workspace);
}

absl::StatusOr<std::vector<float>> DecodeActivations(const DecodedMessage& message,
                                                     const TensorDesc& expected,
                                                     CodecWorkspace* workspace) {
  const TensorDesc* desc = MessageTensor(message.body);
  if (desc != nullptr && *desc != expected) {
    auto shape = [](const TensorDesc& d) {
      std::string text = "[";
      for (size_t i = 0; i < d.shape.size(); ++i) absl::StrAppend(&text, i ? ", " : "", d.shape[i]);
      return absl::StrCat(text, "] ", CodecName(d.codec));
    };
    return absl::DataLossError(
        absl::StrCat("tensor declared ", shape(*desc), ", expected ", shape(expected)));
  }
  return DecodeActivations(message, workspace);
}

}  // namespace swarm::transport
