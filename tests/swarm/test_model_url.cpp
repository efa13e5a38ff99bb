// `swarm serve --model-url` and `swarm generate -m URL` against a local HTTP server with range
// support (tests/support/range_server.py; no internet): a peer fetches only the blocks it serves,
// the swarm's text equals the in-process reference, a killed download resumes, a mirror's bad
// tensor is refused by name, and servers without ranges or with lying headers, and hostile GGUF
// headers, are clear errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/subprocess.h"
#include "cli/cli_test_util.h"
#include "model/gguf.h"
#include "model/model_config.h"
#include "peer/ready_line.h"
#include "peer/tensor_manifest.h"
#include "registry/dht_registry.h"
#include "support/files.h"
#include "support/shared_model.h"
#include "transport/http_range_client.h"

namespace swarm {
namespace {

using std::chrono::seconds;
using test_support::ScratchDir;

// The range server is python3's standard library; a machine without python3 skips these tests.
#define SKIP_WITHOUT_PYTHON()                                               \
  if (::access(SWARM_PYTHON3, X_OK) != 0) {                                 \
    GTEST_SKIP() << "python3 not found at configure time: no range server"; \
  }

bool CopyFile(const std::string& from, const std::string& to) {
  return test_support::WriteFile(to, test_support::ReadBytes(from));
}

// The range server as a process, on an OS-chosen port.
class RangeServer {
 public:
  explicit RangeServer(const std::string& root, std::vector<std::string> extra = {}) {
    Subprocess::Options options;
    options.argv = {SWARM_PYTHON3, SWARM_RANGE_SERVER, "--root", root};
    options.argv.insert(options.argv.end(), extra.begin(), extra.end());
    auto process = Subprocess::Start(options);
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) return;
    process_ = std::move(*process);
    auto line = process_->ReadLine(std::chrono::seconds(20));
    EXPECT_TRUE(line.ok() && absl::StartsWith(*line, "port ")) << line.status();
    if (line.ok()) base_ = absl::StrCat("http://127.0.0.1:", line->substr(5));
  }
  std::string Url(const std::string& name) const { return base_ + "/" + name; }
  std::string port() const { return base_.substr(base_.rfind(':') + 1); }
  // Body bytes the server has sent.
  uint64_t BytesServed() const {
    auto client = transport::HttpRangeClient::Create(base_ + "/__stats");
    EXPECT_TRUE(client.ok()) << client.status();
    if (!client.ok()) return 0;
    auto text = (*client)->GetAll(4096);
    EXPECT_TRUE(text.ok()) << text.status();
    uint64_t bytes = 0;
    if (text.ok()) {
      for (absl::string_view line : absl::StrSplit(*text, '\n')) {
        if (absl::ConsumePrefix(&line, "bytes ")) {
          EXPECT_TRUE(absl::SimpleAtoi(line, &bytes));
        }
      }
    }
    return bytes;
  }
  Subprocess* process() { return process_.get(); }

 private:
  std::unique_ptr<Subprocess> process_;
  std::string base_;
};

// A `swarm serve` process and its ready line.
struct ServeProcess {
  std::unique_ptr<Subprocess> process;
  peer::ReadyLine ready;
  std::string stderr_path;
};

ServeProcess StartServe(std::vector<std::string> args, const std::string& stderr_path) {
  ServeProcess out;
  out.stderr_path = stderr_path;
  Subprocess::Options options;
  options.argv = {SWARM_BINARY, "serve", "--listen", "tcp://127.0.0.1:0", "--backend", "reference"};
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  options.stderr_path = stderr_path;
  auto process = Subprocess::Start(options);
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return out;
  out.process = std::move(*process);
  auto line = out.process->ReadLine(std::chrono::seconds(120));
  EXPECT_TRUE(line.ok()) << line.status() << "\n" << test_support::ReadFile(stderr_path);
  if (!line.ok()) return out;
  auto ready = peer::ReadyLine::Parse(*line);
  EXPECT_TRUE(ready.ok()) << ready.status();
  if (ready.ok()) out.ready = *ready;
  return out;
}

std::vector<std::string> DhtArgs() {
  return {"--dht-bind", "127.0.0.1", "--announce-interval", "0.2", "--record-ttl", "3"};
}

std::string WriteManifest(const std::string& model, const std::string& out) {
  cli_test::Result r = cli_test::RunSwarm({"manifest", model});
  EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_TRUE(test_support::WriteFile(out, r.stdout_text.data(), r.stdout_text.size()));
  return out;
}

uint64_t BlockBytes(const model::GgufFile& file, int first, int last) {
  uint64_t sum = 0;
  for (const auto& t : file.tensors()) {
    for (int b = first; b < last; ++b) {
      if (absl::StartsWith(t.name, absl::StrCat("blk.", b, "."))) sum += t.size;
    }
  }
  return sum;
}

// The volunteer's one command: a URL and a bootstrap address. The first peer serves a whole local
// file, computes its manifest and publishes it in the DHT; the volunteer takes it from there,
// fetches only the blocks it serves, and the swarm's greedy text equals the in-process reference,
// with the client also fetching only its part from the URL. A volunteer on a bad mirror refuses
// the bad tensor against the DHT's manifest, and one that finds two manifests there stops.
TEST(ModelUrlTest, VolunteerJoinsWithAUrlFetchesOnlyItsBlocksAndTheTextMatches) {
  SKIP_WITHOUT_PYTHON();
  ScratchDir dir;
  const std::string www = dir.File("www"), bad = dir.File("bad");
  ASSERT_EQ(std::system(("mkdir -p " + www + " " + bad).c_str()), 0);
  ASSERT_TRUE(CopyFile(test_support::kSharedModel, www + "/model.gguf"));
  WriteManifest(www + "/model.gguf", www + "/model.gguf.manifest.json");
  RangeServer server(www);
  auto full = model::GgufFile::Open(www + "/model.gguf");
  ASSERT_TRUE(full.ok());
  auto config = model::ReadModelConfig(**full);
  ASSERT_TRUE(config.ok());

  std::vector<std::string> a_args = {"-m", test_support::kSharedModel, "--blocks", "0:2"};
  for (const auto& s : DhtArgs()) a_args.push_back(s);
  ServeProcess a = StartServe(a_args, dir.File("a.log"));
  ASSERT_NE(a.ready.dht_port, 0);
  EXPECT_NE(test_support::ReadFile(a.stderr_path).find("serve: manifest of"), std::string::npos)
      << test_support::ReadFile(a.stderr_path);
  const std::string bootstrap = absl::StrCat("127.0.0.1:", a.ready.dht_port);
  // The volunteer comes once the first peer's record and manifest are in the DHT.
  {
    registry::DhtRegistryOptions options;
    options.bind_address = "127.0.0.1";
    options.initial_peers = {bootstrap};
    options.client_only = true;
    auto client = registry::DhtRegistry::Create(options);
    ASSERT_TRUE(client.ok()) << client.status();
    bool online = false;
    for (int i = 0; i < 100 && !online; ++i) {
      auto snapshot = (*client)->Snapshot(config->model_id);
      online = snapshot.ok() && !snapshot->empty() &&
               snapshot->front().state == registry::PeerState::kOnline &&
               !(*client)->ReadBlobs(peer::ManifestDhtName(config->model_id)).empty();
      if (!online) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    ASSERT_TRUE(online) << "the first peer's record or manifest never showed in the DHT";
  }

  std::vector<std::string> b_args = {"--model-url",
                                     server.Url("model.gguf"),
                                     "--blocks",
                                     "2:5",
                                     "--initial-peers",
                                     bootstrap,
                                     "--model-cache",
                                     dir.File("cache-b"),
                                     "--download-chunk-kib",
                                     "16"};
  for (const auto& s : DhtArgs()) b_args.push_back(s);
  ServeProcess b = StartServe(b_args, dir.File("b.log"));
  EXPECT_EQ(b.ready.Blocks(), "2:5") << test_support::ReadFile(b.stderr_path);
  EXPECT_NE(test_support::ReadFile(b.stderr_path).find("manifest from the DHT"), std::string::npos)
      << test_support::ReadFile(b.stderr_path);
  EXPECT_EQ(test_support::ReadFile(b.stderr_path).find("not checked"), std::string::npos)
      << test_support::ReadFile(b.stderr_path);
  const uint64_t served = server.BytesServed();
  const uint64_t blocks = BlockBytes(**full, 2, 5);
  std::printf(
      "peer fetched %llu bytes for blocks 2:5 (%llu bytes of tensors) of a %llu-byte file\n",
      static_cast<unsigned long long>(served), static_cast<unsigned long long>(blocks),
      static_cast<unsigned long long>((*full)->file_size()));
  EXPECT_GE(served, blocks);
  EXPECT_LT(served, blocks + (*full)->data_offset() + 128 * 1024);
  EXPECT_LT(served, (*full)->file_size() - BlockBytes(**full, 0, 2));

  // A volunteer on a mirror with one wrong byte, and no --manifest: the DHT's manifest refuses
  // the tensor by name.
  {
    const model::GgufTensorInfo* target = (*full)->FindTensor("blk.3.ffn_down.weight");
    ASSERT_NE(target, nullptr);
    std::vector<uint8_t> bytes = test_support::ReadBytes(www + "/model.gguf");
    bytes[(*full)->data_offset() + target->offset + target->size / 2] ^= 0x40;
    ASSERT_TRUE(test_support::WriteFile(bad + "/model.gguf", bytes));
    RangeServer mirror(bad);
    cli_test::Result r = cli_test::RunSwarm(
        {"serve", "--listen", "tcp://127.0.0.1:0", "--model-url", mirror.Url("model.gguf"),
         "--blocks", "2:5", "--initial-peers", bootstrap, "--dht-bind", "127.0.0.1",
         "--model-cache", dir.File("cache-c"), "--download-chunk-kib", "16"});
    EXPECT_EQ(r.exit_code, 1) << r.stderr_text;
    EXPECT_NE(r.stderr_text.find("manifest from the DHT"), std::string::npos) << r.stderr_text;
    EXPECT_NE(r.stderr_text.find("tensor 'blk.3.ffn_down.weight' does not match the manifest"),
              std::string::npos)
        << r.stderr_text;
  }

  // Someone publishes a different manifest under the model's name: a volunteer without
  // --manifest stops, naming both, rather than trusting either.
  {
    auto manifest =
        peer::TensorManifest::FromJson(test_support::ReadFile(www + "/model.gguf.manifest.json"));
    ASSERT_TRUE(manifest.ok()) << manifest.status();
    manifest->tensors["blk.3.ffn_down.weight"] = std::string(64, '0');
    registry::DhtRegistryOptions options;
    options.bind_address = "127.0.0.1";
    options.initial_peers = {bootstrap};
    options.key_bits = 1024;
    auto liar = registry::DhtRegistry::Create(options);
    ASSERT_TRUE(liar.ok()) << liar.status();
    ASSERT_TRUE((*liar)
                    ->PublishBlob(peer::ManifestDhtName(config->model_id),
                                  manifest->ToJson(/*compact=*/true))
                    .ok());
    cli_test::Result r = cli_test::RunSwarm(
        {"serve", "--listen", "tcp://127.0.0.1:0", "--model-url", server.Url("model.gguf"),
         "--blocks", "2:5", "--initial-peers", bootstrap, "--dht-bind", "127.0.0.1",
         "--model-cache", dir.File("cache-d"), "--download-chunk-kib", "16"});
    EXPECT_EQ(r.exit_code, 1) << r.stderr_text;
    EXPECT_NE(r.stderr_text.find("the DHT holds different manifests"), std::string::npos)
        << r.stderr_text;
  }

  // The client: embeddings, norm and head from the URL, the blocks from the two peers (a fixed
  // chain: whether a peer that has just joined is found in the DHT is the routing tests' subject).
  const uint64_t before = server.BytesServed();
  cli_test::Result r = cli_test::RunSwarm(
      {"generate", "-m", server.Url("model.gguf"), "--manifest", www + "/model.gguf.manifest.json",
       "--model-cache", dir.File("cache-client"), "--download-chunk-kib", "16", "--peers",
       a.ready.address + "," + b.ready.address, "-p", "", "-n", "200", "--temp", "0"});
  EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_EQ(r.stdout_text, test_support::ReadFile(test_support::kSharedReferenceText))
      << r.stderr_text;
  EXPECT_LT(server.BytesServed() - before,
            (*full)->file_size() - BlockBytes(**full, 0, 5) + (*full)->data_offset() + 128 * 1024);
}

// A multi-block synthetic model: the download is cut off midway (the server dies), and the
// restarted peer fetches only what it lacked.
TEST(ModelUrlTest, KilledDownloadResumesWhereItStopped) {
  SKIP_WITHOUT_PYTHON();
  ScratchDir dir;
  const std::string www = dir.File("www");
  ASSERT_EQ(std::system(("mkdir -p " + www).c_str()), 0);
  cli_test::Result made = cli_test::RunSwarm(
      {"make-model", "--n-layer", "8", "--n-embd", "128", "--n-ff", "256", "--n-head", "4",
       "--n-vocab", "300", "--type", "q8_0", "--seed", "3", "-o", www + "/synth.gguf"});
  ASSERT_EQ(made.exit_code, 0) << made.stderr_text;
  auto full = model::GgufFile::Open(www + "/synth.gguf");
  ASSERT_TRUE(full.ok());
  const uint64_t size = (*full)->file_size();
  const std::string manifest = WriteManifest(www + "/synth.gguf", dir.File("synth.manifest.json"));
  const std::vector<std::string> args = {"--no-dht",
                                         "--blocks",
                                         "0:8",
                                         "--manifest",
                                         manifest,
                                         "--model-cache",
                                         dir.File("cache"),
                                         "--download-chunk-kib",
                                         "16"};
  uint64_t first_run = 0;
  std::string port;  // the restarted server listens where the first did: the URL is the same
  {
    RangeServer dying(www, {"--die-after", std::to_string(size / 2)});
    port = dying.port();
    std::vector<std::string> run = {"serve", "--listen", "tcp://127.0.0.1:0", "--model-url",
                                    dying.Url("synth.gguf")};
    run.insert(run.end(), args.begin(), args.end());
    cli_test::Result r = cli_test::RunSwarm(run);
    EXPECT_EQ(r.exit_code, 1) << r.stderr_text;
    EXPECT_NE(r.stderr_text.find("error:"), std::string::npos) << r.stderr_text;
    first_run = size / 2;
  }
  RangeServer server(www, {"--port", port});
  std::vector<std::string> run = {"--model-url", server.Url("synth.gguf")};
  run.insert(run.end(), args.begin(), args.end());
  ServeProcess peer = StartServe(run, dir.File("serve.log"));
  EXPECT_EQ(peer.ready.Blocks(), "0:8") << test_support::ReadFile(peer.stderr_path);
  const uint64_t second_run = server.BytesServed();
  std::printf("file %llu bytes; first run cut off after %llu, the second fetched %llu\n",
              static_cast<unsigned long long>(size), static_cast<unsigned long long>(first_run),
              static_cast<unsigned long long>(second_run));
  EXPECT_LT(second_run, size - size / 4) << "the second run started over";
  EXPECT_GT(second_run, 0u);
}

// A mirror that serves one wrong byte: refused naming the tensor, and the bad bytes are not kept
// (a later run from a good mirror fetches that tensor again and serves).
TEST(ModelUrlTest, CorruptTensorFromAMirrorIsRefusedByName) {
  SKIP_WITHOUT_PYTHON();
  ScratchDir dir;
  const std::string good = dir.File("good"), bad = dir.File("bad");
  ASSERT_EQ(std::system(("mkdir -p " + good + " " + bad).c_str()), 0);
  ASSERT_TRUE(CopyFile(test_support::kSharedModel, good + "/model.gguf"));
  const std::string manifest = WriteManifest(good + "/model.gguf", dir.File("manifest.json"));
  auto file = model::GgufFile::Open(good + "/model.gguf");
  ASSERT_TRUE(file.ok());
  const model::GgufTensorInfo* target = (*file)->FindTensor("blk.3.ffn_down.weight");
  ASSERT_NE(target, nullptr);
  std::vector<uint8_t> bytes = test_support::ReadBytes(good + "/model.gguf");
  bytes[(*file)->data_offset() + target->offset + target->size / 2] ^= 0x40;
  ASSERT_TRUE(test_support::WriteFile(bad + "/model.gguf", bytes));

  const std::vector<std::string> args = {"--no-dht",
                                         "--blocks",
                                         "2:5",
                                         "--manifest",
                                         manifest,
                                         "--model-cache",
                                         dir.File("cache"),
                                         "--download-chunk-kib",
                                         "16"};
  std::string port;  // the good mirror takes the bad one's place: the same URL, the same cache
  {
    RangeServer mirror(bad);
    port = mirror.port();
    std::vector<std::string> run = {"serve", "--listen", "tcp://127.0.0.1:0", "-m",
                                    mirror.Url("model.gguf")};
    run.insert(run.end(), args.begin(), args.end());
    cli_test::Result r = cli_test::RunSwarm(run);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.stderr_text.find("tensor 'blk.3.ffn_down.weight' does not match the manifest"),
              std::string::npos)
        << r.stderr_text;
  }
  RangeServer server(good, {"--port", port});
  std::vector<std::string> run = {"-m", server.Url("model.gguf")};
  run.insert(run.end(), args.begin(), args.end());
  ServeProcess peer = StartServe(run, dir.File("serve.log"));
  EXPECT_EQ(peer.ready.Blocks(), "2:5") << test_support::ReadFile(peer.stderr_path);
  // The bad tensor is fetched again; what was checked before is not.
  EXPECT_GE(server.BytesServed(), target->size) << "the bad tensor was kept";
  EXPECT_LT(server.BytesServed(), BlockBytes(**file, 2, 5)) << "everything was fetched again";
}

cli_test::Result ServeUrl(const std::string& url, const std::string& cache) {
  return cli_test::RunSwarm({"serve", "--listen", "tcp://127.0.0.1:0", "--no-dht", "--blocks",
                             "0:1", "--model-url", url, "--model-cache", cache,
                             "--download-chunk-kib", "16"});
}

TEST(ModelUrlTest, ServerWithoutRangesIsAClearError) {
  SKIP_WITHOUT_PYTHON();
  ScratchDir dir;
  ASSERT_TRUE(CopyFile(test_support::kSharedModel, dir.File("model.gguf")));
  RangeServer server(dir.path(), {"--no-ranges"});
  cli_test::Result r = ServeUrl(server.Url("model.gguf"), dir.File("cache"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.stderr_text.find("does not support range requests"), std::string::npos)
      << r.stderr_text;
}

TEST(ModelUrlTest, LyingContentRangeIsAClearError) {
  SKIP_WITHOUT_PYTHON();
  ScratchDir dir;
  ASSERT_TRUE(CopyFile(test_support::kSharedModel, dir.File("model.gguf")));
  RangeServer server(dir.path(), {"--lie"});
  cli_test::Result r = ServeUrl(server.Url("model.gguf"), dir.File("cache"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.stderr_text.find("Content-Range"), std::string::npos) << r.stderr_text;
}

TEST(ModelUrlTest, HostileHeadersAreClearErrorsNotCrashes) {
  SKIP_WITHOUT_PYTHON();
  ScratchDir dir;
  auto header = [](uint64_t n_tensors, uint64_t n_kv, uint64_t key_length) {
    std::vector<uint8_t> b(4096, 0);
    std::memcpy(b.data(), "GGUF", 4);
    const uint32_t version = 3;
    std::memcpy(b.data() + 4, &version, 4);
    std::memcpy(b.data() + 8, &n_tensors, 8);
    std::memcpy(b.data() + 16, &n_kv, 8);
    std::memcpy(b.data() + 24, &key_length, 8);
    return b;
  };
  ASSERT_TRUE(test_support::WriteFile(dir.File("counts.gguf"), header(uint64_t{1} << 40, 0, 0)));
  ASSERT_TRUE(test_support::WriteFile(dir.File("length.gguf"), header(0, 1, uint64_t{1} << 50)));
  ASSERT_TRUE(test_support::WriteFile(dir.File("magic.gguf"), std::vector<uint8_t>(4096, 'x')));
  RangeServer server(dir.path());
  for (const char* name : {"counts.gguf", "length.gguf", "magic.gguf"}) {
    cli_test::Result r = ServeUrl(server.Url(name), dir.File("cache"));
    EXPECT_EQ(r.exit_code, 1) << name << ": " << r.stderr_text;
    EXPECT_NE(r.stderr_text.find("error: "), std::string::npos) << r.stderr_text;
  }
  cli_test::Result missing = ServeUrl(server.Url("nothing.gguf"), dir.File("cache"));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.stderr_text.find("HTTP 404"), std::string::npos) << missing.stderr_text;
  cli_test::Result https = ServeUrl("https://127.0.0.1:1/model.gguf", dir.File("cache"));
  EXPECT_EQ(https.exit_code, 1);
  EXPECT_NE(https.stderr_text.find("https:// is not supported"), std::string::npos)
      << https.stderr_text;
}

}  // namespace
}  // namespace swarm
