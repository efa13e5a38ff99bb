#include "peer/reachability.h"

#include <memory>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "transport/protocol.h"

namespace swarm::peer {

const char* ReachabilityName(Reachability reachability) {
  switch (reachability) {
    case Reachability::kReachable:
      return "reachable";
    case Reachability::kUnreachable:
      return "unreachable";
    case Reachability::kUnknown:
      break;
  }
  return "unknown";
}

uint64_t RandomDialBackNonce() {
  std::random_device device;
  uint64_t nonce = 0;
  while (nonce == 0) nonce = (uint64_t{device()} << 32) | device();
  return nonce;
}

ReachabilityResult CheckReachability(zmq::context_t& context, std::span<const std::string> helpers,
                                     const std::string& address, uint64_t nonce,
                                     const transport::ClientOptions& client,
                                     std::chrono::milliseconds timeout, size_t max_helpers) {
  ReachabilityResult result;
  struct Asked {
    std::string helper;
    std::unique_ptr<transport::DealerClient> dealer;
    bool done = false;
  };
  std::vector<Asked> asked;
  auto request = transport::EncodeMessage(1, transport::DialBackRequest{address, nonce});
  if (!request.ok()) {
    result.detail = std::string(request.status().message());
    return result;
  }
  for (const std::string& helper : helpers) {
    if (asked.size() >= max_helpers) break;
    transport::ClientOptions options = client;
    options.watch_disconnects = false;
    auto dealer = transport::DealerClient::Connect(context, helper, options);
    if (!dealer.ok() || !(*dealer)->Send(*request).ok()) continue;
    asked.push_back(Asked{helper, std::move(*dealer)});
  }
  result.asked = static_cast<int>(asked.size());
  if (asked.empty()) {
    result.detail = "no peer to ask";
    return result;
  }
  std::string refusals;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t open = asked.size();
  while (open > 0 && std::chrono::steady_clock::now() < deadline) {
    std::vector<zmq::socket_ref> sockets;
    std::vector<size_t> order;
    for (size_t i = 0; i < asked.size(); ++i) {
      if (asked[i].done) continue;
      sockets.push_back(asked[i].dealer->socket());
      order.push_back(i);
    }
    auto readable = transport::PollReadable(sockets, std::chrono::milliseconds(50));
    if (!readable.ok()) break;
    for (size_t index : *readable) {
      Asked& a = asked[order[index]];
      auto reply = a.dealer->Receive(std::chrono::milliseconds(0));
      if (!reply.ok()) continue;
      auto decoded = transport::DecodeMessage(*reply);
      if (!decoded.ok()) continue;
      a.done = true;
      --open;
      if (auto* answer = std::get_if<transport::DialBackReply>(&decoded->body)) {
        ++result.answered;
        if (answer->reachable) {
          result.verdict = Reachability::kReachable;
          result.detail = absl::StrCat(a.helper, " reached ", address);
          return result;
        }
        absl::StrAppend(&refusals, refusals.empty() ? "" : "; ", a.helper, ": ", answer->detail);
      } else if (auto* error = std::get_if<transport::ErrorReply>(&decoded->body)) {
        // A helper that refused to dial (rate limit) says nothing about reachability.
        absl::StrAppend(&refusals, refusals.empty() ? "" : "; ", a.helper,
                        " refused: ", error->message);
      }
    }
  }
  result.verdict = result.answered > 0 ? Reachability::kUnreachable : Reachability::kUnknown;
  result.detail = refusals.empty() ? "no helper answered" : refusals;
  return result;
}

}  // namespace swarm::peer
