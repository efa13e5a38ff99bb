// One hop over an emulated WAN link, per codec: a client sends Step messages ([n_embd, n_tokens]
// activations) through the link emulator to a ROUTER that answers each with a StepOutput carrying
// the same tensor (a peer that computes nothing), and measures the round trip. Shows what a
// codec's smaller frames buy on a bandwidth-limited link. Prints one JSON document.
//
// Usage: transport_link_bench [--n-embd 2048] [--tokens 1] [--latency-ms 10]
//                             [--bandwidth-mbit 100] [--reps 20]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "transport/link_emulator.h"
#include "transport/protocol.h"
#include "transport/zmq_socket.h"

namespace {

using namespace swarm::transport;
using Clock = std::chrono::steady_clock;

// The echo peer: owns its socket in its own thread; stops on CloseSession.
void EchoPeer(zmq::context_t* context, std::promise<std::string>* endpoint) {
  auto server = RouterServer::Bind(*context, "tcp://127.0.0.1:0");
  if (!server.ok()) {
    endpoint->set_value("");
    return;
  }
  endpoint->set_value((*server)->endpoint());
  while (true) {
    auto routed = (*server)->Receive(std::chrono::seconds(30));
    if (!routed.ok()) return;
    if (!routed->message.ok()) continue;
    auto request = DecodeMessage(*routed->message);
    if (!request.ok()) continue;
    if (std::holds_alternative<CloseSession>(request->body)) return;
    const auto* step = std::get_if<Step>(&request->body);
    if (step == nullptr) continue;
    StepOutput out{step->session_id, step->step_id, step->start_position, step->n_tokens, 0, 0, 1,
                   step->tensor};
    auto reply = EncodeMessage(request->request_id, out, request->tensor);
    if (reply.ok()) (void)(*server)->Send(routed->routing_id, *reply);
  }
}

}  // namespace

int main(int argc, char** argv) {
  uint32_t n_embd = 2048, n_tokens = 1;
  double latency_ms = 10, bandwidth_mbit = 100;
  int reps = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* v = argv[i + 1];
    if (flag == "--n-embd") {
      n_embd = static_cast<uint32_t>(std::strtoul(v, nullptr, 10));
    } else if (flag == "--tokens") {
      n_tokens = static_cast<uint32_t>(std::strtoul(v, nullptr, 10));
    } else if (flag == "--latency-ms") {
      latency_ms = std::strtod(v, nullptr);
    } else if (flag == "--bandwidth-mbit") {
      bandwidth_mbit = std::strtod(v, nullptr);
    } else if (flag == "--reps") {
      reps = std::atoi(v);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (n_embd == 0 || n_tokens == 0 || reps <= 0 || latency_ms < 0 || bandwidth_mbit < 0) {
    std::fprintf(stderr, "bad arguments\n");
    return 2;
  }

  zmq::context_t context;
  std::promise<std::string> endpoint_promise;
  auto endpoint_future = endpoint_promise.get_future();
  std::thread peer(EchoPeer, &context, &endpoint_promise);
  const std::string peer_endpoint = endpoint_future.get();
  if (peer_endpoint.empty()) {
    std::fprintf(stderr, "cannot bind the echo peer\n");
    peer.join();
    return 1;
  }
  LinkEmulatorOptions link;
  link.target = peer_endpoint;
  link.forward.latency = std::chrono::microseconds(static_cast<int64_t>(latency_ms * 1000));
  link.forward.bandwidth_bytes_per_sec = bandwidth_mbit * 1e6 / 8;
  link.backward = link.forward;
  auto emulator = LinkEmulator::Start(link);
  auto client = emulator.ok() ? DealerClient::Connect(context, (*emulator)->endpoint())
                              : absl::StatusOr<std::unique_ptr<DealerClient>>(emulator.status());
  if (!client.ok()) {
    std::fprintf(stderr, "%s\n", std::string(client.status().message()).c_str());
    // The peer stops on its own once its receive times out.
    peer.join();
    return 1;
  }

  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(n_embd) * n_tokens);
  for (float& v : x) v = normal(rng);

  nlohmann::json results = nlohmann::json::array();
  const SessionId session = SessionId::Random();
  uint64_t step_id = 0;
  std::string failure;
  for (const char* name : {"f32", "f16", "bf16", "int8", "f16+zstd", "int8+zstd"}) {
    auto tensor = EncodeActivations(x, {n_embd, n_tokens}, ParseCodec(name).value());
    if (!tensor.ok()) {
      failure = std::string(tensor.status().message());
      break;
    }
    std::vector<double> ms;
    for (int r = 0; r <= reps && failure.empty(); ++r) {  // r == 0 warms the connection up
      Step step;
      step.session_id = session;
      step.step_id = ++step_id;
      step.n_tokens = static_cast<int32_t>(n_tokens);
      step.tensor = tensor->desc;
      auto wire = EncodeMessage(step_id, step, tensor->bytes);
      const auto start = Clock::now();
      absl::Status sent = wire.ok() ? (*client)->Send(*wire) : wire.status();
      auto reply = sent.ok() ? (*client)->Receive(std::chrono::seconds(30))
                             : absl::StatusOr<WireMessage>(sent);
      if (!reply.ok()) {
        failure = std::string(reply.status().message());
        break;
      }
      if (r > 0) {
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      }
    }
    if (!failure.empty()) break;
    std::sort(ms.begin(), ms.end());
    double mean = 0;
    for (double v : ms) mean += v / ms.size();
    const double frame = static_cast<double>(tensor->bytes.size());
    const double model_ms =
        2 * latency_ms + (bandwidth_mbit > 0 ? 2 * frame * 8 / (bandwidth_mbit * 1e6) * 1e3 : 0);
    results.push_back({{"codec", name},
                       {"tensor_bytes", frame},
                       {"bytes_per_token", frame / n_tokens},
                       {"rtt_ms_mean", mean},
                       {"rtt_ms_p50", ms[ms.size() / 2]},
                       {"rtt_ms_min", ms.front()},
                       {"rtt_ms_model", model_ms}});
  }
  (void)(*client)->Send(EncodeMessage(0, CloseSession{session, {}}).value());
  peer.join();
  if (!failure.empty()) {
    std::fprintf(stderr, "%s\n", failure.c_str());
    return 1;
  }
  nlohmann::json out = {{"benchmark", "transport_link"},
                        {"n_embd", n_embd},
                        {"n_tokens", n_tokens},
                        {"latency_ms_one_way", latency_ms},
                        {"bandwidth_mbit", bandwidth_mbit},
                        {"reps", reps},
                        {"results", results}};
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
