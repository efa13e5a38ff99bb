#include "gateway/openai_api.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "gateway/json_constraint.h"
#include "gateway/openai_logprobs.h"
#include "gateway/text_stream.h"

namespace swarm::gateway {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

HttpHeaders SseHeaders() { return {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}}; }

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

ApiError ContextError(int32_t n_ctx, int64_t prompt, int64_t completion, bool chat) {
  if (completion < 0) {
    return {
        400,
        absl::StrCat("This model's maximum context length is ", n_ctx, " tokens. However, your ",
                     chat ? "messages" : "prompt", " resulted in ", prompt,
                     " tokens. Please reduce the length of the ", chat ? "messages." : "prompt."),
        "invalid_request_error", chat ? "messages" : "prompt", "context_length_exceeded"};
  }
  return {400,
          absl::StrCat("This model's maximum context length is ", n_ctx,
                       " tokens. However, you requested ", prompt + completion, " tokens (", prompt,
                       " in the ", chat ? "messages" : "prompt", ", ", completion,
                       " in the completion). Please reduce the length of the ",
                       chat ? "messages" : "prompt", " or completion."),
          "invalid_request_error", "max_tokens", "context_length_exceeded"};
}

// What a seed's output depends on besides the request: the model and its context length (the
// same seed and request on a server with the same fingerprint give the same text).
std::string Fingerprint(const ModelInfo& info) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (char c : absl::StrCat(info.id, "/", info.n_blocks, "/", info.n_ctx)) {
    h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  }
  char buf[24];
  std::snprintf(buf, sizeof(buf), "fp_%012llx", static_cast<unsigned long long>(h >> 16));
  return buf;
}

}  // namespace

ApiError EngineError(const absl::Status& status) {
  const std::string msg(status.message());
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return {400, msg, "invalid_request_error", "", ""};
    case absl::StatusCode::kResourceExhausted:
      return {503, absl::StrCat("The swarm is out of capacity: ", msg), "server_error", "",
              "overloaded"};
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return {503, absl::StrCat("The swarm cannot serve this request now: ", msg), "server_error",
              "", "unavailable"};
    default:
      return {500, absl::StrCat("Internal error: ", msg), "server_error", "", ""};
  }
}

HttpResponse ErrorResponse(const ApiError& error) {
  return HttpResponse{error.status, "application/json", ErrorBody(error), {}};
}

OpenAiApi::OpenAiApi(CompletionEngine& engine, ChatTemplateKind chat_template,
                     const OpenAiOptions& options, MetricsRegistry& metrics, RequestLog& log)
    : engine_(engine),
      formatter_(chat_template, engine.tokenizer()),
      options_(options),
      metrics_(metrics),
      log_(log),
      created_(static_cast<int64_t>(std::time(nullptr))),
      fingerprint_(Fingerprint(engine.info())),
      rng_(std::random_device{}()) {}

std::string OpenAiApi::NewId(const char* prefix) {
  uint64_t a, b;
  {
    absl::MutexLock lock(&rng_mu_);
    a = rng_();
    b = rng_();
  }
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%016llx%08llx", static_cast<unsigned long long>(a),
                static_cast<unsigned long long>(b & 0xffffffffu));
  return std::string(prefix) + buf;
}

uint64_t OpenAiApi::NewSeed() {
  absl::MutexLock lock(&rng_mu_);
  return rng_();
}

HttpResponse OpenAiApi::ListModels() const {
  const ModelInfo& info = engine_.info();
  json model = {{"id", info.id}, {"object", "model"}, {"created", created_}, {"owned_by", "swarm"}};
  json body = {{"object", "list"}, {"data", json::array({model})}};
  return {200, "application/json", Dump(body), {}};
}

HttpResponse OpenAiApi::GetModel(const std::string& id) const {
  const ModelInfo& info = engine_.info();
  if (id != info.id) {
    return ErrorResponse({404, absl::StrCat("The model '", id, "' does not exist"),
                          "invalid_request_error", "model", "model_not_found"});
  }
  json model = {{"id", info.id}, {"object", "model"}, {"created", created_}, {"owned_by", "swarm"}};
  return {200, "application/json", Dump(model), {}};
}

void OpenAiApi::Fail(ResponseWriter& writer, const std::string& endpoint, const ApiError& error) {
  metrics_.CountRequest(endpoint, error.status);
  writer.Send(ErrorResponse(error));
}

void OpenAiApi::Complete(const std::string& body, bool chat, const std::string& endpoint,
                         ResponseWriter& writer) {
  if (writer.client_gone()) {
    metrics_.CountRequest(endpoint, 499);  // gone while queued
    return;
  }
  const ModelInfo& info = engine_.info();
  const model::Tokenizer& tokenizer = engine_.tokenizer();

  RequestLimits limits;
  limits.n_vocab = tokenizer.n_vocab();
  limits.max_tokens_limit = options_.max_tokens_limit;
  CompletionParams params;
  if (auto error = ParseCompletionRequest(body, chat, limits, &params)) {
    Fail(writer, endpoint, *error);
    return;
  }

  // The prompt. Chat content never has its control-token text parsed (no injection); a raw
  // completion prompt may name special tokens, as in llama.cpp, since its author writes the whole
  // prompt anyway.
  std::vector<int32_t> prompt;
  std::string echo_text;
  if (chat) {
    absl::StatusOr<std::vector<int32_t>> ids = formatter_.Tokenize(params.messages);
    if (!ids.ok()) {
      Fail(writer, endpoint,
           {400, std::string(ids.status().message()), "invalid_request_error", "messages", ""});
      return;
    }
    prompt = std::move(*ids);
  } else if (params.prompt_text) {
    prompt = tokenizer.Encode(*params.prompt_text, tokenizer.add_bos(), /*parse_special=*/true);
    echo_text = *params.prompt_text;
  } else {
    prompt = params.prompt_tokens;
    if (params.echo) echo_text = tokenizer.Decode(prompt);
  }
  if (prompt.empty()) {
    Fail(writer, endpoint,
         {400, "The prompt is empty (and this model adds no BOS token).", "invalid_request_error",
          "prompt", ""});
    return;
  }
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  if (n_prompt >= info.n_ctx) {
    Fail(writer, endpoint, ContextError(info.n_ctx, n_prompt, -1, chat));
    return;
  }
  const int64_t room = info.n_ctx - n_prompt;
  int32_t max_tokens;
  if (params.max_tokens) {
    if (*params.max_tokens > room) {
      Fail(writer, endpoint, ContextError(info.n_ctx, n_prompt, *params.max_tokens, chat));
      return;
    }
    max_tokens = *params.max_tokens;
  } else {
    // OpenAI's defaults: 16 for completions, the rest of the context for chat.
    max_tokens =
        static_cast<int32_t>(std::min<int64_t>(chat ? options_.max_tokens_limit : 16, room));
  }
  if (!params.seed_given) params.sampling.seed = NewSeed();

  std::vector<std::string> stops = params.stop;
  if (chat) {
    for (const std::string& s : formatter_.stop_strings()) stops.push_back(s);
  }
  // One state per choice. Text right after BOS (or another special token) drops SPM's leading
  // space, as Decode() does.
  struct Choice {
    std::unique_ptr<TextStream> text;
    std::unique_ptr<JsonConstraint> constraint;
    std::string full_text;
    std::string finish_reason;
    int64_t n_completion = 0;
    std::unique_ptr<LogprobCollector> logprobs;  // this choice's, prompt's included
  };
  const int32_t n_choices = params.n;
  std::vector<Choice> choices(static_cast<size_t>(n_choices));
  std::vector<model::TokenConstraint*> constraints;
  // Log-probabilities, when asked for: text offsets count from the start of the prompt's text.
  const bool with_logprobs = params.logprobs >= 0;
  int64_t prompt_text_size = 0;
  if (with_logprobs && !chat && !params.echo) {
    prompt_text_size = static_cast<int64_t>(params.prompt_text ? params.prompt_text->size()
                                                               : tokenizer.Decode(prompt).size());
  }
  for (Choice& c : choices) {
    c.logprobs = std::make_unique<LogprobCollector>(tokenizer, chat, prompt_text_size);
    c.text = std::make_unique<TextStream>(tokenizer, stops,
                                          /*at_start=*/tokenizer.IsSpecial(prompt.back()),
                                          /*trim_leading_space=*/chat);
    if (params.echo) c.full_text = echo_text;
    if (params.json_grammar) {
      c.constraint = std::make_unique<JsonConstraint>(params.json_grammar, tokenizer, max_tokens);
      constraints.push_back(c.constraint.get());
    }
  }

  ResponseMeta meta;
  meta.id = NewId(chat ? "chatcmpl-" : "cmpl-");
  meta.created = static_cast<int64_t>(std::time(nullptr));
  meta.model = info.id;

  std::shared_ptr<RequestLog::Record> record = log_.Begin(meta.id, endpoint, n_prompt);
  metrics_.Set("swarm_active_generations", {}, log_.running());

  // State of the response as the callback builds it.
  bool started = false;  // stream headers (and the chat role chunks) sent
  bool gone = false;     // the client is gone or a write failed
  int64_t n_completion = 0;
  const Clock::time_point t0 = Clock::now();
  Clock::time_point last = t0;

  // A response object of choice `index`: the single-choice builders' output, renumbered.
  auto for_choice = [&](json chunk, int32_t index) {
    for (json& choice : chunk["choices"]) choice["index"] = index;
    chunk["system_fingerprint"] = fingerprint_;
    return chunk;
  };
  // A stream chunk of choice `index`, with its choices[].logprobs when asked for.
  auto chunk_for_choice = [&](json chunk, int32_t index) {
    if (with_logprobs) chunk["choices"][0]["logprobs"] = choices[index].logprobs->TakeChunk();
    return for_choice(std::move(chunk), index);
  };
  auto begin_stream = [&]() -> bool {
    if (started) return true;
    started = true;
    if (!writer.BeginStream(200, "text/event-stream", SseHeaders())) return false;
    for (int32_t i = 0; i < n_choices; ++i) {
      if (chat) {
        if (!writer.Write(SseEvent(for_choice(ChatChunkJson(meta, true, std::string(), ""), i)))) {
          return false;
        }
      } else if (params.echo && (!echo_text.empty() || with_logprobs)) {
        if (!writer.Write(
                SseEvent(chunk_for_choice(CompletionChunkJson(meta, echo_text, ""), i)))) {
          return false;
        }
      }
    }
    return true;
  };
  // With log-probabilities every token gets its chunk, even one whose text is held back.
  auto emit = [&](int32_t index, const std::string& piece) -> bool {
    if (piece.empty() && !(params.stream && choices[index].logprobs->has_chunk())) return true;
    if (!params.stream) {
      choices[index].full_text += piece;
      return true;
    }
    return writer.Write(SseEvent(chunk_for_choice(
        chat ? ChatChunkJson(meta, false, piece, "") : CompletionChunkJson(meta, piece, ""),
        index)));
  };

  GenerationRequest request;
  request.prompt = std::move(prompt);
  request.max_tokens = max_tokens;
  request.sampling = params.sampling;
  request.n = n_choices;
  request.constraints = constraints;
  request.request_id = meta.id;
  request.metrics = &metrics_;
  request.is_cancelled = [&writer] { return writer.client_gone(); };
  request.logprobs = params.logprobs;
  // The prompt's log-probabilities come from the prompt's own forward step (echo), once for all
  // choices.
  request.prompt_logprobs = params.echo && with_logprobs;
  auto add_prompt_logprobs = [&](std::span<const model::TokenLogprob> scored) {
    for (Choice& c : choices) c.logprobs->AddPrompt(request.prompt, scored);
  };
  request.on_prompt_logprobs = [&](std::vector<model::TokenLogprob> scored) {
    add_prompt_logprobs(scored);
  };

  absl::Status status;
  if (max_tokens == 0 && request.prompt_logprobs) {
    // Scoring only (how evaluation harnesses ask): one batched pass over the prompt.
    if (request.prompt.size() < 2) {
      add_prompt_logprobs({});
    } else {
      ScoreRequest score;
      score.tokens = request.prompt;
      score.options.top_k = params.logprobs;
      score.request_id = meta.id;
      score.metrics = &metrics_;
      score.is_cancelled = request.is_cancelled;
      absl::StatusOr<std::vector<model::TokenLogprob>> scored = engine_.Score(score);
      if (scored.ok()) {
        add_prompt_logprobs(*scored);
      } else {
        status = scored.status();
      }
    }
  } else if (max_tokens > 0) {
    status = engine_.Generate(request, [&](const GenerationEvent& event) -> bool {
      if (gone || writer.client_gone()) {
        gone = true;
        return false;
      }
      if (event.index < 0 || event.index >= n_choices) return false;
      Choice& c = choices[event.index];
      const Clock::time_point now = Clock::now();
      if (n_completion == 0) {
        metrics_.ObserveTimeToFirstToken(Seconds(now - t0));
      } else {
        metrics_.ObserveTokenLatency(Seconds(now - last));
      }
      last = now;
      ++n_completion;
      ++c.n_completion;
      log_.OnToken(record, event);
      if (params.stream && !begin_stream()) {
        gone = true;
        return false;
      }
      if (tokenizer.IsEndOfGeneration(event.token)) {
        c.finish_reason = "stop";
        return false;
      }
      if (event.logprobs != nullptr) c.logprobs->Add(*event.logprobs);
      if (!emit(event.index, c.text->Push(event.token))) {
        gone = true;
        return false;
      }
      if (c.text->stopped()) {
        c.finish_reason = "stop";
        return false;
      }
      if (c.constraint != nullptr && c.constraint->complete()) {  // the JSON value is whole
        if (!emit(event.index, c.text->Finish())) gone = true;
        c.finish_reason = "stop";
        return false;
      }
      return c.n_completion < max_tokens;
    });
  }
  metrics_.AddTokens(n_prompt, n_completion);
  // E.g. the client left while the request waited for the engine: no token was ever produced.
  if (writer.client_gone()) gone = true;

  auto finish_log = [&](const char* how) {
    log_.Finish(record, how);
    metrics_.Set("swarm_active_generations", {}, log_.running());
  };
  if (gone) {
    finish_log("cancelled");
    metrics_.CountRequest(endpoint, 499);
    if (started) writer.EndStream();  // fails harmlessly when the client is really gone
    return;
  }
  if (!status.ok() && status.code() != absl::StatusCode::kCancelled) {
    finish_log("error");
    // For the operator: the client gets the error too, but only the gateway's log keeps it.
    std::fprintf(stderr, "gateway: %s failed after %lld tokens: %s\n", meta.id.c_str(),
                 static_cast<long long>(n_completion), status.ToString().c_str());
    const ApiError error = EngineError(status);
    metrics_.CountRequest(endpoint, started ? 200 : error.status);
    if (!started) {
      writer.Send(ErrorResponse(error));
    } else {
      // Headers are out: report the error in the stream, where the OpenAI clients look for it.
      writer.Write(SseEvent(ErrorJson(error)));
      writer.EndStream();
    }
    return;
  }
  for (int32_t i = 0; i < n_choices; ++i) {
    Choice& c = choices[i];
    if (!c.finish_reason.empty()) continue;
    if (!gone && params.stream && !begin_stream()) gone = true;
    if (!gone && !emit(i, c.text->Finish())) gone = true;
    c.finish_reason = c.n_completion >= max_tokens ? "length" : "stop";
  }
  finish_log("done");
  const Usage usage{n_prompt, n_completion};
  metrics_.CountRequest(endpoint, 200);
  if (!params.stream) {
    json body;
    for (int32_t i = 0; i < n_choices; ++i) {
      const Choice& c = choices[i];
      json one = for_choice(chat ? ChatCompletionJson(meta, c.full_text, c.finish_reason, usage)
                                 : CompletionJson(meta, c.full_text, c.finish_reason, usage),
                            i);
      if (with_logprobs) one["choices"][0]["logprobs"] = c.logprobs->Json();
      if (i == 0) {
        body = std::move(one);
      } else {
        body["choices"].push_back(std::move(one["choices"][0]));
      }
    }
    writer.Send({200, "application/json", Dump(body), {}});
    return;
  }
  if (gone || !begin_stream()) return;
  for (int32_t i = 0; i < n_choices; ++i) {
    const json last_chunk = chat
                                ? ChatChunkJson(meta, false, std::nullopt, choices[i].finish_reason)
                                : CompletionChunkJson(meta, "", choices[i].finish_reason);
    if (!writer.Write(SseEvent(for_choice(last_chunk, i)))) return;
  }
  if (params.include_usage) {
    json usage_chunk = UsageChunkJson(meta, chat, usage);
    usage_chunk["system_fingerprint"] = fingerprint_;
    if (!writer.Write(SseEvent(usage_chunk))) return;
  }
  if (!writer.Write(std::string(kSseDone))) return;
  writer.EndStream();
}

}  // namespace swarm::gateway
