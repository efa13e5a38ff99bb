#include "gateway/api_server.h"

#include <chrono>
#include <map>

#include "absl/strings/str_cat.h"
#include "gateway/dashboard.h"
#include "gateway/openai_api.h"
#include "gateway/request_log.h"

namespace swarm::gateway {
namespace {

using nlohmann::json;

void AddHeaders(HttpHeaders& to, const HttpHeaders& extra) {
  to.insert(to.end(), extra.begin(), extra.end());
}

// Adds the request's CORS headers to whatever a generation job writes.
class HeaderAddingWriter final : public ResponseWriter {
 public:
  HeaderAddingWriter(ResponseWriter& inner, const HttpHeaders& extra)
      : inner_(inner), extra_(extra) {}
  bool Send(const HttpResponse& response) override {
    HttpResponse r = response;
    AddHeaders(r.headers, extra_);
    return inner_.Send(r);
  }
  bool BeginStream(int status, const std::string& content_type,
                   const HttpHeaders& headers) override {
    HttpHeaders all = headers;
    AddHeaders(all, extra_);
    return inner_.BeginStream(status, content_type, all);
  }
  bool Write(std::string data) override { return inner_.Write(std::move(data)); }
  bool EndStream() override { return inner_.EndStream(); }
  bool client_gone() const override { return inner_.client_gone(); }

 private:
  ResponseWriter& inner_;
  const HttpHeaders& extra_;
};

// The request comes from a page of the gateway itself: its Origin names the Host it asked.
bool SameOrigin(const std::string& origin, const HttpHeaders& headers) {
  const std::string* host = FindHeader(headers, "Host");
  return host != nullptr && (origin == "http://" + *host || origin == "https://" + *host);
}

}  // namespace

// Routes requests. Cheap endpoints are answered on the I/O thread; generations become jobs.
class ApiServer::Handler final : public HttpHandler {
 public:
  Handler(const ApiServerOptions& options, CompletionEngine& engine, ChatTemplateKind chat_template,
          MetricsRegistry& metrics, AccessControl access)
      : options_(options),
        access_(std::move(access)),
        engine_(engine),
        metrics_(metrics),
        log_(options.recent_requests),
        api_(engine, chat_template, OpenAiOptions{options.max_tokens_limit}, metrics, log_),
        start_(std::chrono::steady_clock::now()) {}

  // Access first (preflight, origin, key), then the route; every answer carries the request's
  // CORS headers.
  HttpDispatch Handle(HttpRequest request) override {
    std::string path = request.path;
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    const HttpHeaders cors = access_.CorsHeaders(request.headers);
    HttpDispatch d = Guard(request, path);
    if (!d.response && !d.job) d = RouteRequest(request, path);
    // A preflight's answer has its own CORS headers.
    if (d.response && request.method != "OPTIONS") AddHeaders(d.response->headers, cors);
    if (d.job) {
      d.job = [job = std::move(d.job), cors](ResponseWriter& writer) {
        HeaderAddingWriter with_cors(writer, cors);
        job(with_cors);
      };
    }
    return d;
  }

  // Preflights, and requests that may not pass: from a page of a foreign origin, or without a key.
  // An empty dispatch lets the request through.
  HttpDispatch Guard(const HttpRequest& request, const std::string& path) {
    const std::optional<std::string> origin = AccessControl::Origin(request.headers);
    if (request.method == "OPTIONS") {
      if (!origin) {
        return Answer("options",
                      HttpResponse{204, "text/plain", "", {{"Allow", "GET, POST, OPTIONS"}}});
      }
      if (std::optional<HttpHeaders> headers = access_.PreflightHeaders(request.headers)) {
        return Answer("options", HttpResponse{204, "text/plain", "", std::move(*headers)});
      }
      return Answer("options", ForeignOrigin(*origin));
    }
    // A browser sends Origin with every cross-origin request, also with the "simple" ones it
    // sends without a preflight (a form's POST): refusing them here keeps a web page from making
    // the gateway work blind even where it could not read the answer.
    if (origin && !access_.AllowOrigin(*origin) && !SameOrigin(*origin, request.headers)) {
      return Answer("other", ForeignOrigin(*origin));
    }
    const bool public_route = path == "/health" || path == "/";
    if (!public_route && !access_.Authorized(request.headers)) {
      const bool sent = FindHeader(request.headers, "Authorization") != nullptr;
      HttpResponse r = ErrorResponse(
          {401,
           sent ? "Incorrect API key provided. Use a key this gateway was started with "
                  "(Authorization: Bearer YOUR_KEY)."
                : "You didn't provide an API key. You need to provide your API key in an "
                  "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
           "invalid_request_error", "", "invalid_api_key"});
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      return Answer("unauthorized", std::move(r));
    }
    return {};
  }

  HttpDispatch RouteRequest(HttpRequest& request, const std::string& path) {
    const std::string& method = request.method;
    struct Route {
      const char* path;
      const char* method;
      const char* endpoint;  // metrics label
    };
    static constexpr Route kRoutes[] = {
        {"/", "GET", "dashboard"},
        {"/api/swarm", "GET", "api_swarm"},
        {"/metrics", "GET", "metrics"},
        {"/health", "GET", "health"},
        {"/v1/models", "GET", "models"},
        {"/v1/completions", "POST", "completions"},
        {"/v1/chat/completions", "POST", "chat_completions"},
    };
    const Route* route = nullptr;
    for (const Route& r : kRoutes) {
      if (path == r.path) route = &r;
    }
    if (route == nullptr && path.rfind("/v1/models/", 0) == 0) {
      if (method != "GET") return MethodNotAllowed("models", method, path, "GET");
      return Answer("models", api_.GetModel(path.substr(std::string("/v1/models/").size())));
    }
    if (route == nullptr) {
      return Answer("other", ErrorResponse({404,
                                            absl::StrCat("Unknown request URL: ", method, " ", path,
                                                         ". Please check the URL."),
                                            "invalid_request_error", "", "unknown_url"}));
    }
    if (method != route->method) {
      return MethodNotAllowed(route->endpoint, method, path, route->method);
    }
    const std::string endpoint = route->endpoint;
    if (endpoint == "dashboard") {
      return Answer(
          endpoint,
          HttpResponse{200, "text/html; charset=utf-8", std::string(DashboardHtml()), {}});
    }
    if (endpoint == "api_swarm") {
      return Answer(endpoint, HttpResponse{200, "application/json", Dump(Snapshot()), {}});
    }
    if (endpoint == "metrics") return Answer(endpoint, Metrics());
    if (endpoint == "health") {
      return Answer(endpoint, HttpResponse{200, "application/json", R"({"status":"ok"})", {}});
    }
    if (endpoint == "models") return Answer(endpoint, api_.ListModels());

    // A generation: everything else, parsing included, runs on a worker.
    const bool chat = endpoint == "chat_completions";
    HttpDispatch d;
    d.job = [this, body = std::move(request.body), chat, endpoint](ResponseWriter& writer) {
      api_.Complete(body, chat, endpoint, writer);
    };
    return d;
  }

  json Snapshot() const {
    json snapshot = SwarmJson(engine_.info(), engine_.Describe(), log_, ServerJson());
    // What the gateway itself measured of each peer: the mean time of one step through it, seen
    // from here (compute and network), over the generations so far; null before the first.
    for (json& peer : snapshot["peers"]) {
      const std::vector<std::string> labels = {peer["id"].get<std::string>()};
      const uint64_t n = metrics_.HistogramCount("swarm_peer_step_latency_seconds", labels);
      peer["step_ms"] =
          n > 0 ? json(1e3 * metrics_.HistogramSum("swarm_peer_step_latency_seconds", labels) / n)
                : json(nullptr);
    }
    // Spot checks and output checks of peers' work over the generations so far.
    snapshot["verification"] = {
        {"verified_steps", metrics_.Total("swarm_verified_steps_total")},
        {"unverified_steps", metrics_.Total("swarm_unverified_steps_total")},
        {"mismatches", metrics_.Total("swarm_verification_mismatches_total")},
        {"outputs_refused", metrics_.Total("swarm_outputs_refused_total")},
        {"peers_banned", metrics_.Total("swarm_peers_banned_total")}};
    // Speculative decoding over the generations so far, and the chunks in flight now.
    snapshot["speculative"] = {
        {"drafted", metrics_.Total("swarm_speculative_drafted_tokens_total")},
        {"accepted", metrics_.Total("swarm_speculative_accepted_tokens_total")},
        {"traversals", metrics_.Total("swarm_speculative_traversals_total")},
        {"tokens", metrics_.Total("swarm_speculative_tokens_total")},
        {"chunks_in_flight", metrics_.Total("swarm_speculative_chunks_in_flight")}};
    return snapshot;
  }

  ChatTemplateKind chat_kind() const { return api_.chat_formatter().kind(); }

  HttpResponse ServerError(int status, const std::string& message) override {
    metrics_.CountRequest("other", status);
    std::string type = status >= 500 ? "server_error" : "invalid_request_error";
    std::string code;
    if (status == 429) {
      // What OpenAI sends when a rate limit is hit.
      type = "requests";
      code = "rate_limit_exceeded";
    } else if (status == 413) {
      code = "request_too_large";
    } else if (status == 431) {
      code = "headers_too_large";
    }
    HttpResponse r = ErrorResponse({status, message, type, "", code});
    if (status == 429) r.headers.emplace_back("Retry-After", "1");
    return r;
  }

 private:
  HttpDispatch Answer(const std::string& endpoint, HttpResponse response) {
    metrics_.CountRequest(endpoint, response.status);
    HttpDispatch d;
    d.response = std::move(response);
    return d;
  }

  static HttpResponse ForeignOrigin(const std::string& origin) {
    return ErrorResponse({403,
                          absl::StrCat("Requests from web pages of origin '", origin,
                                       "' are not allowed (the gateway's --cors-origin)."),
                          "invalid_request_error", "", "origin_not_allowed"});
  }

  HttpDispatch MethodNotAllowed(const std::string& endpoint, const std::string& method,
                                const std::string& path, const std::string& allowed) {
    HttpResponse r = ErrorResponse(
        {405,
         absl::StrCat("Method ", method, " is not allowed for ", path, " (use ", allowed, ")."),
         "invalid_request_error", "", "method_not_allowed"});
    r.headers.emplace_back("Allow", allowed);
    return Answer(endpoint, std::move(r));
  }

  json ServerJson() const {
    double total = 0;
    for (const char* e : {"completions", "chat_completions"}) {
      total += metrics_.Value("swarm_http_requests_total", {e, "200"});
    }
    return {{"uptime_s",
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count()},
            {"active_generations", log_.running()},
            {"max_concurrent_generations", options_.max_concurrent_generations},
            {"requests_total", total},
            {"chat_template", std::string(ChatTemplateName(api_.chat_formatter().kind()))}};
  }

  HttpResponse Metrics() {
    // Swarm gauges come from a fresh snapshot at each scrape.
    const SwarmView view = engine_.Describe();
    std::map<std::string, double> by_state;
    std::vector<std::pair<std::vector<std::string>, double>> cache, bytes_left, bytes_total;
    for (const PeerView& p : view.peers) {
      by_state[p.state] += 1;
      if (p.cache_tokens_left >= 0) {
        cache.push_back({{p.id}, static_cast<double>(p.cache_tokens_left)});
      }
      if (p.cache_bytes_left >= 0) {
        bytes_left.push_back({{p.id}, static_cast<double>(p.cache_bytes_left)});
        bytes_total.push_back({{p.id}, static_cast<double>(p.cache_bytes_total)});
      }
    }
    std::vector<std::pair<std::vector<std::string>, double>> states_series;
    for (const auto& [state, n] : by_state) states_series.push_back({{state}, n});
    metrics_.ReplaceGauge("swarm_peers", states_series);
    metrics_.ReplaceGauge("swarm_peer_cache_tokens_left", cache);
    metrics_.ReplaceGauge("swarm_peer_cache_bytes_left", bytes_left);
    metrics_.ReplaceGauge("swarm_peer_cache_bytes_total", bytes_total);
    std::vector<std::pair<std::vector<std::string>, double>> blocks;
    const std::vector<BlockCoverage> coverage =
        ComputeCoverage(view, view.n_blocks > 0 ? view.n_blocks : engine_.info().n_blocks);
    for (size_t b = 0; b < coverage.size(); ++b) {
      blocks.push_back({{std::to_string(b)}, static_cast<double>(coverage[b].peers)});
    }
    metrics_.ReplaceGauge("swarm_block_peers", blocks);
    metrics_.Set("swarm_active_generations", {}, log_.running());
    return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", metrics_.Render(), {}};
  }

  ApiServerOptions options_;
  const AccessControl access_;
  CompletionEngine& engine_;
  MetricsRegistry& metrics_;
  RequestLog log_;
  OpenAiApi api_;
  const std::chrono::steady_clock::time_point start_;
};

absl::StatusOr<std::unique_ptr<ApiServer>> ApiServer::Start(const ApiServerOptions& options,
                                                            CompletionEngine& engine) {
  if (options.max_concurrent_generations < 1 || options.max_queued_generations < 0 ||
      options.max_tokens_limit < 1 || options.max_queued_per_client < 1) {
    return absl::InvalidArgumentError(
        "max_concurrent_generations, max_queued_per_client and max_tokens_limit must be >= 1, "
        "max_queued_generations >= 0");
  }
  absl::StatusOr<AccessControl> access = AccessControl::Create(options.access);
  if (!access.ok()) return access.status();
  absl::StatusOr<ChatTemplateKind> chat_template =
      ResolveChatTemplate(options.chat_template, engine.info().chat_template);
  if (!chat_template.ok()) return chat_template.status();

  std::unique_ptr<ApiServer> server(new ApiServer());
  server->metrics_ = std::make_unique<MetricsRegistry>();
  server->handler_ = std::make_unique<Handler>(options, engine, *chat_template, *server->metrics_,
                                               std::move(*access));
  HttpServerOptions http = options.http;
  http.worker_threads = options.max_concurrent_generations;
  http.max_queued_jobs = options.max_queued_generations;
  http.max_jobs_per_client = options.max_queued_per_client;
  absl::StatusOr<std::unique_ptr<HttpServer>> started = HttpServer::Start(http, *server->handler_);
  if (!started.ok()) return started.status();
  server->http_ = std::move(*started);
  return server;
}

ApiServer::~ApiServer() { Stop(); }

void ApiServer::Stop() {
  if (http_) http_->Stop();
}

uint16_t ApiServer::port() const { return http_->port(); }
MetricsRegistry& ApiServer::metrics() { return *metrics_; }
nlohmann::json ApiServer::SwarmSnapshot() const { return handler_->Snapshot(); }
std::string ApiServer::chat_template_name() const {
  return std::string(ChatTemplateName(handler_->chat_kind()));
}

}  // namespace swarm::gateway
