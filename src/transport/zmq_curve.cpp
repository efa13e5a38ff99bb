#include "transport/zmq_curve.h"

#include <zmq.h>

#include <cerrno>
#include <cstdio>
#include <new>
#include <zmq.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/status_macros.h"
#include "transport/zmq_status.h"

namespace swarm::transport {
namespace {

constexpr size_t kZ85KeyChars = 40;
constexpr size_t kBinaryKeyBytes = 32;
constexpr char kZapEndpoint[] = "inproc://zeromq.zap.01";
// A ZAP request has 6 frames plus the mechanism's credentials (1 for CURVE).
constexpr size_t kMaxZapFrames = 16;

}  // namespace

absl::Status CheckCurveAvailable() {
  if (!zmq_has("curve")) {
    return absl::FailedPreconditionError("this libzmq was built without CURVE support");
  }
  return absl::OkStatus();
}

absl::Status ValidateCurveKey(std::string_view key) {
  if (key.size() != kZ85KeyChars) {
    return absl::InvalidArgumentError(
        absl::StrCat("a CURVE key is ", kZ85KeyChars, " Z85 characters, got ", key.size()));
  }
  uint8_t decoded[kBinaryKeyBytes];
  const std::string terminated(key);
  if (zmq_z85_decode(decoded, terminated.c_str()) == nullptr) {
    return absl::InvalidArgumentError("a CURVE key is not valid Z85");
  }
  return absl::OkStatus();
}

absl::StatusOr<CurveKeyPair> GenerateCurveKeyPair() {
  SWARM_RETURN_IF_ERROR(CheckCurveAvailable());
  char pub[kZ85KeyChars + 1];
  char sec[kZ85KeyChars + 1];
  if (zmq_curve_keypair(pub, sec) != 0) {
    return ZmqErrorToStatus(zmq_errno(), "zmq_curve_keypair");
  }
  return CurveKeyPair{std::string(pub, kZ85KeyChars), std::string(sec, kZ85KeyChars)};
}

absl::StatusOr<std::string> CurvePublicKeyFromSecret(std::string_view secret_key) {
  SWARM_RETURN_IF_ERROR(CheckCurveAvailable());
  SWARM_RETURN_IF_ERROR(ValidateCurveKey(secret_key));
  const std::string secret(secret_key);
  char pub[kZ85KeyChars + 1];
  if (zmq_curve_public(pub, secret.c_str()) != 0) {
    return ZmqErrorToStatus(zmq_errno(), "zmq_curve_public");
  }
  return std::string(pub, kZ85KeyChars);
}

ZapAuthenticator::ZapAuthenticator(zmq::context_t& context) : context_(&context) {
  char name[64];
  std::snprintf(name, sizeof name, "inproc://swarm-zap-control-%p", static_cast<void*>(this));
  control_endpoint_ = name;
}

absl::StatusOr<std::unique_ptr<ZapAuthenticator>> ZapAuthenticator::Start(
    zmq::context_t& context, const std::vector<std::string>& allowed_keys) {
  SWARM_RETURN_IF_ERROR(CheckCurveAvailable());
  std::unique_ptr<ZapAuthenticator> auth(new ZapAuthenticator(context));
  SWARM_RETURN_IF_ERROR(auth->SetAllowedKeys(allowed_keys));
  std::promise<absl::Status> started;
  auto started_future = started.get_future();
  auth->thread_ = std::thread(&ZapAuthenticator::Run, auth.get(), &started);
  absl::Status status = started_future.get();
  if (!status.ok()) {
    auth->thread_.join();
    auth->thread_ = std::thread();
    return status;
  }
  return auth;
}

ZapAuthenticator::~ZapAuthenticator() {
  if (!thread_.joinable()) return;
  try {
    // This socket lives only here, in the destroying thread.
    zmq::socket_t stop(*context_, zmq::socket_type::pair);
    stop.set(zmq::sockopt::linger, 0);
    stop.connect(control_endpoint_);
    stop.send(zmq::str_buffer("stop"), zmq::send_flags::none);
  } catch (const zmq::error_t&) {
    // The context is shutting down: the handler sees ETERM and exits on its own.
  }
  thread_.join();
}

absl::Status ZapAuthenticator::SetAllowedKeys(const std::vector<std::string>& allowed_keys) {
  absl::flat_hash_set<std::string> keys;
  for (const std::string& key : allowed_keys) {
    SWARM_RETURN_IF_ERROR(ValidateCurveKey(key));
    keys.insert(key);
  }
  absl::MutexLock lock(&mu_);
  allowed_ = std::move(keys);
  return absl::OkStatus();
}

bool ZapAuthenticator::IsAllowed(std::string_view public_key_z85) const {
  absl::MutexLock lock(&mu_);
  return allowed_.contains(std::string(public_key_z85));
}

uint64_t ZapAuthenticator::allowed_count() const {
  absl::MutexLock lock(&mu_);
  return allowed_count_;
}

uint64_t ZapAuthenticator::denied_count() const {
  absl::MutexLock lock(&mu_);
  return denied_count_;
}

bool ZapAuthenticator::WaitForDecisions(uint64_t allowed, uint64_t denied,
                                        std::chrono::milliseconds timeout) {
  absl::MutexLock lock(&mu_);
  auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return allowed_count_ >= allowed && denied_count_ >= denied;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::FromChrono(timeout));
}

void ZapAuthenticator::Run(std::promise<absl::Status>* started) {
  bool reported = false;
  try {
    zmq::socket_t zap(*context_, zmq::socket_type::rep);
    zap.set(zmq::sockopt::linger, 0);
    zap.bind(kZapEndpoint);
    zmq::socket_t control(*context_, zmq::socket_type::pair);
    control.set(zmq::sockopt::linger, 0);
    control.bind(control_endpoint_);
    started->set_value(absl::OkStatus());  // `started` dies with Start's frame: not used again
    reported = true;
    zmq_pollitem_t items[2] = {{zap.handle(), 0, ZMQ_POLLIN, 0},
                               {control.handle(), 0, ZMQ_POLLIN, 0}};
    while (true) {
      if (zmq_poll(items, 2, -1) < 0) {
        if (zmq_errno() == EINTR) continue;
        return;  // ETERM: the context is going away
      }
      if (items[1].revents & ZMQ_POLLIN) return;
      if (items[0].revents & ZMQ_POLLIN) HandleRequest(zap);
    }
  } catch (const zmq::error_t& e) {
    if (!reported) started->set_value(ZmqErrorToStatus(e.num(), "start the ZAP handler"));
  } catch (const std::bad_alloc&) {
    if (!reported) started->set_value(absl::ResourceExhaustedError("out of memory"));
  }
}

void ZapAuthenticator::HandleRequest(zmq::socket_t& zap) {
  // ZAP 1.0 (RFC 27): version, request id, domain, address, routing id, mechanism, credentials.
  std::vector<zmq::message_t> frames;
  while (true) {
    zmq::message_t frame;
    if (!zap.recv(frame, zmq::recv_flags::dontwait)) break;
    const bool more = frame.more();
    if (frames.size() < kMaxZapFrames) frames.push_back(std::move(frame));
    if (!more) break;
  }
  std::string request_id = frames.size() > 1 ? frames[1].to_string() : std::string();
  std::string user_id;
  bool allow = false;
  if (frames.size() == 7 && frames[0].to_string_view() == "1.0" &&
      frames[5].to_string_view() == "CURVE" && frames[6].size() == kBinaryKeyBytes) {
    char z85[kZ85KeyChars + 1];
    if (zmq_z85_encode(z85, static_cast<const uint8_t*>(frames[6].data()), kBinaryKeyBytes)) {
      user_id.assign(z85, kZ85KeyChars);
      allow = IsAllowed(user_id);
    }
  }
  {
    absl::MutexLock lock(&mu_);
    ++(allow ? allowed_count_ : denied_count_);
  }
  // REP must answer every request, even a malformed one, or it can never read the next.
  const std::string code = allow ? "200" : "400";
  const std::string text = allow ? "OK" : "client key not allowed";
  if (!allow) user_id.clear();
  zap.send(zmq::str_buffer("1.0"), zmq::send_flags::sndmore);
  zap.send(zmq::buffer(request_id), zmq::send_flags::sndmore);
  zap.send(zmq::buffer(code), zmq::send_flags::sndmore);
  zap.send(zmq::buffer(text), zmq::send_flags::sndmore);
  zap.send(zmq::buffer(user_id), zmq::send_flags::sndmore);
  zap.send(zmq::str_buffer(""), zmq::send_flags::none);
}

}  // namespace swarm::transport
