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

const protocolVersion :UInt16 = 1;

# 128-bit session id chosen at random by the client.
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

# One downstream hop of a pushed step: where to send, which session there, which codec on that link.
struct Hop {
  address @0 :Text;
  sessionId @1 :SessionId;
  codec @2 :Codec;
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
  route @5 :List(Hop);        # the remaining downstream hops, next one first
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
}

struct CloseSessionReply {
  sessionId @0 :SessionId;
}

struct Forward {
  firstBlock @0 :UInt32;
  lastBlock @1 :UInt32;
  startPosition @2 :Int64;
  nTokens @3 :Int32;
  outputCodec @4 :Codec;
  tensor @5 :TensorDesc;      # [n_embd, n_tokens] or [n_embd, n_tokens, n_seqs]
}

struct ForwardOutput {
  nTokens @0 :Int32;
  tensor @1 :TensorDesc;
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
    forward @10 :Forward;
    forwardOutput @11 :ForwardOutput;
    error @12 :Error;
    ping @13 :Ping;
    pong @14 :Pong;
  }
}
