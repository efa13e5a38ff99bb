// `swarm chat`: an interactive chat in the terminal. Each question is rendered with the model's
// chat template together with the conversation so far and answered, streamed, by the same token
// loop as `swarm generate` (in-process or through peers). The conversation is re-run from its start
// for each answer (a fresh session, no KV cache kept between answers); turns that no longer fit the
// context are dropped, oldest first, with a notice.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "cli/cache_type_flags.h"
#include "cli/chain_client.h"
#include "cli/commands.h"
#include "cli/sampling_flags.h"
#include "cli/terminal_input.h"
#include "gateway/chat_template.h"
#include "gateway/text_stream.h"
#include "model/generator.h"
#include "shard/local_model.h"

namespace swarm::cli {
namespace {

struct ChatFlags {
  std::string model_path;
  int64_t n_predict = 256;  // most tokens of one answer
  int64_t context = 0;      // 0: the model's training context
  model::SamplingParams sampling;
  kernels::BackendOptions backend;
  bool ignore_eos = false;
  std::string chat_template;  // overrides the GGUF's
  std::string system;         // the first system prompt
  ChainFlags chain;
  CacheTypeFlags cache_types;
};

void Print(std::string_view text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

class Chat {
 public:
  Chat(const ChatFlags& flags, shard::LocalModel& m, gateway::ChatFormatter formatter,
       int64_t context, TerminalInput& input,
       const std::optional<transport::SwarmSecret>& swarm_secret)
      : flags_(flags),
        m_(m),
        formatter_(std::move(formatter)),
        context_(context),
        input_(input),
        swarm_secret_(swarm_secret),
        sampler_(flags.sampling),
        system_(flags.system) {}

  // Until /quit, end of input, or Ctrl-C twice at the prompt. Returns the exit code.
  int Run() {
    bool interrupted_at_prompt = false;
    for (;;) {
      Print("> ");
      std::string line;
      const TerminalInput::Event event = input_.ReadLine(line);
      if (event == TerminalInput::Event::kEnd) {
        Print("\n");
        return 0;
      }
      if (event == TerminalInput::Event::kInterrupt) {
        if (interrupted_at_prompt) {
          Print("\n");
          return 0;
        }
        interrupted_at_prompt = true;
        Print("\n[Ctrl-C again, Ctrl-D or /quit to leave]\n");
        continue;
      }
      interrupted_at_prompt = false;
      if (!Command(line)) return 0;
    }
  }

 private:
  // Handles one line; false to leave.
  bool Command(const std::string& line) {
    if (line == "/quit" || line == "/exit") return false;
    if (line == "/reset") {
      history_.clear();
      Print("[conversation cleared]\n");
      return true;
    }
    if (line == "/system" || absl::StartsWith(line, "/system ")) {
      system_ = std::string(absl::StripAsciiWhitespace(absl::StripPrefix(line, "/system")));
      history_.clear();
      Print(system_.empty() ? "[system prompt removed, conversation cleared]\n"
                            : "[system prompt set, conversation cleared]\n");
      return true;
    }
    if (absl::StartsWith(line, "/")) {
      Print(absl::StrCat("[unknown command ", line, ": /reset, /system TEXT, /quit]\n"));
      return true;
    }
    if (absl::StripAsciiWhitespace(line).empty()) return true;
    Answer(line);
    return true;
  }

  std::vector<gateway::ChatMessage> Messages() const {
    std::vector<gateway::ChatMessage> messages;
    if (!system_.empty()) messages.push_back({"system", system_});
    messages.insert(messages.end(), history_.begin(), history_.end());
    return messages;
  }

  // The prompt for the conversation with `question` last, oldest turns dropped until it and the
  // longest answer fit the context; nullopt (after saying why) when the question alone does not.
  std::optional<std::vector<int32_t>> Prompt() {
    size_t dropped = 0;
    for (;;) {
      absl::StatusOr<std::vector<int32_t>> tokens = formatter_.Tokenize(Messages());
      if (!tokens.ok()) {
        Print(absl::StrCat("error: ", tokens.status().message(), "\n"));
        return std::nullopt;
      }
      if (static_cast<int64_t>(tokens->size()) + flags_.n_predict <= context_) {
        if (dropped > 0) {
          Print(absl::StrCat("[dropped the oldest ", dropped, dropped == 1 ? " turn" : " turns",
                             " to fit the context of ", context_, " tokens]\n"));
        }
        return std::move(*tokens);
      }
      if (history_.size() <= 1) {
        Print(absl::StrCat("error: the prompt (", tokens->size(), " tokens) and an answer (-n ",
                           flags_.n_predict, ") do not fit the context of ", context_,
                           " tokens\n"));
        return std::nullopt;
      }
      // A turn is the user's message and the answer to it.
      history_.erase(history_.begin(), history_.begin() + std::min<size_t>(2, history_.size() - 1));
      ++dropped;
    }
  }

  void Answer(const std::string& question) {
    history_.push_back({"user", question});
    std::optional<std::vector<int32_t>> prompt = Prompt();
    if (!prompt) {
      history_.pop_back();
      return;
    }
    auto opened = OpenBlocks(zmq_context_, flags_.chain, m_, context_, swarm_secret_, client_);
    if (!opened.ok()) {
      Print(absl::StrCat("error: ", opened.status().message(), "\n"));
      history_.pop_back();
      return;
    }
    input_.TakeInterrupt();  // a Ctrl-C typed before the question is not meant for its answer
    const bool at_start = prompt->size() == 1 && (*prompt)[0] == m_.tokenizer->bos_id();
    gateway::TextStream stream(*m_.tokenizer, formatter_.stop_strings(), at_start,
                               /*trim_leading_space=*/true);
    std::string answer;
    bool interrupted = false;
    model::GenerateOptions options;
    options.max_new_tokens = flags_.n_predict;
    options.stop_at_end_of_generation = !flags_.ignore_eos;
    auto stats = model::Generate(*prompt, options, *m_.head, *opened->pipeline, sampler_,
                                 *m_.tokenizer, [&](int32_t token) {
                                   if (input_.TakeInterrupt()) {
                                     interrupted = true;
                                     return false;
                                   }
                                   const std::string text = stream.Push(token);
                                   Print(text);
                                   answer += text;
                                   return !stream.stopped();
                                 });
    if (!interrupted) {
      const std::string tail = stream.Finish();
      Print(tail);
      answer += tail;
    }
    Print(interrupted ? "\n[stopped]\n" : "\n");
    if (!stats.ok()) {
      Print(absl::StrCat("error: ", stats.status().message(), "\n"));
      history_.pop_back();
      return;
    }
    // Trailing spaces and newlines are not part of the turn (the template adds its own).
    history_.push_back({"assistant", std::string(absl::StripTrailingAsciiWhitespace(answer))});
  }

  const ChatFlags& flags_;
  shard::LocalModel& m_;
  const gateway::ChatFormatter formatter_;
  const int64_t context_;
  TerminalInput& input_;
  const std::optional<transport::SwarmSecret>& swarm_secret_;
  model::Sampler sampler_;  // one for the whole chat: a seed gives one reproducible conversation
  std::string system_;
  std::vector<gateway::ChatMessage> history_;  // user and assistant messages, alternating
  zmq::context_t zmq_context_{1};
  SwarmClient client_;  // the DHT node and router, kept from one answer to the next
};

int RunChat(const ChatFlags& flags) {
  if (auto status = flags.sampling.Validate(); !status.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    return 2;
  }
  // Before any thread starts: they all inherit SIGINT blocked, so Ctrl-C reaches only the prompt.
  auto input = TerminalInput::Create();
  if (!input.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(input.status().message()).c_str());
    return 1;
  }
  auto swarm_secret = LoadChainSecret(flags.chain);
  if (!swarm_secret.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(swarm_secret.status().message()).c_str());
    return flags.chain.in_process() ? 2 : 1;  // 2: a secret without peers; 1: an unusable file
  }
  auto local = shard::LocalModel::Load(flags.model_path, flags.backend, flags.chain.in_process(),
                                       flags.cache_types.Types());
  if (!local.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(local.status().message()).c_str());
    return 1;
  }
  shard::LocalModel& m = **local;
  const int64_t context = flags.context > 0 ? flags.context : m.config.n_ctx_train;
  if (context <= 1 || flags.n_predict >= context) {
    std::fprintf(stderr, "error: -n %lld leaves no room for a question in the context of %lld\n",
                 static_cast<long long>(flags.n_predict), static_cast<long long>(context));
    return 2;
  }
  std::string jinja;
  if (auto t = m.file->GetString("tokenizer.chat_template"); t.ok()) jinja = std::string(*t);
  auto kind = gateway::ResolveChatTemplate(flags.chat_template, jinja);
  if (!kind.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(kind.status().message()).c_str());
    return 2;
  }
  const char* why = !flags.chat_template.empty() ? "--chat-template"
                    : jinja.empty()              ? "the model has no tokenizer.chat_template"
                    : gateway::DetectChatTemplate(jinja)
                        ? "the model's tokenizer.chat_template"
                        : "the model's tokenizer.chat_template is not one this build knows";
  std::fprintf(stderr,
               "chat: template %s (%s), context %lld tokens, answers up to %lld tokens, %s\n"
               "commands: /reset, /system TEXT, /quit; Ctrl-C stops an answer\n",
               std::string(gateway::ChatTemplateName(*kind)).c_str(), why,
               static_cast<long long>(context), static_cast<long long>(flags.n_predict),
               flags.chain.in_process() ? "in-process" : "through the swarm");
  Chat chat(flags, m, gateway::ChatFormatter(*kind, *m.tokenizer), context, **input, *swarm_secret);
  return chat.Run();
}

}  // namespace

void AddChatCommand(CLI::App& app, ExitCode& exit_code) {
  auto flags = std::make_shared<ChatFlags>();
  CLI::App* cmd = app.add_subcommand(
      "chat", "Chat with a model in the terminal (its chat template, streamed answers)");
  cmd->footer(
      "In the chat: /reset clears the conversation, /system TEXT sets the system prompt (and "
      "clears it), /quit leaves (so do Ctrl-D and Ctrl-C twice at the prompt); Ctrl-C stops an "
      "answer.\n"
      "Examples:\n"
      "  swarm chat -m model.gguf\n"
      "  swarm chat -m model.gguf --initial-peers 10.0.0.5:31337 --temp 0.7");
  cmd->add_option("-m,--model", flags->model_path, "Model GGUF file")->required();
  cmd->add_option("-n,--n-predict", flags->n_predict, "Most tokens of one answer")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("-c,--ctx-size", flags->context,
                  "Context length for the conversation (0 = the model's training context)");
  cmd->add_flag("--ignore-eos", flags->ignore_eos, "Keep answering past end-of-text tokens");
  cmd->add_option("--chat-template", flags->chat_template,
                  "llama2, llama3, chatml, mistral, zephyr or plain (default: from the model, "
                  "else plain)");
  cmd->add_option("--system", flags->system, "System prompt to start with");
  cmd->add_option("--backend,--device", flags->backend.name,
                  "Backend, alias --device: auto (GPU 0 if usable, else cpu), cpu, cpu:generic, "
                  "cpu:avx2, cpu:avx512, reference, cuda (= cuda:0), cuda:N")
      ->capture_default_str();
  cmd->add_option("-t,--threads", flags->backend.threads, "CPU threads (0 = physical cores)");
  AddChainFlags(*cmd, flags->chain);
  AddSamplingFlags(*cmd, flags->sampling);
  AddCacheTypeFlags(*cmd, flags->cache_types);
  cmd->callback([flags, &exit_code] { exit_code.value = RunChat(*flags); });
}

}  // namespace swarm::cli
