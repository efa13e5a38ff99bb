// `swarm generate --draft ...` as a user runs it: greedy stdout identical to the reference with the
// lookup drafter, the model as its own draft and a synthetic draft sharing the vocabulary; the one
// `speculative:` line on stderr; clear errors for bad flags and a draft of another vocabulary.
#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "cli_test_util.h"
#include "support/shared_model.h"

namespace swarm {
namespace {

using cli_test::kModel;
using cli_test::ReadFile;
using cli_test::Result;
using cli_test::RunSwarm;

struct Summary {
  int lines = 0;
  long drafted = -1, accepted = -1;
  double per_traversal = 0;
  int in_flight = 0;
};

// The `speculative:` lines of stderr (exactly one is expected) and the figures of the last.
Summary ParseSummary(const std::string& stderr_text) {
  static const std::regex kLine(
      R"(speculative: drafted (\d+), accepted (\d+) \((\d+)%\), (\d+\.\d\d) tokens per )"
      R"(traversal, up to (\d+) chunks in flight)");
  Summary s;
  for (std::sregex_iterator it(stderr_text.begin(), stderr_text.end(), kLine), end; it != end;
       ++it) {
    ++s.lines;
    s.drafted = std::stol((*it)[1]);
    s.accepted = std::stol((*it)[2]);
    s.per_traversal = std::stod((*it)[4]);
    s.in_flight = std::stoi((*it)[5]);
  }
  return s;
}

std::vector<std::string> Greedy200(std::vector<std::string> extra) {
  std::vector<std::string> args = {"generate", "-m", kModel, "-p", "", "-n", "200", "--temp", "0"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

TEST(SpeculativeCliTest, LookupGivesTheReferenceText) {
  const Result r = RunSwarm(Greedy200({"--draft", "lookup"}));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_EQ(r.stdout_text, ReadFile(test_support::kSharedReferenceText));
  const Summary s = ParseSummary(r.stderr_text);
  EXPECT_EQ(s.lines, 1) << r.stderr_text;
  EXPECT_GT(s.drafted, 0);
  EXPECT_GT(s.accepted, 0);
  EXPECT_GT(s.per_traversal, 1.0);
  EXPECT_NE(r.stderr_text.find("generation: "), std::string::npos);  // the usual timing line
}

TEST(SpeculativeCliTest, SelfDraftAcceptsEverything) {
  const Result r = RunSwarm(Greedy200({"--draft-model", kModel}));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_EQ(r.stdout_text, ReadFile(test_support::kSharedReferenceText));
  const Summary s = ParseSummary(r.stderr_text);
  EXPECT_EQ(s.lines, 1) << r.stderr_text;
  EXPECT_GT(s.drafted, 100);
  EXPECT_EQ(s.accepted, s.drafted);
  // With --draft-max 3 every traversal verifies 3 drafts and adds the target's own token.
  const Result fixed = RunSwarm(Greedy200({"--draft-model", kModel, "--draft-max", "3"}));
  ASSERT_EQ(fixed.exit_code, 0) << fixed.stderr_text;
  EXPECT_EQ(fixed.stdout_text, r.stdout_text);
  EXPECT_NEAR(ParseSummary(fixed.stderr_text).per_traversal, 4.0, 0.05);
}

TEST(SpeculativeCliTest, SyntheticDraftOfTheSameVocabularyIsExact) {
  const std::string draft = ::testing::TempDir() + "/spec-draft-same-vocab.gguf";
  const Result made = RunSwarm({"make-model", "--preset", "stories260k-shape", "--vocab", kModel,
                                "--type", "q8_0", "--seed", "5", "-o", draft});
  ASSERT_EQ(made.exit_code, 0) << made.stderr_text;
  const Result r = RunSwarm(Greedy200({"--draft-model", draft}));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_EQ(r.stdout_text, ReadFile(test_support::kSharedReferenceText));
  const Summary s = ParseSummary(r.stderr_text);
  EXPECT_EQ(s.lines, 1);
  EXPECT_LT(s.accepted, s.drafted);  // random weights: many rejections, same text
  std::remove(draft.c_str());
}

TEST(SpeculativeCliTest, SamplingRunsAndIsReproducible) {
  std::vector<std::string> args = {"generate", "-m",  kModel,   "-p", "Once upon", "-n",    "60",
                                   "--temp",   "0.8", "--seed", "3",  "--draft",   "lookup"};
  const Result a = RunSwarm(args), b = RunSwarm(args);
  ASSERT_EQ(a.exit_code, 0) << a.stderr_text;
  EXPECT_EQ(a.stdout_text, b.stdout_text);
  EXPECT_EQ(ParseSummary(a.stderr_text).lines, 1);
}

TEST(SpeculativeCliTest, BadFlagsAndAnotherVocabularyAreClearErrors) {
  Result r = RunSwarm(Greedy200({"--draft", "nope"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.stderr_text.find("--draft must be lookup or none"), std::string::npos);
  r = RunSwarm(Greedy200({"--draft", "lookup", "--draft-model", kModel}));
  EXPECT_EQ(r.exit_code, 2);
  r = RunSwarm(Greedy200({"--draft", "lookup", "--draft-max", "-1"}));
  EXPECT_EQ(r.exit_code, 2);
  r = RunSwarm(Greedy200({"--draft-model", "/nonexistent.gguf"}));
  EXPECT_EQ(r.exit_code, 1);

  const std::string other = ::testing::TempDir() + "/spec-draft-other-vocab.gguf";
  const Result made = RunSwarm({"make-model", "--preset", "stories260k-shape", "--n-vocab", "300",
                                "--type", "f32", "-o", other});
  ASSERT_EQ(made.exit_code, 0) << made.stderr_text;
  r = RunSwarm(Greedy200({"--draft-model", other}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.stderr_text.find("must share the target's vocabulary"), std::string::npos)
      << r.stderr_text;
  EXPECT_TRUE(r.stdout_text.empty());
  std::remove(other.c_str());
}

}  // namespace
}  // namespace swarm
