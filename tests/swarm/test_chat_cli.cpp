// `swarm chat` as a person uses it: the real binary in a terminal (a detached tmux session), keys
// sent with send-keys and the screen read back with capture-pane. The streamed answers must equal
// `swarm generate`'s output for the prompt the chat template renders, in-process and through a
// real two-peer swarm.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/subprocess.h"
#include "peer/local_swarm.h"
#include "support/shared_model.h"

namespace swarm {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string& kModel = test_support::kSharedModel;

// Runs `argv` to completion: exit code and stdout (stderr to a file, returned on request).
struct Run {
  int code = -1;
  std::string out;
};
Run RunTool(std::vector<std::string> argv) {
  Subprocess::Options options;
  options.argv = std::move(argv);
  options.stderr_path = "/dev/null";
  Run run;
  auto process = Subprocess::Start(options);
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return run;
  auto out = (*process)->ReadAll(seconds(120));
  run.out = out.ok() ? *out : "";
  auto code = (*process)->Wait(seconds(30));
  run.code = code.ok() ? *code : -1;
  return run;
}

std::string FindTmux() {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "/usr/bin:/bin", ':')) {
    const std::string candidate = absl::StrCat(dir, "/tmux");
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::string ShellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Lines without trailing spaces (the terminal pads and trims them unpredictably).
std::string TrimLines(const std::string& text) {
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    lines.emplace_back(absl::StripTrailingAsciiWhitespace(line));
  }
  return absl::StrJoin(lines, "\n");
}

// One tmux server of its own (-L) with one session running `swarm chat`.
class ChatTerminal {
 public:
  explicit ChatTerminal(const std::vector<std::string>& chat_args) : tmux_(FindTmux()) {
    static std::atomic<int> n{0};
    socket_ = absl::StrCat("swarm-chat-test-", ::getpid(), "-", ++n);
    if (tmux_.empty()) {
      ADD_FAILURE() << "tmux is not installed (scripts/setup.sh installs it)";
      return;
    }
    std::vector<std::string> command = {SWARM_BINARY, "chat", "-m", kModel};
    command.insert(command.end(), chat_args.begin(), chat_args.end());
    std::vector<std::string> quoted;
    for (const std::string& a : command) quoted.push_back(ShellQuote(a));
    // exec: the chat itself runs in the pane (a shell around it would die of the Ctrl-C).
    // remain-on-exit keeps the pane (and its exit status) after the chat ends.
    const Run started = Tmux({"new-session", "-d", "-s", "chat", "-x", "200", "-y", "50",
                              "exec " + absl::StrJoin(quoted, " "), ";", "set-option", "-t", "chat",
                              "remain-on-exit", "on"});
    EXPECT_EQ(started.code, 0) << "tmux new-session failed";
  }
  ~ChatTerminal() {
    if (!tmux_.empty()) Tmux({"kill-server"});
  }

  Run Tmux(std::vector<std::string> args) {
    args.insert(args.begin(), {tmux_, "-L", socket_, "-f", "/dev/null"});
    return RunTool(std::move(args));
  }
  // Everything the chat printed, from the start; the prompt "> " shows as ">" at the end.
  std::string Screen() {
    const Run r = Tmux({"capture-pane", "-p", "-J", "-S", "-", "-t", "chat"});
    return std::string(absl::StripTrailingAsciiWhitespace(TrimLines(r.out)));
  }
  void Type(const std::string& text) {
    Tmux({"send-keys", "-t", "chat", "-l", text});
    Tmux({"send-keys", "-t", "chat", "Enter"});
  }
  void CtrlC() { Tmux({"send-keys", "-t", "chat", "C-c"}); }

  // Polls the screen until `done` holds (60 s at most); the last screen either way.
  template <typename Pred>
  std::string WaitFor(Pred done, const char* what) {
    const auto deadline = std::chrono::steady_clock::now() + seconds(60);
    std::string screen;
    for (;;) {
      screen = Screen();
      if (done(screen)) return screen;
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "timed out waiting for " << what << "; the screen:\n" << screen;
        return screen;
      }
      std::this_thread::sleep_for(milliseconds(20));  // polling interval, not a wait for an event
    }
  }
  // Waits until the screen shows `text` after `from` characters.
  size_t WaitForText(const std::string& text, size_t from = 0) {
    std::string screen = WaitFor(
        [&](const std::string& s) {
          return s.size() >= from && s.find(text, from) != std::string::npos;
        },
        text.c_str());
    const size_t at = screen.find(text, from);
    return at == std::string::npos ? std::string::npos : at + text.size();
  }

  // The pane's exit status once the chat has ended (nullopt while it runs).
  std::optional<int> ExitStatus() {
    const Run r = Tmux({"display-message", "-p", "-t", "chat", "#{pane_dead} #{pane_dead_status}"});
    if (r.out.rfind("1 ", 0) != 0) return std::nullopt;
    return std::atoi(r.out.c_str() + 2);
  }
  int WaitForExit() {
    const auto deadline = std::chrono::steady_clock::now() + seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      if (std::optional<int> status = ExitStatus()) return *status;
      std::this_thread::sleep_for(milliseconds(20));
    }
    ADD_FAILURE() << "the chat did not exit; the screen:\n" << Screen();
    return -1;
  }

 private:
  std::string tmux_;
  std::string socket_;
};

const std::vector<std::string> kGreedy = {"--temp", "0", "-n", "24", "--backend", "reference"};

// `swarm generate`'s continuation of `prompt` as the chat shows it: the reply's leading spaces
// trimmed, cut at the plain template's stop string.
std::string Expected(const std::string& prompt) {
  std::vector<std::string> argv = {SWARM_BINARY, "generate", "-m", kModel, "-p", prompt};
  argv.insert(argv.end(), kGreedy.begin(), kGreedy.end());
  Run r = RunTool(argv);
  EXPECT_EQ(r.code, 0);
  std::string text(absl::StripLeadingAsciiWhitespace(r.out));
  if (size_t stop = text.find("\nUser:"); stop != std::string::npos) text.resize(stop);
  text = TrimLines(std::string(absl::StripTrailingAsciiWhitespace(text)));
  EXPECT_FALSE(text.empty());
  return text;
}

// Sends `question` and returns the answer shown between the question's line and the next prompt.
std::string Ask(ChatTerminal& chat, const std::string& question) {
  const size_t before = chat.Screen().size();
  chat.Type(question);
  const size_t start =
      chat.WaitForText(absl::StrCat("> ", question, "\n"), before > 2 ? before - 2 : 0);
  if (start == std::string::npos) return "";
  std::string screen = chat.WaitFor(
      [&](const std::string& s) {
        return s.size() > start && s.find("\n>", start) != std::string::npos;
      },
      "the next prompt");
  const size_t end = screen.find("\n>", start);
  return end == std::string::npos ? "" : screen.substr(start, end - start);
}

TEST(ChatCliTest, AnswersEqualGenerateAndCommandsWork) {
  ChatTerminal chat(kGreedy);
  chat.WaitForText("\n>");
  EXPECT_NE(chat.Screen().find("template plain (the model has no tokenizer.chat_template)"),
            std::string::npos)
      << chat.Screen();

  const std::string first = Expected("User: Hello there\nAssistant:");
  const std::string answer1 = Ask(chat, "Hello there");
  EXPECT_EQ(answer1, first);

  // The second answer sees the first turn.
  EXPECT_EQ(Ask(chat, "What happened next?"),
            Expected(absl::StrCat("User: Hello there\nAssistant: ", answer1,
                                  "\nUser: What happened next?\nAssistant:")));

  chat.Type("/system You tell short stories.");
  chat.WaitForText("[system prompt set, conversation cleared]");
  const std::string with_system =
      Expected("You tell short stories.\n\nUser: Hello there\nAssistant:");
  EXPECT_NE(with_system, first) << "the system prompt must change the answer for this check";
  EXPECT_EQ(Ask(chat, "Hello there"), with_system);

  // After /reset the conversation starts again (the system prompt stays).
  chat.Type("/reset");
  chat.WaitForText("[conversation cleared]");
  EXPECT_EQ(Ask(chat, "Hello there"), with_system);

  chat.Type("/quit");
  EXPECT_EQ(chat.WaitForExit(), 0);
}

TEST(ChatCliTest, CtrlCStopsAnAnswerAndTwiceAtThePromptLeaves) {
  // A long answer to interrupt: up to 2000 tokens (the model's whole context), no stop at the end
  // of text, the slowest backend.
  ChatTerminal chat(
      {"--temp", "0", "-n", "2000", "-c", "2048", "--ignore-eos", "--backend", "reference"});
  chat.WaitForText("\n>");
  const size_t before = chat.Screen().size();
  chat.Type("Tell me a story");
  const size_t start = chat.WaitForText("> Tell me a story\n", before - 2);
  // Interrupt once the answer is streaming.
  chat.WaitFor([&](const std::string& s) { return s.size() > start + 8; }, "the answer to start");
  chat.CtrlC();
  const size_t stopped = chat.WaitForText("[stopped]\n>", start);
  ASSERT_NE(stopped, std::string::npos);
  EXPECT_FALSE(chat.ExitStatus().has_value()) << "Ctrl-C during an answer must not end the chat";

  // Still at a prompt that takes commands.
  chat.Type("/reset");
  chat.WaitForText("[conversation cleared]", stopped);

  // Ctrl-C at the prompt warns; a second one leaves.
  chat.CtrlC();
  chat.WaitForText("[Ctrl-C again, Ctrl-D or /quit to leave]", stopped);
  EXPECT_FALSE(chat.ExitStatus().has_value());
  chat.CtrlC();
  EXPECT_EQ(chat.WaitForExit(), 0);
}

TEST(ChatCliTest, OldestTurnsAreDroppedToFitTheContext) {
  // 24-token answers in a 96-token context: the third question no longer fits with two turns.
  std::vector<std::string> args = kGreedy;
  args.insert(args.end(), {"-c", "96"});
  ChatTerminal chat(args);
  chat.WaitForText("\n>");
  Ask(chat, "Hello there");
  Ask(chat, "What happened next?");
  Ask(chat, "Hello there");
  EXPECT_NE(chat.Screen().find("[dropped the oldest"), std::string::npos) << chat.Screen();
  chat.Type("/quit");
  EXPECT_EQ(chat.WaitForExit(), 0);
}

TEST(ChatCliTest, ThroughATwoPeerSwarmAnswersEqualInProcessGenerate) {
  peer::LocalSwarm swarm(
      {.binary = SWARM_BINARY,
       .serve_args = {"-m", kModel, "--listen", "tcp://127.0.0.1:0", "--dht-bind", "127.0.0.1",
                      "--backend", "reference", "--announce-interval", "0.2", "--record-ttl", "5"},
       .log_dir = ::testing::TempDir(),
       .log_name = "chat-peer",
       .ready_timeout = std::chrono::seconds(120)});
  auto head = swarm.Start({"--blocks", "0:3"});
  ASSERT_TRUE(head.ok()) << head.status();
  const std::string bootstrap = swarm.DhtNode(**head);
  auto tail = swarm.Start({"--blocks", "3:5", "--initial-peers", bootstrap});
  ASSERT_TRUE(tail.ok()) << tail.status();

  std::vector<std::string> args = kGreedy;
  args.insert(args.end(), {"--initial-peers", bootstrap, "--dht-bind", "127.0.0.1"});
  ChatTerminal chat(args);
  chat.WaitForText("\n>");
  EXPECT_NE(chat.Screen().find("through the swarm"), std::string::npos) << chat.Screen();
  const std::string answer1 = Ask(chat, "Hello there");
  EXPECT_EQ(answer1, Expected("User: Hello there\nAssistant:"));
  EXPECT_EQ(Ask(chat, "What happened next?"),
            Expected(absl::StrCat("User: Hello there\nAssistant: ", answer1,
                                  "\nUser: What happened next?\nAssistant:")));
  chat.Type("/quit");
  EXPECT_EQ(chat.WaitForExit(), 0);
}

}  // namespace
}  // namespace swarm
