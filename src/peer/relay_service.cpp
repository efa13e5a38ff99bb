#include "peer/relay_service.h"

#include <algorithm>
#include <cstdio>
#include <list>
#include <mutex>
#include <optional>
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

// A token bucket of `rate` units per second holding at most `burst`. Take() may overdraw: a
// message is never split, the debt is paid by waiting.
class TokenBucket {
 public:
  TokenBucket(double rate, double burst) : rate_(rate), burst_(burst), tokens_(burst) {}
  void Refill(Clock::time_point now) {
    tokens_ =
        std::min(burst_, tokens_ + rate_ * std::chrono::duration<double>(now - last_).count());
    last_ = now;
  }
  bool TryTake(double n, Clock::time_point now) {
    Refill(now);
    if (tokens_ < n) return false;
    tokens_ -= n;
    return true;
  }
  void Take(double n) { tokens_ -= n; }
  // How long until the bucket is out of debt (zero when it is not in debt).
  std::chrono::milliseconds Debt(Clock::time_point now) {
    Refill(now);
    if (tokens_ >= 0 || rate_ <= 0) return std::chrono::milliseconds(0);
    return std::chrono::milliseconds(static_cast<int64_t>(-tokens_ / rate_ * 1000) + 1);
  }

 private:
  double rate_, burst_, tokens_;
  Clock::time_point last_ = Clock::now();
};

std::string HostOf(const std::string& endpoint) {
  const size_t scheme = endpoint.find("://");
  const size_t colon = endpoint.rfind(':');
  if (scheme == std::string::npos || colon == std::string::npos || colon < scheme + 3) return "";
  return endpoint.substr(scheme + 3, colon - scheme - 3);
}

std::string FrameString(const zmq::message_t& frame) {
  return std::string(static_cast<const char*>(frame.data()), frame.size());
}

}  // namespace

std::string AnnouncedEndpoint(const std::string& bound, const std::string& public_host) {
  std::string host = public_host;
  if (host.empty()) {
    host = HostOf(bound);
    if (host == "0.0.0.0" || host == "*") host = "127.0.0.1";
  }
  const size_t colon = bound.rfind(':');
  if (colon == std::string::npos) return bound;
  return absl::StrCat("tcp://", host, bound.substr(colon));
}

// Everything the service thread owns.
class RelayService::Loop {
 public:
  Loop(zmq::context_t& context, const RelayServiceOptions& options, RelayServiceStats& stats,
       std::unique_ptr<transport::RouterServer> service)
      : context_(context),
        options_(options),
        stats_(stats),
        service_(std::move(service)),
        bandwidth_(options.relay_mbit * 1e6 / 8,
                   std::max(options.relay_mbit * 1e6 / 8 * 0.05, 64.0 * 1024)),
        dial_backs_(options.dial_backs_per_second, options.dial_back_burst) {}

  ~Loop() {
    // Dials in flight end within dial_timeout; their results are dropped.
    for (auto& dial : dials_) dial->thread.join();
  }

  void Run(std::stop_token stop) {
    while (!stop.stop_requested()) {
      const auto now = Clock::now();
      FinishDials();
      ExpireSilent(now);
      if (now - last_liveness_ > std::chrono::milliseconds(250)) {
        last_liveness_ = now;
        DropDisconnected();
      }
      if (auto debt = bandwidth_.Debt(now); debt.count() > 0) {
        // Over the cap: read nothing (senders queue, then wait) until it is paid.
        std::this_thread::sleep_for(std::min(debt, std::chrono::milliseconds(50)));
        continue;
      }
      std::vector<zmq::socket_ref> sockets{service_->socket()};
      std::vector<Relayed*> order;
      for (auto& [id, relayed] : relayed_) {
        sockets.push_back(relayed->public_socket->socket());
        order.push_back(relayed.get());
      }
      auto readable = transport::PollReadable(
          sockets, dials_.empty() ? std::chrono::milliseconds(100) : std::chrono::milliseconds(10));
      if (!readable.ok()) {
        std::fprintf(stderr, "relay: %s\n", std::string(readable.status().message()).c_str());
        return;
      }
      for (size_t index : *readable) {
        // A few messages per socket per round, so one busy client does not starve the others.
        // Over the cap, the rest waits in the sockets.
        for (int i = 0; i < 64 && bandwidth_.Debt(Clock::now()).count() == 0; ++i) {
          const bool got = index == 0 ? ServiceMessage() : PublicMessage(*order[index - 1]);
          if (!got) break;
        }
      }
    }
  }

 private:
  struct Relayed {
    std::string tunnel_id;  // the relayed peer's routing id at the service socket
    std::unique_ptr<transport::RouterServer> public_socket;
    std::string endpoint;  // as announced
    Clock::time_point last_seen;
    absl::flat_hash_map<std::string, uint64_t> connection_of;  // client routing id -> number
    absl::flat_hash_map<uint64_t, std::string> client_of;
    uint64_t next_connection = 1;
  };
  struct DialThread {
    std::thread thread;
    std::atomic<bool> done{false};
  };
  struct DialResult {
    std::string routing_id;
    uint64_t request_id = 0;
    transport::DialBackReply reply;
  };

  void Count(size_t bytes) {
    bandwidth_.Take(static_cast<double>(bytes));
    stats_.bytes_relayed.fetch_add(static_cast<int64_t>(bytes));
    stats_.messages_relayed.fetch_add(1);
  }

  // One message from the service socket; false when none was waiting.
  bool ServiceMessage() {
    auto frames = ReadFrames(service_->socket(), 1 + kMaxTunnelFrames);
    if (absl::IsDeadlineExceeded(frames.status())) return false;
    if (!frames.ok() || frames->size() < 2) {
      stats_.messages_dropped.fetch_add(1);
      return true;
    }
    const std::string routing_id = FrameString((*frames)[0]);
    if (auto connection = ParseTunnelTag((*frames)[1])) {
      FromTunnel(routing_id, *connection, *frames);
      return true;
    }
    if (frames->size() != 2) {
      Refuse(routing_id, 0, absl::InvalidArgumentError("relay: not a tunnel or control message"));
      return true;
    }
    const zmq::message_t& header = (*frames)[1];
    std::span<const uint8_t> bytes(static_cast<const uint8_t*>(header.data()), header.size());
    auto decoded = transport::DecodeMessage(bytes, std::nullopt);
    if (!decoded.ok()) {
      Refuse(routing_id, transport::PeekRequestId(bytes).value_or(0), decoded.status());
      return true;
    }
    if (auto* request = std::get_if<transport::DialBackRequest>(&decoded->body)) {
      DialBack(routing_id, decoded->request_id, *request);
    } else if (std::holds_alternative<transport::RelayRegister>(decoded->body)) {
      Register(routing_id, decoded->request_id);
    } else {
      Refuse(
          routing_id, decoded->request_id,
          absl::InvalidArgumentError(absl::StrCat(
              "relay service: unexpected ", std::string(transport::MessageName(decoded->body)))));
    }
    return true;
  }

  void Refuse(const std::string& routing_id, uint64_t request_id, const absl::Status& why) {
    stats_.messages_dropped.fetch_add(1);
    (void)SendControl(service_->socket(), routing_id, request_id,
                      transport::ErrorReply::FromStatus(why));
  }

  // A message the relayed peer sends to one of the clients at its endpoint.
  void FromTunnel(const std::string& tunnel_id, uint64_t connection,
                  std::vector<zmq::message_t>& frames) {
    auto it = relayed_.find(tunnel_id);
    if (it == relayed_.end() || frames.size() < 3) {
      stats_.messages_dropped.fetch_add(1);
      return;
    }
    Relayed& relayed = *it->second;
    auto client = relayed.client_of.find(connection);
    if (client == relayed.client_of.end()) {
      stats_.messages_dropped.fetch_add(1);
      return;
    }
    size_t bytes = 0;
    for (size_t i = 2; i < frames.size(); ++i) bytes += frames[i].size();
    std::vector<zmq::message_t> prefix;
    prefix.emplace_back(client->second.data(), client->second.size());
    if (SendFrames(relayed.public_socket->socket(), std::move(prefix), frames, 2).ok()) {
      Count(bytes);
    } else {
      stats_.messages_dropped.fetch_add(1);
    }
  }

  // One message from a client at a relayed peer's endpoint; false when none was waiting.
  bool PublicMessage(Relayed& relayed) {
    // [routing id][header][tensor]: anything longer is not the wire protocol.
    auto frames = ReadFrames(relayed.public_socket->socket(), 3);
    if (absl::IsDeadlineExceeded(frames.status())) return false;
    if (!frames.ok() || frames->size() < 2) {
      stats_.messages_dropped.fetch_add(1);
      return true;
    }
    std::string client = FrameString((*frames)[0]);
    auto known = relayed.connection_of.find(client);
    uint64_t connection = 0;
    if (known != relayed.connection_of.end()) {
      connection = known->second;
    } else {
      if (static_cast<int>(relayed.connection_of.size()) >= options_.max_connections_per_peer) {
        stats_.messages_dropped.fetch_add(1);
        return true;
      }
      connection = relayed.next_connection++;
      relayed.connection_of.emplace(client, connection);
      relayed.client_of.emplace(connection, client);
    }
    size_t bytes = 0;
    for (size_t i = 1; i < frames->size(); ++i) bytes += (*frames)[i].size();
    std::vector<zmq::message_t> prefix;
    prefix.emplace_back(relayed.tunnel_id.data(), relayed.tunnel_id.size());
    prefix.push_back(TunnelTag(connection));
    if (SendFrames(service_->socket(), std::move(prefix), *frames, 1).ok()) {
      Count(bytes);
    } else {
      stats_.messages_dropped.fetch_add(1);
    }
    return true;
  }

  void Register(const std::string& routing_id, uint64_t request_id) {
    if (auto it = relayed_.find(routing_id); it != relayed_.end()) {
      // Re-registering keeps the endpoint: the relayed peer's keepalive.
      it->second->last_seen = Clock::now();
      (void)SendControl(service_->socket(), routing_id, request_id,
                        transport::RelayRegistered{it->second->endpoint});
      return;
    }
    if (options_.relay_mbit <= 0) {
      Refuse(routing_id, request_id,
             absl::FailedPreconditionError("this peer does not relay (--relay-mbit 0)"));
      return;
    }
    if (static_cast<int>(relayed_.size()) >= options_.max_relayed_peers) {
      Refuse(routing_id, request_id,
             absl::ResourceExhaustedError(
                 absl::StrCat("this relay is full (", options_.max_relayed_peers, " peers)")));
      return;
    }
    auto bound = transport::RouterServer::Bind(
        context_, absl::StrCat("tcp://", options_.listen_host, ":0"), options_.server);
    if (!bound.ok()) {
      Refuse(routing_id, request_id, bound.status());
      return;
    }
    auto relayed = std::make_unique<Relayed>();
    relayed->tunnel_id = routing_id;
    relayed->endpoint = AnnouncedEndpoint((*bound)->endpoint(), options_.public_host);
    relayed->public_socket = std::move(*bound);
    relayed->last_seen = Clock::now();
    std::fprintf(stderr, "relay: relaying a peer at %s\n", relayed->endpoint.c_str());
    (void)SendControl(service_->socket(), routing_id, request_id,
                      transport::RelayRegistered{relayed->endpoint});
    relayed_.emplace(routing_id, std::move(relayed));
    stats_.relayed_peers.store(static_cast<int64_t>(relayed_.size()));
  }

  void ExpireSilent(Clock::time_point now) {
    for (auto it = relayed_.begin(); it != relayed_.end();) {
      if (now - it->second->last_seen > options_.relayed_silence) {
        std::fprintf(stderr, "relay: the peer at %s went silent; endpoint closed\n",
                     it->second->endpoint.c_str());
        relayed_.erase(it++);
      } else {
        ++it;
      }
    }
    stats_.relayed_peers.store(static_cast<int64_t>(relayed_.size()));
  }

  // A relayed peer whose tunnel connection is gone (its process died): its endpoint closes at
  // once, so the clients connected there see the drop and fail over without waiting for a
  // timeout. The service ROUTER is mandatory: a send to a gone routing id fails.
  void DropDisconnected() {
    for (auto it = relayed_.begin(); it != relayed_.end();) {
      const absl::Status sent = SendControl(service_->socket(), it->second->tunnel_id, 0,
                                            transport::RelayRegistered{it->second->endpoint});
      if (absl::IsNotFound(sent)) {
        std::fprintf(stderr, "relay: the peer at %s disconnected; endpoint closed\n",
                     it->second->endpoint.c_str());
        relayed_.erase(it++);
      } else {
        ++it;
      }
    }
    stats_.relayed_peers.store(static_cast<int64_t>(relayed_.size()));
  }

  void DialBack(const std::string& routing_id, uint64_t request_id,
                const transport::DialBackRequest& request) {
    if (auto valid = transport::ValidatePushEndpoint(request.address); !valid.ok()) {
      stats_.dial_backs_refused.fetch_add(1);
      Refuse(routing_id, request_id, valid);
      return;
    }
    if (static_cast<int>(dials_.size()) >= options_.max_dials ||
        !dial_backs_.TryTake(1, Clock::now())) {
      stats_.dial_backs_refused.fetch_add(1);
      Refuse(routing_id, request_id,
             absl::ResourceExhaustedError("dial-back rate limit; ask again later"));
      return;
    }
    stats_.dial_backs.fetch_add(1);
    // The dial waits for an answer: on its own thread, so relaying goes on meanwhile.
    auto dial = std::make_unique<DialThread>();
    dial->thread = std::thread([this, done = &dial->done, routing_id, request_id, request] {
      DialResult result{routing_id, request_id, Dial(request)};
      std::lock_guard lock(dial_mu_);
      finished_.push_back(std::move(result));
      done->store(true);
    });
    dials_.push_back(std::move(dial));
  }

  transport::DialBackReply Dial(const transport::DialBackRequest& request) {
    transport::ClientOptions client = options_.client;
    client.watch_disconnects = false;
    auto dealer = transport::DealerClient::Connect(context_, request.address, client);
    if (!dealer.ok()) return {false, std::string(dealer.status().message())};
    auto probe = transport::EncodeMessage(1, transport::DialBackProbe{});
    if (!probe.ok() || !(*dealer)->Send(*probe).ok()) return {false, "could not send the probe"};
    const auto deadline = Clock::now() + options_.dial_timeout;
    while (Clock::now() < deadline) {
      if (auto handshake = (*dealer)->HandshakeStatus(); !handshake.ok()) {
        return {false, std::string(handshake.message())};
      }
      auto reply = (*dealer)->Receive(std::chrono::milliseconds(50));
      if (absl::IsDeadlineExceeded(reply.status())) continue;
      if (!reply.ok()) return {false, std::string(reply.status().message())};
      auto decoded = transport::DecodeMessage(*reply);
      if (!decoded.ok()) return {false, "the address answered with an unreadable message"};
      if (auto* answer = std::get_if<transport::DialBackProbeReply>(&decoded->body)) {
        if (answer->nonce == request.nonce) return {true, ""};
        return {false, "another peer answers at that address (wrong nonce)"};
      }
      return {false, absl::StrCat("the address answered ",
                                  std::string(transport::MessageName(decoded->body)))};
    }
    return {false, absl::StrCat("no answer from ", request.address, " within ",
                                options_.dial_timeout.count(), " ms")};
  }

  void FinishDials() {
    std::vector<DialResult> done;
    {
      std::lock_guard lock(dial_mu_);
      done.swap(finished_);
    }
    for (DialResult& result : done) {
      (void)SendControl(service_->socket(), result.routing_id, result.request_id, result.reply);
    }
    // Join the threads that are done (each pushed its result last).
    for (auto it = dials_.begin(); it != dials_.end();) {
      if ((*it)->done.load()) {
        (*it)->thread.join();
        it = dials_.erase(it);
      } else {
        ++it;
      }
    }
  }

  zmq::context_t& context_;
  const RelayServiceOptions& options_;
  RelayServiceStats& stats_;
  std::unique_ptr<transport::RouterServer> service_;
  absl::flat_hash_map<std::string, std::unique_ptr<Relayed>> relayed_;
  TokenBucket bandwidth_;
  TokenBucket dial_backs_;
  std::list<std::unique_ptr<DialThread>> dials_;
  Clock::time_point last_liveness_ = Clock::now();
  std::mutex dial_mu_;
  std::vector<DialResult> finished_;
};

RelayService::RelayService(RelayServiceOptions options, std::string address)
    : options_(std::move(options)), address_(std::move(address)) {}

RelayService::~RelayService() {
  thread_.request_stop();
  if (thread_.joinable()) thread_.join();
  loop_.reset();
}

absl::StatusOr<std::unique_ptr<RelayService>> RelayService::Start(
    zmq::context_t& context, const RelayServiceOptions& options) {
  SWARM_ASSIGN_OR_RETURN(
      auto service,
      transport::RouterServer::Bind(context, absl::StrCat("tcp://", options.listen_host, ":0"),
                                    options.server));
  const std::string address = AnnouncedEndpoint(service->endpoint(), options.public_host);
  std::unique_ptr<RelayService> relay(new RelayService(options, address));
  relay->loop_ =
      std::make_unique<Loop>(context, relay->options_, relay->stats_, std::move(service));
  relay->thread_ =
      std::jthread([loop = relay->loop_.get()](std::stop_token stop) { loop->Run(stop); });
  return relay;
}

}  // namespace swarm::peer
