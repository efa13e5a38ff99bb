// `swarm api --draft lookup` as clients meet it: the in-process gateway and the gateway in front of
// a 3-peer swarm answer a greedy request exactly as the plain gateway does, /metrics and
// /api/swarm show the speculative figures, and a constrained request is decoded plainly (said on
// stderr) with the same answer.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "base/subprocess.h"
#include "gateway/api_ready_line.h"
#include "http_test_client.h"
#include "local_swarm.h"
#include "support/files.h"
#include "support/shared_model.h"

namespace swarm::gateway {
namespace {

using test_http::Client;
using test_http::json;

// `swarm api` in-process on a free port, its stderr in a file.
class InProcessApi {
 public:
  explicit InProcessApi(const std::vector<std::string>& extra) {
    log_ = ::testing::TempDir() + "/spec-api-" + std::to_string(++count_) + ".log";
    Subprocess::Options options;
    options.argv = {SWARM_BINARY, "api",         "-m",        test_support::kSharedModel,
                    "--listen",   "127.0.0.1:0", "--backend", "reference"};
    options.argv.insert(options.argv.end(), extra.begin(), extra.end());
    options.stderr_path = log_;
    auto process = Subprocess::Start(options);
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) return;
    process_ = std::move(*process);
    auto line = process_->ReadLine(std::chrono::seconds(60));
    EXPECT_TRUE(line.ok()) << line.status() << test_support::ReadFile(log_);
    if (!line.ok()) return;
    auto ready = ApiReadyLine::Parse(*line);
    EXPECT_TRUE(ready.ok()) << *line;
    if (ready.ok()) port_ = ready->port;
  }
  ~InProcessApi() {
    if (process_ != nullptr) {
      (void)process_->Signal(SIGTERM);
      (void)process_->Wait(std::chrono::seconds(30));
    }
    std::remove(log_.c_str());
  }
  uint16_t port() const { return port_; }
  std::string log() const { return test_support::ReadFile(log_); }

 private:
  static inline int count_ = 0;
  std::string log_;
  std::unique_ptr<Subprocess> process_;
  uint16_t port_ = 0;
};

json Completion(uint16_t port, const json& extra = json::object()) {
  // A story that repeats its phrases, as lookup needs.
  json body = {{"prompt",
                "Once upon a time, there was a little girl named Lily. She loved to play outside "
                "in the park. One day, Lily saw a big ball in the park."},
               {"max_tokens", 150},
               {"temperature", 0}};
  body.update(extra);
  Client client(port);
  auto response = client.Post("/v1/completions", body);
  EXPECT_EQ(response.result_int(), 200) << response.body();
  return json::parse(response.body(), nullptr, false);
}

std::string TextOf(const json& answer) {
  return answer.is_object() ? answer["choices"][0]["text"].get<std::string>() : "";
}

double MetricValue(const std::string& metrics, const std::string& name) {
  std::istringstream lines(metrics);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

TEST(GatewaySpeculativeTest, InProcessLookupAnswersAsThePlainGateway) {
  InProcessApi plain({});
  InProcessApi speculative({"--draft", "lookup"});
  ASSERT_NE(plain.port(), 0);
  ASSERT_NE(speculative.port(), 0);
  const std::string expected = TextOf(Completion(plain.port()));
  ASSERT_GT(expected.size(), 50u);
  EXPECT_EQ(TextOf(Completion(speculative.port())), expected);
  // logprobs are the target's own at every position: speculative decoding serves them exactly.
  const json with_logprobs = Completion(speculative.port(), {{"logprobs", 2}});
  EXPECT_EQ(TextOf(with_logprobs), expected);
  EXPECT_EQ(with_logprobs["choices"][0]["logprobs"]["tokens"].size(),
            Completion(plain.port(), {{"logprobs", 2}})["choices"][0]["logprobs"]["tokens"].size());

  Client client(speculative.port());
  const std::string metrics = client.Get("/metrics").body();
  const double drafted = MetricValue(metrics, "swarm_speculative_drafted_tokens_total");
  const double accepted = MetricValue(metrics, "swarm_speculative_accepted_tokens_total");
  EXPECT_GT(drafted, 0) << metrics;
  EXPECT_GT(accepted, 0);
  EXPECT_LE(accepted, drafted);
  EXPECT_GT(MetricValue(metrics, "swarm_speculative_traversals_total"), 0);
  EXPECT_EQ(MetricValue(metrics, "swarm_speculative_chunks_in_flight"), 0);  // all done
  const json swarm = json::parse(client.Get("/api/swarm").body(), nullptr, false);
  EXPECT_EQ(swarm["speculative"]["drafted"].get<double>(), drafted);

  // A plain gateway drafts nothing.
  Client plain_client(plain.port());
  EXPECT_EQ(
      MetricValue(plain_client.Get("/metrics").body(), "swarm_speculative_drafted_tokens_total"),
      0);
}

TEST(GatewaySpeculativeTest, ConstrainedRequestsAreDecodedPlainlyAndSaySo) {
  InProcessApi plain({});
  InProcessApi speculative({"--draft", "lookup"});
  ASSERT_NE(speculative.port(), 0);
  const json body = {{"messages", {{{"role", "user"}, {"content", "Say something"}}}},
                     {"max_tokens", 30},
                     {"temperature", 0},
                     {"response_format", {{"type", "json_object"}}}};
  Client a(plain.port()), b(speculative.port());
  const auto expected = a.Post("/v1/chat/completions", body);
  const auto got = b.Post("/v1/chat/completions", body);
  ASSERT_EQ(expected.result_int(), 200) << expected.body();
  ASSERT_EQ(got.result_int(), 200) << got.body();
  EXPECT_EQ(json::parse(got.body())["choices"][0]["message"]["content"],
            json::parse(expected.body())["choices"][0]["message"]["content"]);
  EXPECT_TRUE(absl::StrContains(speculative.log(),
                                "decoded plainly (speculative decoding is "
                                "not exact with constrained decoding)"))
      << speculative.log();
}

TEST(GatewaySpeculativeTest, SwarmGatewayAnswersAsThePlainOne) {
  swarm_test::LocalSwarm plain, speculative;
  ASSERT_TRUE(plain.Start().ok());
  swarm_test::LocalSwarmOptions options;
  options.api_args = {"--draft", "lookup"};
  ASSERT_TRUE(speculative.Start(options).ok());
  const std::string expected = TextOf(Completion(plain.api_port()));
  ASSERT_GT(expected.size(), 50u);
  EXPECT_EQ(TextOf(Completion(speculative.api_port())), expected) << speculative.Logs();
  // The chain rolls back: the request was verified through the peers, not decoded plainly.
  EXPECT_EQ(speculative.Logs().find("decoded plainly"), std::string::npos) << speculative.Logs();
  Client client(speculative.api_port());
  const std::string metrics = client.Get("/metrics").body();
  EXPECT_GT(MetricValue(metrics, "swarm_speculative_drafted_tokens_total"), 0) << metrics;
  EXPECT_GT(MetricValue(metrics, "swarm_speculative_traversals_total"), 0);
}

}  // namespace
}  // namespace swarm::gateway
