// Writes the binary seed corpora of the fuzz targets from real encoders, in each target's input
// format: wire messages (transport::EncodeMessage), activation frames (transport::EncodeTensor),
// peer records (SerializePeerRecord, and signed OpenDHT values) and GGUF files (a tiny synthetic
// model, and the head of a real one). Run once by hand; its output is committed under corpus/.
// Usage: fuzz_make_corpus CORPUS_DIR REAL_MODEL.gguf
#include <opendht/crypto.h>
#include <opendht/value.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "model/synthetic_model.h"
#include "registry/dht_registry.h"
#include "registry/peer_record.h"
#include "transport/codec.h"
#include "transport/protocol.h"
#include "transport/route_seal.h"

namespace {

namespace fs = std::filesystem;
namespace t = swarm::transport;
namespace r = swarm::registry;

void Write(const fs::path& dir, const std::string& name, const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string Str(std::span<const uint8_t> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

std::vector<float> Hidden(size_t n) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>((i * 37 % 101) - 50) / 13.0f;
  return x;
}

void WireMessages(const fs::path& dir) {
  const t::SessionId sid{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  auto emit = [&](const std::string& name, const t::Message& body,
                  std::optional<t::Payload> tensor) {
    auto wire = t::EncodeMessage(7, body, tensor);
    if (!wire.ok()) {
      std::fprintf(stderr, "%s: %s\n", name.c_str(), wire.status().ToString().c_str());
      std::exit(1);
    }
    uint32_t prefix = static_cast<uint32_t>(wire->header.size()) | (tensor ? 0x80000000u : 0);
    std::string bytes(reinterpret_cast<const char*>(&prefix), 4);
    bytes += Str(wire->header.bytes());
    if (tensor) bytes += Str(tensor->bytes());
    Write(dir, name, bytes);
  };
  emit("info_request", t::InfoRequest{}, std::nullopt);
  emit("info_reply", t::InfoReply{"peer-a", "stories260K", 0, 5, "cpu", 1200.5, 80.25, 4096, 2048},
       std::nullopt);
  t::Codec int8z;
  int8z.dtype = t::Dtype::kInt8Block;
  int8z.zstd = true;
  const t::SessionCapabilities caps = t::SessionCapabilities::Random();
  emit("open_session", t::OpenSession{sid, 0, 3, 512, int8z, 0, true, caps}, std::nullopt);
  emit("open_session_reply", t::OpenSessionReply{sid, true, 512, ""}, std::nullopt);
  const std::vector<float> x = Hidden(64 * 2);
  for (const char* codec_name : {"f32", "f16+zstd", "int8/32", "int8h+zstd"}) {
    const t::Codec codec = *t::ParseCodec(codec_name);
    auto enc = t::EncodeActivations(x, {64, 2}, codec);
    const t::SealingHop route[] = {
        {t::Hop{}, caps.route_key},
        {t::Hop{"tcp://127.0.0.1:31337", sid, codec, caps.push}, t::RouteKey::Random()}};
    t::Step step{sid, 3, 10, 2, enc->desc, caps.owner, *t::SealRoute(route, {3, 10, 2, false})};
    std::string name = std::string("step_") + codec_name;
    for (char& c : name) c = (c == '+' || c == '/') ? '_' : c;
    emit(name, step, enc->bytes);
  }
  auto out = t::EncodeActivations(x, {64, 2}, t::Codec{});
  emit("step_output", t::StepOutput{sid, 3, 10, 2, 0, 0, 3, out->desc}, out->bytes);
  emit("close_session", t::CloseSession{sid, caps.owner}, std::nullopt);
  emit("error", t::ErrorReply::FromStatus(absl::ResourceExhaustedError("no cache left"), sid, 3),
       std::nullopt);
  emit("ping", t::Ping{42, 123456789}, std::nullopt);
}

void Activations(const fs::path& dir) {
  const std::vector<float> x = Hidden(96);
  for (const char* codec_name : {"f32", "f16", "bf16", "int8", "int8h/32", "f32+zstd", "f16+zstd",
                                 "int8+zstd", "int8h/8+zstd"}) {
    const t::Codec codec = *t::ParseCodec(codec_name);
    auto bytes = t::EncodeTensor(x.data(), x.size(), codec);
    std::string prefix(6, '\0');
    prefix[0] = static_cast<char>(static_cast<int>(codec.dtype) | (codec.zstd ? 4 : 0) |
                                  (codec.scale_f16 ? 8 : 0));
    prefix[1] = static_cast<char>(codec.block_size & 0xff);
    prefix[2] = static_cast<char>(codec.block_size >> 8);
    prefix[3] = static_cast<char>(x.size());
    std::string name = codec_name;
    for (char& c : name) c = (c == '+' || c == '/') ? '_' : c;
    Write(dir, name, prefix + Str(*bytes));
  }
}

void PeerRecords(const fs::path& dir) {
  r::PeerRecord rec;
  auto key = dht::crypto::PrivateKey::generate(1024);
  const dht::InfoHash id = key.getPublicKey().getId();
  std::array<uint8_t, r::PeerId::kSize> idb{};
  std::memcpy(idb.data(), id.data(), idb.size());
  rec.peer_id = r::PeerId(idb);
  rec.address = "tcp://192.168.1.20:31337";
  rec.model_id = "stories260K";
  rec.blocks = {0, 3};
  rec.state = r::PeerState::kOnline;
  rec.decode_tps_per_block = 950.5;
  rec.prompt_tps_per_block = 12000;
  rec.network_tps = 3000;
  rec.free_cache_tokens = 8192;
  rec.total_cache_tokens = 16384;
  rec.active_sessions = 2;
  rec.rtt_ms[r::PeerId::FromName("peer-b")] = 12.5;
  rec.dht_port = 4222;
  rec.expiry_unix_ms = 1'700'000'030'000;
  rec.seq = 1'699'999'990'000;
  const std::string bytes = r::SerializePeerRecord(rec);
  Write(dir, "record", "\x01" + bytes);
  r::PeerRecord joining = rec;
  joining.state = r::PeerState::kJoining;
  joining.rtt_ms.clear();
  joining.transport_key = std::string(r::kTransportKeySize, 'k');
  joining.address = "tcp://[::1]:4000";
  Write(dir, "record_joining", "\x01" + r::SerializePeerRecord(joining));
  dht::Value value(dht::ValueType::USER_DATA.id, dht::Blob(bytes.begin(), bytes.end()));
  value.user_type = std::string(r::kPeerRecordUserType);
  value.sign(key);
  const dht::Blob packed = value.getPacked();
  Write(dir, "signed_value", std::string(1, '\0') + Str(packed));
}

void Gguf(const fs::path& dir, const std::string& real_model) {
  swarm::model::SyntheticModelSpec spec;
  spec.n_layer = 1;
  spec.n_embd = 8;
  spec.n_ff = 16;
  spec.n_head = 2;
  spec.n_head_kv = 1;
  spec.n_vocab = 259;
  spec.n_ctx = 64;
  spec.type = swarm::kernels::GgmlType::kF16;
  spec.n_threads = 1;
  fs::create_directories(dir);
  auto written = swarm::model::WriteSyntheticModel(spec, (dir / "synthetic_tiny.gguf").string());
  if (!written.ok()) {
    std::fprintf(stderr, "gguf: %s\n", written.status().ToString().c_str());
    std::exit(1);
  }
  // The head of a real model: its metadata up to part of the vocabulary.
  std::ifstream in(real_model, std::ios::binary);
  std::string head(6144, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  Write(dir, "real_model_head.gguf", head);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR REAL_MODEL.gguf\n", argv[0]);
    return 2;
  }
  const fs::path root = argv[1];
  WireMessages(root / "fuzz_wire_message");
  Activations(root / "fuzz_activations");
  PeerRecords(root / "fuzz_peer_record");
  Gguf(root / "fuzz_gguf", argv[2]);
  return 0;
}
