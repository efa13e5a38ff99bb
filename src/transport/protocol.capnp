# Swarm wire protocol: the Cap'n Proto header frame of every ZeroMQ message between peers and
# clients. Tensor bytes never live here: they follow in a separate ZeroMQ frame, described by a
# TensorDesc (codec, shape, exact byte count). Only transport/protocol.cpp reads or writes these
# types; every other module uses the C++ value types in transport/protocol.h.
#
# Compatibility: `version` is field 0 of the envelope so every version can read it; a receiver
# rejects any version other than its own with an `error` reply (code FAILED_PRECONDITION).

@0xf9dd04849035f99c;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("swarm::transport::wire");

const protocolVersion :UInt16 = 2;

# 128-bit session id chosen at random by the client. Not a secret: the capabilities below authorise.
struct SessionId {
  hi @0 :UInt64;
  lo @1 :UInt64;
}

enum Dtype {
  f32 @0;
  f16 @1;
  bf16 @2;
  int8Block @3;  # absmax int8 per block of `blockSize` values: all scales, then all int8 values
}

struct Codec {
  dtype @0 :Dtype;
  zstd @1 :Bool;          # the dtype's bytes are one zstd frame
  blockSize @2 :UInt32;   # int8Block only
  scaleF16 @3 :Bool;      # int8Block only: scales stored as f16 (else f32)
}

struct TensorDesc {
  codec @0 :Codec;
  shape @1 :List(UInt32);  # ggml order: dimension 0 innermost, e.g. [n_embd, n_tokens]
  frameBytes @2 :UInt64;   # exact size of the tensor frame that follows
}

# The next hop of a pushed step, as the hop before it learns it from its sealed route layer: where
# to send, which session there, the capability that lets it push there, which codec on that link.
struct Hop {
  address @0 :Text;
  sessionId @1 :SessionId;
  codec @2 :Codec;
  pushCapability @3 :Data;   # 16 bytes
}

struct InfoRequest {}

struct InfoReply {
  peerId @0 :Text;
  modelId @1 :Text;
  firstBlock @2 :UInt32;
  lastBlock @3 :UInt32;          # exclusive
  backend @4 :Text;
  forwardTokensPerSec @5 :Float64;   # prefill throughput over the whole span
  inferenceStepsPerSec @6 :Float64;  # single-token decode steps per second over the whole span
  freeCacheTokens @7 :UInt64;
  maxSessionLength @8 :UInt32;
}

struct OpenSession {
  sessionId @0 :SessionId;
  firstBlock @1 :UInt32;
  lastBlock @2 :UInt32;
  maxLength @3 :UInt32;
  outputCodec @4 :Codec;   # codec of the output copies returned to the client
  hopIndex @5 :UInt32;     # this peer's position in the client's chain
  returnOutputs @6 :Bool;  # send the client a copy of every step output
  # Random secrets the client chose for this session alone (transport/capability.h):
  ownerCapability @7 :Data;  # 16 bytes; open again, close, roll back, step from the client
  pushCapability @8 :Data;   # 16 bytes; the upstream hop delivers the next steps
  routeKey @9 :Data;         # 32 bytes; opens this hop's layer of every step's sealed route
}

struct OpenSessionReply {
  sessionId @0 :SessionId;
  accepted @1 :Bool;
  grantedLength @2 :UInt32;
  reason @3 :Text;
}

struct Step {
  sessionId @0 :SessionId;
  stepId @1 :UInt64;
  startPosition @2 :Int64;
  nTokens @3 :Int32;
  tensor @4 :TensorDesc;      # [n_embd, n_tokens]
  capability @5 :Data;        # the session's owner (from the client) or push (from upstream) one
  sealedRoute @6 :Data;       # this hop's RouteLayer, sealed with its route key; empty: last hop
}

# One hop's layer of a step's route: serialized, then sealed (crypto_secretbox) with the route key
# the client gave that hop, so only that hop reads it and no one else can make one. It binds the
# step it was made for, names the next hop alone, and carries the next hop's layer, sealed with the
# next hop's key (opaque here): a hop learns nothing about the hops after the next.
struct RouteLayer {
  stepId @0 :UInt64;
  startPosition @1 :Int64;
  nTokens @2 :Int32;
  redo @3 :Bool;              # the client redoes positions this hop may hold (a retried step)
  next @4 :Hop;               # absent on the last hop
  sealedNext @5 :Data;        # the next hop's sealed layer
}

struct StepOutput {
  sessionId @0 :SessionId;
  stepId @1 :UInt64;
  startPosition @2 :Int64;
  nTokens @3 :Int32;
  hopIndex @4 :UInt32;
  firstBlock @5 :UInt32;
  lastBlock @6 :UInt32;
  tensor @7 :TensorDesc;      # [n_embd, n_tokens]
}

struct CloseSession {
  sessionId @0 :SessionId;
  ownerCapability @1 :Data;
}

struct CloseSessionReply {
  sessionId @0 :SessionId;
}

struct Error {
  code @0 :UInt16;            # absl::StatusCode value
  message @1 :Text;
  sessionId @2 :SessionId;    # null when the error is not about a session
  hasStepId @3 :Bool;
  stepId @4 :UInt64;
}

struct Ping {
  nonce @0 :UInt64;
  sendTimeNs @1 :UInt64;
}

struct Pong {
  nonce @0 :UInt64;
  sendTimeNs @1 :UInt64;      # echoed from the Ping
}

# Reachability: a peer asks a helper (another peer's relay service) to dial `address` back on a
# fresh connection. The helper sends a DialBackProbe there; whoever answers must echo `nonce`,
# which only the asker knows (the helper never sends it to the address), so a reply proves the
# asker itself is reachable at that address.
struct DialBackRequest {
  address @0 :Text;     # tcp://HOST:PORT only
  nonce @1 :UInt64;
}

struct DialBackReply {
  reachable @0 :Bool;
  detail @1 :Text;      # why not, when not
}

struct DialBackProbe {}

struct DialBackProbeReply {
  nonce @0 :UInt64;     # the answering peer's own dial-back nonce
}

# A peer that cannot be reached asks a relay to open a public endpoint for it; the relay forwards
# every message between that endpoint and this connection (the tunnel, see peer/relay_frames.h).
struct RelayRegister {}

struct RelayRegistered {
  endpoint @0 :Text;    # the public endpoint the relay opened for the asker
}

struct Envelope {
  version @0 :UInt16;
  requestId @1 :UInt64;       # chosen by the requester, echoed by the reply
  body :union {
    infoRequest @2 :InfoRequest;
    infoReply @3 :InfoReply;
    openSession @4 :OpenSession;
    openSessionReply @5 :OpenSessionReply;
    step @6 :Step;
    stepOutput @7 :StepOutput;
    closeSession @8 :CloseSession;
    closeSessionReply @9 :CloseSessionReply;
    error @10 :Error;
    ping @11 :Ping;
    pong @12 :Pong;
    dialBackRequest @13 :DialBackRequest;
    dialBackReply @14 :DialBackReply;
    dialBackProbe @15 :DialBackProbe;
    dialBackProbeReply @16 :DialBackProbeReply;
    relayRegister @17 :RelayRegister;
    relayRegistered @18 :RelayRegistered;
  }
}
