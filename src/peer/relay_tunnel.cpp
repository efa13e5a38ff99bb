#include "peer/relay_tunnel.h"

#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "peer/relay_frames.h"
#include "transport/protocol.h"

namespace swarm::peer {
namespace {

using Clock = std::chrono::steady_clock;

absl::StatusOr<transport::DecodedMessage> DecodeControl(const zmq::message_t& frame) {
  std::span<const uint8_t> bytes(static_cast<const uint8_t*>(frame.data()), frame.size());
  return transport::DecodeMessage(bytes, std::nullopt);
}

}  // namespace

class RelayTunnel::Loop {
 public:
  Loop(zmq::context_t& context, const RelayTunnelOptions& options,
       std::unique_ptr<transport::DealerClient> tunnel)
      : context_(context), options_(options), tunnel_(std::move(tunnel)) {}

  void Run(std::stop_token stop, RelayTunnel& owner) {
    auto last_answer = Clock::now();
    auto last_keepalive = Clock::now();
    uint64_t request_id = 2;
    while (!stop.stop_requested()) {
      const auto now = Clock::now();
      if (tunnel_->ConnectionDropped()) return owner.Fail("the connection to the relay dropped");
      if (auto handshake = tunnel_->HandshakeStatus(); !handshake.ok()) {
        return owner.Fail(std::string(handshake.message()));
      }
      if (now - last_answer > options_.relay_silence) {
        return owner.Fail(
            absl::StrCat("the relay did not answer for ", options_.relay_silence.count(), " ms"));
      }
      if (now - last_keepalive > options_.keepalive) {
        last_keepalive = now;
        (void)SendControl(tunnel_->socket(), std::nullopt, request_id++,
                          transport::RelayRegister{});
      }
      ExpireIdle(now);
      std::vector<zmq::socket_ref> sockets{tunnel_->socket(), tunnel_->connection_events()};
      std::vector<uint64_t> order;
      for (auto& [connection, local] : locals_) {
        sockets.push_back(local.dealer->socket());
        order.push_back(connection);
      }
      auto readable = transport::PollReadable(sockets, std::chrono::milliseconds(100));
      if (!readable.ok()) return owner.Fail(std::string(readable.status().message()));
      for (size_t index : *readable) {
        if (index == 1) continue;  // connection events: read at the top of the loop
        for (int i = 0; i < 64; ++i) {
          bool got = false;
          if (index == 0) {
            std::string why;
            got = FromRelay(why, last_answer);
            if (!why.empty()) return owner.Fail(std::move(why));
          } else {
            got = FromLocal(order[index - 2]);
          }
          if (!got) break;
        }
      }
    }
  }

 private:
  struct Local {
    std::unique_ptr<transport::DealerClient> dealer;
    Clock::time_point last_used;
  };

  // One message from the relay; false when none was waiting. Sets `why` when the relay refused.
  bool FromRelay(std::string& why, Clock::time_point& last_answer) {
    auto frames = ReadFrames(tunnel_->socket(), kMaxTunnelFrames);
    if (absl::IsDeadlineExceeded(frames.status())) return false;
    if (!frames.ok() || frames->empty()) return true;  // malformed: dropped
    if (frames->size() == 1) {
      auto decoded = DecodeControl((*frames)[0]);
      if (!decoded.ok()) return true;
      if (auto* registered = std::get_if<transport::RelayRegistered>(&decoded->body)) {
        last_answer = Clock::now();
        (void)registered;
      } else if (auto* error = std::get_if<transport::ErrorReply>(&decoded->body)) {
        why = absl::StrCat("the relay refused: ", error->message);
      }
      return true;
    }
    auto connection = ParseTunnelTag((*frames)[0]);
    if (!connection) return true;
    auto it = locals_.find(*connection);
    if (it == locals_.end()) {
      auto dealer = transport::DealerClient::Connect(context_, options_.local_endpoint, Client());
      if (!dealer.ok()) return true;
      it = locals_.emplace(*connection, Local{std::move(*dealer), Clock::now()}).first;
    }
    it->second.last_used = Clock::now();
    (void)SendFrames(it->second.dealer->socket(), {}, *frames, 1);
    return true;
  }

  // One answer (or push error) this peer sends a relayed client; false when none was waiting.
  bool FromLocal(uint64_t connection) {
    auto it = locals_.find(connection);
    if (it == locals_.end()) return false;
    auto frames = ReadFrames(it->second.dealer->socket(), 2);
    if (absl::IsDeadlineExceeded(frames.status())) return false;
    if (!frames.ok()) return true;
    it->second.last_used = Clock::now();
    std::vector<zmq::message_t> prefix;
    prefix.push_back(TunnelTag(connection));
    (void)SendFrames(tunnel_->socket(), std::move(prefix), *frames, 0);
    return true;
  }

  void ExpireIdle(Clock::time_point now) {
    for (auto it = locals_.begin(); it != locals_.end();) {
      if (now - it->second.last_used > options_.idle_connection) {
        locals_.erase(it++);
      } else {
        ++it;
      }
    }
  }

  transport::ClientOptions Client() const {
    transport::ClientOptions client = options_.client;
    client.watch_disconnects = false;
    client.heartbeat_interval = std::chrono::milliseconds(0);
    return client;
  }

  zmq::context_t& context_;
  const RelayTunnelOptions options_;
  std::unique_ptr<transport::DealerClient> tunnel_;
  absl::flat_hash_map<uint64_t, Local> locals_;
};

RelayTunnel::RelayTunnel(std::string endpoint) : endpoint_(std::move(endpoint)) {}

RelayTunnel::~RelayTunnel() {
  thread_.request_stop();
  if (thread_.joinable()) thread_.join();
  loop_.reset();
}

std::string RelayTunnel::failure() const {
  absl::MutexLock lock(&mu_);
  return failure_;
}

void RelayTunnel::Fail(std::string why) {
  {
    absl::MutexLock lock(&mu_);
    failure_ = std::move(why);
  }
  failed_.store(true);
}

absl::StatusOr<std::unique_ptr<RelayTunnel>> RelayTunnel::Open(zmq::context_t& context,
                                                               const RelayTunnelOptions& options) {
  SWARM_RETURN_IF_ERROR(transport::ValidatePushEndpoint(options.relay_address));
  transport::ClientOptions client = options.client;
  client.watch_disconnects = true;
  if (client.heartbeat_interval.count() == 0) {
    client.heartbeat_interval = std::chrono::milliseconds(1000);
  }
  SWARM_ASSIGN_OR_RETURN(auto tunnel,
                         transport::DealerClient::Connect(context, options.relay_address, client));
  SWARM_ASSIGN_OR_RETURN(auto hello, transport::EncodeMessage(1, transport::RelayRegister{}));
  SWARM_RETURN_IF_ERROR(tunnel->Send(hello));
  const auto deadline = Clock::now() + options.register_timeout;
  std::string endpoint;
  while (endpoint.empty()) {
    SWARM_RETURN_IF_ERROR(tunnel->HandshakeStatus());
    auto reply =
        tunnel->ReceiveUntil(std::min(deadline, Clock::now() + std::chrono::milliseconds(50)));
    if (absl::IsDeadlineExceeded(reply.status())) {
      if (Clock::now() >= deadline) {
        return absl::UnavailableError(
            absl::StrCat("relay ", options.relay_address, " did not answer the registration"));
      }
      continue;
    }
    SWARM_RETURN_IF_ERROR(reply.status());
    SWARM_ASSIGN_OR_RETURN(auto decoded, transport::DecodeMessage(*reply));
    if (auto* error = std::get_if<transport::ErrorReply>(&decoded.body)) return error->ToStatus();
    auto* registered = std::get_if<transport::RelayRegistered>(&decoded.body);
    if (registered == nullptr || decoded.request_id != 1) continue;
    SWARM_RETURN_IF_ERROR(transport::ValidatePushEndpoint(registered->endpoint));
    endpoint = registered->endpoint;
  }
  std::unique_ptr<RelayTunnel> relay(new RelayTunnel(endpoint));
  relay->loop_ = std::make_unique<Loop>(context, options, std::move(tunnel));
  relay->thread_ = std::jthread([loop = relay->loop_.get(), owner = relay.get()](
                                    std::stop_token stop) { loop->Run(stop, *owner); });
  return relay;
}

}  // namespace swarm::peer
