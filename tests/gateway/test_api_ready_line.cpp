// gateway::ApiReadyLine: the line `swarm api` prints when it serves, written and read in one place.
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "gateway/api_ready_line.h"

namespace swarm::gateway {
namespace {

ApiReadyLine Example() {
  return ApiReadyLine{
      .host = "127.0.0.1", .port = 8080, .model_id = "stories260K", .chat_template = "plain"};
}

TEST(ApiReadyLine, FormatKeepsTheTextUsersKnow) {
  EXPECT_EQ(Example().Format(),
            "listening on http://127.0.0.1:8080 (model stories260K, chat template plain)");
  EXPECT_EQ(Example().Url(), "http://127.0.0.1:8080");
}

TEST(ApiReadyLine, RoundTrip) {
  for (const ApiReadyLine& line :
       {Example(),
        ApiReadyLine{.host = "::1", .port = 1, .model_id = "a b", .chat_template = "x"}}) {
    auto parsed = ApiReadyLine::Parse(line.Format());
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, line);
    parsed = ApiReadyLine::Parse(line.Format() + "\n");
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, line);
  }
}

TEST(ApiReadyLine, EntriesAddedLaterOrReorderedAreTolerated) {
  auto parsed = ApiReadyLine::Parse(
      "listening on http://127.0.0.1:8080 (chat template plain, peers 3, model stories260K)");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, Example());
}

TEST(ApiReadyLine, MalformedLinesAreRefusedWithTheReason) {
  const std::pair<std::string, std::string> cases[] = {
      {"", "does not start with"},
      {"listening on tcp://127.0.0.1:1 blocks 0:2 peer x dht 0", "does not start with"},
      {"listening on http://127.0.0.1:8080", "no \"(...)\""},
      {"listening on http://127.0.0.1:8080 (model m, chat template plain", "no \"(...)\""},
      {"listening on http://127.0.0.1 (model m, chat template plain)", "not HOST:PORT"},
      {"listening on http://127.0.0.1:0 (model m, chat template plain)", "not HOST:PORT"},
      {"listening on http://127.0.0.1:65536 (model m, chat template plain)", "not HOST:PORT"},
      {"listening on http://:80 (model m, chat template plain)", "not HOST:PORT"},
      {"listening on http://127.0.0.1:80 (chat template plain)", "no model"},
      {"listening on http://127.0.0.1:80 (model m)", "no chat template"},
      {"listening on http://127.0.0.1:80 (model , chat template plain)", "no model"},
  };
  for (const auto& [line, why] : cases) {
    auto parsed = ApiReadyLine::Parse(line);
    ASSERT_FALSE(parsed.ok()) << line;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << line;
    EXPECT_NE(parsed.status().message().find(why), std::string::npos)
        << line << ": " << parsed.status();
  }
}

}  // namespace
}  // namespace swarm::gateway
