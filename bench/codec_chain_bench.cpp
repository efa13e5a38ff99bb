// Activation codecs through a real chain: for each codec, the bytes a token's activations take on
// one hop, and the error the codec introduces into generation: the NMSE of the final hidden states
// against the in-process engine fed the same inputs, and the agreement of greedy tokens with the
// in-process reference over N steps (tokens equal before the first divergence). The peers are
// PeerServers on loopback TCP in this process (one thread each), the client is ChainSession.
// Prints one JSON line per codec, then a summary table on stderr.
//
// Usage: codec_chain_bench [-m stories260K.gguf] [--split 0:2,2:4,4:5] [-n 200]
//                          [--codecs f32,f16,bf16,int8,...]
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "kernels/backend_factory.h"
#include "model/generator.h"
#include "model/model_weights.h"
#include "peer/peer_server.h"
#include "router/chain_session.h"
#include "shard/local_model.h"
#include "shard/local_pipeline.h"
#include "support/nmse.h"
#include "support/shared_model.h"
#include "transport/codec.h"

namespace {

using namespace swarm;
using nlohmann::json;

// A peer in a thread: its own mapped file, backend, blocks and server loop.
class ThreadPeer {
 public:
  static absl::StatusOr<std::unique_ptr<ThreadPeer>> Start(zmq::context_t& context,
                                                           const std::string& path, int64_t first,
                                                           int64_t last) {
    auto peer = std::unique_ptr<ThreadPeer>(new ThreadPeer);
    SWARM_ASSIGN_OR_RETURN(peer->file_, model::GgufFile::Open(path));
    SWARM_ASSIGN_OR_RETURN(peer->config_, model::ReadModelConfig(*peer->file_));
    kernels::BackendOptions backend;
    SWARM_ASSIGN_OR_RETURN(peer->backend_, kernels::MakeBackend(backend));
    SWARM_ASSIGN_OR_RETURN(auto weights,
                           model::LoadBlockWeights(*peer->file_, peer->config_, first, last));
    SWARM_ASSIGN_OR_RETURN(peer->stack_,
                           shard::BlockStack::Create(*peer->backend_, peer->config_, weights));
    peer::PeerServerOptions options;
    options.model_id = peer->config_.model_id;
    SWARM_ASSIGN_OR_RETURN(peer->server_,
                           peer::PeerServer::Create(context, *peer->stack_, options));
    peer->hop_ = {peer->server_->endpoint(), static_cast<uint32_t>(first),
                  static_cast<uint32_t>(last), ""};
    peer->thread_ = std::thread([p = peer.get()] { (void)p->server_->Run(); });
    return peer;
  }
  ~ThreadPeer() {
    if (server_ != nullptr) server_->Stop();
    if (thread_.joinable()) thread_.join();
  }
  const router::ChainHop& hop() const { return hop_; }

 private:
  ThreadPeer() = default;
  std::unique_ptr<model::GgufFile> file_;
  model::ModelConfig config_;
  std::unique_ptr<kernels::Backend> backend_;
  std::unique_ptr<shard::BlockStack> stack_;
  std::unique_ptr<peer::PeerServer> server_;
  router::ChainHop hop_;
  std::thread thread_;
};

// Runs the chain and, when set, the in-process engine on the same inputs; records the chain's
// final hidden states (one column per token) and their error against the engine's.
class Recorder : public model::BlockPipeline {
 public:
  Recorder(model::BlockPipeline& chain, model::BlockPipeline* reference, int64_t n_embd)
      : chain_(chain), reference_(reference), n_embd_(n_embd) {}
  absl::Status Forward(int64_t n_tokens, const float* hidden_in, float* hidden_out) override {
    const size_t n = static_cast<size_t>(n_embd_ * n_tokens);
    input_.assign(hidden_in, hidden_in + n);  // may alias hidden_out
    SWARM_RETURN_IF_ERROR(chain_.Forward(n_tokens, input_.data(), hidden_out));
    outputs_.insert(outputs_.end(), hidden_out, hidden_out + n);
    if (reference_ == nullptr) return absl::OkStatus();
    expected_.resize(n);
    SWARM_RETURN_IF_ERROR(reference_->Forward(n_tokens, input_.data(), expected_.data()));
    nmse_.Add(hidden_out, expected_.data(), n);
    return absl::OkStatus();
  }
  double nmse() const { return nmse_.nmse(); }
  const std::vector<float>& outputs() const { return outputs_; }  // [n_embd, positions]

 private:
  model::BlockPipeline& chain_;
  model::BlockPipeline* reference_;
  int64_t n_embd_;
  std::vector<float> input_, expected_, outputs_;
  test_support::NmseAccumulator nmse_;
};

absl::StatusOr<std::vector<int32_t>> Greedy(shard::LocalModel& m, model::BlockPipeline& blocks,
                                            int64_t n) {
  model::SamplingParams params;
  params.temperature = 0;
  model::Sampler sampler(params);
  model::GenerateOptions options;
  options.max_new_tokens = n;
  options.stop_at_end_of_generation = false;
  std::vector<int32_t> tokens;
  const std::vector<int32_t> prompt = {m.tokenizer->bos_id()};
  SWARM_RETURN_IF_ERROR(
      model::Generate(prompt, options, *m.head, blocks, sampler, *m.tokenizer, [&](int32_t t) {
        tokens.push_back(t);
        return true;
      }).status());
  return tokens;
}

int Run(const std::string& model_path, const std::string& split, int64_t n_tokens,
        const std::vector<std::string>& codecs) {
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 1;
  };
  kernels::BackendOptions backend;
  auto local = shard::LocalModel::Load(model_path, backend, /*load_blocks=*/true);
  if (!local.ok()) return fail(local.status());
  shard::LocalModel& m = **local;
  const int64_t n_embd = m.config.n_embd;
  const int64_t max_length = 1 + n_tokens;

  zmq::context_t context(1);
  std::vector<std::unique_ptr<ThreadPeer>> peers;
  std::vector<router::ChainHop> hops;
  for (absl::string_view range : absl::StrSplit(split, ',')) {
    std::pair<std::string, std::string> ab = absl::StrSplit(range, ':');
    int64_t first = 0, last = 0;
    if (!absl::SimpleAtoi(ab.first, &first) || !absl::SimpleAtoi(ab.second, &last)) {
      return fail(absl::InvalidArgumentError("--split takes A:B,B:C,..."));
    }
    auto peer = ThreadPeer::Start(context, model_path, first, last);
    if (!peer.ok()) return fail(peer.status());
    hops.push_back((*peer)->hop());
    peers.push_back(std::move(*peer));
  }

  auto reference_pipeline = shard::LocalPipeline::Create(*m.blocks, max_length);
  if (!reference_pipeline.ok()) return fail(reference_pipeline.status());
  auto reference = Greedy(m, **reference_pipeline, n_tokens);
  if (!reference.ok()) return fail(reference.status());

  // The exact activations on every link of the chain, one column per token: the client's
  // embeddings into hop 0, each hop's input from the previous one, and the last hop's output.
  std::vector<std::vector<float>> links;
  {
    router::ChainOptions options;
    options.max_length = max_length;
    auto chain = router::ChainSession::Open(context, hops, m.config.n_layer, n_embd, options);
    if (!chain.ok()) return fail(chain.status());
    Recorder recorder(**chain, nullptr, n_embd);
    auto tokens = Greedy(m, recorder, n_tokens);
    if (!tokens.ok()) return fail(tokens.status());
    for (size_t h = 0; h < hops.size(); ++h) links.push_back((*chain)->history(h));
    links.push_back(recorder.outputs());
  }

  struct Row {
    std::string codec;
    double bytes = 0, nmse = 0;
    int agreement = 0;
  };
  std::vector<Row> rows;
  double f32_bytes = 0;
  for (const std::string& name : codecs) {
    auto codec = transport::ParseCodec(name);
    if (!codec.ok()) return fail(codec.status());
    transport::CodecWorkspace workspace;
    double bytes = 0;
    int64_t columns = 0;
    for (const std::vector<float>& link : links) {
      for (size_t t = 0; t + n_embd <= link.size(); t += n_embd) {
        auto encoded = transport::EncodeTensor(link.data() + t, n_embd, *codec, &workspace);
        if (!encoded.ok()) return fail(encoded.status());
        bytes += encoded->size();
        ++columns;
      }
    }
    bytes /= columns;
    if (name == "f32") f32_bytes = bytes;

    router::ChainOptions options;
    options.codec = *codec;
    options.max_length = max_length;
    auto chain = router::ChainSession::Open(context, hops, m.config.n_layer, n_embd, options);
    if (!chain.ok()) return fail(chain.status());
    auto engine = shard::LocalPipeline::Create(*m.blocks, max_length);
    if (!engine.ok()) return fail(engine.status());
    Recorder recorder(**chain, engine->get(), n_embd);
    auto tokens = Greedy(m, recorder, n_tokens);
    if (!tokens.ok()) return fail(tokens.status());
    int agreement = 0;
    while (agreement < n_tokens && (*tokens)[agreement] == (*reference)[agreement]) ++agreement;
    rows.push_back({name, bytes, recorder.nmse(), agreement});
    json line = {{"bench", "codec_chain"},
                 {"model", model_path.substr(model_path.find_last_of('/') + 1)},
                 {"n_embd", n_embd},
                 {"split", split},
                 {"hops", hops.size()},
                 {"codec", transport::CodecName(*codec)},
                 {"bytes_per_token_per_hop", bytes},
                 {"nmse_final_hidden", recorder.nmse()},
                 {"greedy_agreement", agreement},
                 {"greedy_steps", n_tokens}};
    std::printf("%s\n", line.dump().c_str());
    std::fflush(stdout);
  }
  std::fprintf(stderr, "%-14s %12s %8s %12s %12s\n", "codec", "bytes/token", "vs f32", "nmse",
               "agreement");
  for (const Row& r : rows) {
    std::fprintf(stderr, "%-14s %12.1f %7.2fx %12.3e %8d/%lld\n", r.codec.c_str(), r.bytes,
                 f32_bytes > 0 ? f32_bytes / r.bytes : 0.0, r.nmse, r.agreement,
                 static_cast<long long>(n_tokens));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Activation codecs through a chain of peers: bytes per token per hop, NMSE, "
      "greedy agreement"};
  std::string model = test_support::kSharedModel;
  std::string split = "0:2,2:4,4:5";
  int64_t n_tokens = 200;
  std::vector<std::string> codecs = {"f32",     "f16",      "bf16",      "int8",     "int8h",
                                     "int8/32", "f16+zstd", "bf16+zstd", "int8+zstd"};
  app.add_option("-m,--model", model, "Model GGUF")->capture_default_str();
  app.add_option("--split", split, "Block ranges of the peers, in order")->capture_default_str();
  app.add_option("-n", n_tokens, "Greedy steps")->capture_default_str()->check(CLI::Range(1, 4096));
  app.add_option("--codecs", codecs, "Codecs to measure")->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  return Run(model, split, n_tokens, codecs);
}
