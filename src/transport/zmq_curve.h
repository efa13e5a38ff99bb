// CurveZMQ keys and the ZAP authenticator that enforces an allow-list of client public keys.
// The authenticator owns one thread and its two inproc sockets (the ZAP REP socket and a control
// PAIR); it serves every CURVE server socket of its zmq::context_t, at most one per context.
// SetAllowedKeys / allowed_count / denied_count / WaitForDecisions may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace zmq {
class context_t;
class socket_t;
}  // namespace zmq

namespace swarm::transport {

// Keys in Z85 text: 40 characters for 32 bytes.
struct CurveKeyPair {
  std::string public_key;
  std::string secret_key;
};

absl::StatusOr<CurveKeyPair> GenerateCurveKeyPair();
absl::StatusOr<std::string> CurvePublicKeyFromSecret(std::string_view secret_key);
// InvalidArgument unless `key` is 40 valid Z85 characters.
absl::Status ValidateCurveKey(std::string_view key);
// FailedPrecondition when libzmq was built without CURVE.
absl::Status CheckCurveAvailable();

class ZapAuthenticator {
 public:
  // Binds inproc://zeromq.zap.01 on `context` (which must outlive the authenticator) and starts
  // the handler thread. allowed_keys: Z85 client public keys.
  static absl::StatusOr<std::unique_ptr<ZapAuthenticator>> Start(
      zmq::context_t& context, const std::vector<std::string>& allowed_keys);
  ~ZapAuthenticator();  // stops and joins the thread
  ZapAuthenticator(const ZapAuthenticator&) = delete;
  ZapAuthenticator& operator=(const ZapAuthenticator&) = delete;

  // Takes effect at the next handshake. libzmq does not retry a handshake the server refused:
  // a refused client must open a new socket to try again.
  absl::Status SetAllowedKeys(const std::vector<std::string>& allowed_keys);
  bool IsAllowed(std::string_view public_key_z85) const;

  const zmq::context_t* context() const { return context_; }
  uint64_t allowed_count() const;
  uint64_t denied_count() const;
  // Waits until at least `allowed` acceptances and `denied` refusals have happened; false on
  // timeout. Lets tests wait for a handshake's outcome instead of sleeping.
  bool WaitForDecisions(uint64_t allowed, uint64_t denied, std::chrono::milliseconds timeout);

 private:
  explicit ZapAuthenticator(zmq::context_t& context);
  void Run(std::promise<absl::Status>* started);
  void HandleRequest(zmq::socket_t& zap);

  zmq::context_t* const context_;
  // The handler thread's PAIR socket binds here; the destructor connects its own PAIR to say stop.
  std::string control_endpoint_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  absl::flat_hash_set<std::string> allowed_ ABSL_GUARDED_BY(mu_);
  uint64_t allowed_count_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t denied_count_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace swarm::transport
