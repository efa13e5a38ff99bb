#include "gateway/http_server.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <future>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "boost/asio.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "gateway/http_request.h"

namespace swarm::gateway {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

constexpr size_t kReadChunk = 4096;
// Lingering close: after an error response sent before the request was read to the end (413,
// 431), keep reading and discarding for a moment so the client's unread bytes do not make the
// kernel reset the connection before the client has read the response.
constexpr std::chrono::milliseconds kLingerTime{1000};

// A job's claim on the pool's capacity. Released when the job returns, or earlier, when the job
// starts its last write: a client that sends its next request as soon as it has the answer must
// not find the slot of its previous request still taken.
class Admission {
 public:
  explicit Admission(std::function<void()> release) : release_(std::move(release)) {}
  void Release() {
    if (!released_.exchange(true)) release_();
  }

 private:
  std::function<void()> release_;
  std::atomic<bool> released_{false};
};

enum class Admit { kAccepted, kBusy, kClientBusy, kStopping };

// Fixed worker threads; at most threads + max_queued jobs admitted at once, and at most
// per_client of them from one client. TrySubmit refuses instead of waiting.
class WorkerPool {
 public:
  using Job = std::function<void(Admission&)>;

  WorkerPool(int threads, int max_queued, int per_client)
      : capacity_(threads + max_queued), per_client_cap_(per_client) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
  }
  ~WorkerPool() { Stop(); }

  Admit TrySubmit(const std::string& client, Job job) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return Admit::kStopping;
      int& mine = per_client_[client];
      if (per_client_cap_ > 0 && mine >= per_client_cap_) return Admit::kClientBusy;
      if (admitted_ >= capacity_) {
        if (mine == 0) per_client_.erase(client);
        return Admit::kBusy;
      }
      ++mine;
      ++admitted_;
      queue_.push_back({client, std::move(job)});
    }
    cv_.notify_one();
    return Admit::kAccepted;
  }

  // Runs what is queued (jobs see their clients gone by then), then joins.
  void Stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  int busy() const {
    std::lock_guard lock(mu_);
    return admitted_;
  }

 private:
  void Run() {
    for (;;) {
      Queued queued;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        queued = std::move(queue_.front());
        queue_.pop_front();
      }
      Admission admission([this, client = queued.client] {
        std::lock_guard lock(mu_);
        --admitted_;
        auto it = per_client_.find(client);
        if (it != per_client_.end() && --it->second <= 0) per_client_.erase(it);
      });
      queued.job(admission);
      admission.Release();
    }
  }

  struct Queued {
    std::string client;
    Job job;
  };
  const int capacity_;
  const int per_client_cap_;  // 0: none
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Queued> queue_;
  int admitted_ = 0;
  std::unordered_map<std::string, int> per_client_;  // admitted jobs by client
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// Shared between a session (I/O strand) and the job writing its response (worker thread).
struct StreamState {
  std::atomic<bool> gone{false};
};

}  // namespace

class Session;

class HttpServer::Impl {
 public:
  Impl(const HttpServerOptions& options, HttpHandler& handler)
      : options_(options),
        handler_(handler),
        acceptor_(net::make_strand(ioc_)),
        retry_timer_(acceptor_.get_executor()),
        pool_(options.worker_threads, options.max_queued_jobs, options.max_jobs_per_client) {}

  absl::Status Listen();
  void Run();
  void Stop();

  const HttpServerOptions& options() const { return options_; }
  HttpHandler& handler() { return handler_; }
  WorkerPool& pool() { return pool_; }
  bool stopping() const { return stopping_.load(); }
  uint16_t port() const { return port_; }
  int open_connections() const {
    std::lock_guard lock(sessions_mu_);
    return static_cast<int>(sessions_.size());
  }

  void Register(Session* s, const std::string& client) {
    std::lock_guard lock(sessions_mu_);
    sessions_.insert(s);
    ++per_client_[client];
  }
  void Unregister(Session* s, const std::string& client) {
    std::lock_guard lock(sessions_mu_);
    sessions_.erase(s);
    auto it = per_client_.find(client);
    if (it != per_client_.end() && --it->second <= 0) per_client_.erase(it);
  }

 private:
  void Accept();
  // Why a new connection from `client` cannot be served ("" if it can).
  std::string Refusal(const std::string& client) const;
  void Refuse(tcp::socket& socket, const std::string& message);

  HttpServerOptions options_;
  HttpHandler& handler_;
  std::atomic<bool> stopping_{false};
  bool stopped_ = false;
  uint16_t port_ = 0;
  // Declared before ioc_: sessions still queued in ioc_ unregister while it is destroyed.
  mutable std::mutex sessions_mu_;
  std::unordered_set<Session*> sessions_;            // live sessions, for Stop()
  std::unordered_map<std::string, int> per_client_;  // live sessions by client
  net::io_context ioc_;
  // Keeps the io threads running while no socket operation is pending (a session whose job runs on
  // the worker pool has none); released by Stop once every session is closed.
  net::executor_work_guard<net::io_context::executor_type> work_ = net::make_work_guard(ioc_);
  tcp::acceptor acceptor_;
  net::steady_timer retry_timer_;
  std::vector<std::thread> io_threads_;
  // Declared after ioc_: queued jobs hold sessions, whose sockets need ioc_.
  WorkerPool pool_;
};

namespace {

http::status ToStatus(int code) { return static_cast<http::status>(code); }

}  // namespace

// One connection. Every member is used on the connection's strand only; the job running for it
// shares only the StreamState.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer::Impl& server, std::string client)
      : server_(server),
        socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        client_(std::move(client)),
        header_deadline_(std::chrono::steady_clock::now() + server.options().header_timeout) {
    server_.Register(this, client_);
    beast::error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
  }
  ~Session() { server_.Unregister(this, client_); }

  void Start() {
    net::dispatch(socket_.get_executor(), [self = shared_from_this()] { self->ReadRequest(); });
  }

  // From any thread: close the connection (server stopping). The future is ready once the close
  // ran on the strand (or the io_context dropped it, which breaks the promise).
  std::future<void> CloseFromOutside() {
    auto closed = std::make_shared<std::promise<void>>();
    std::future<void> done = closed->get_future();
    net::post(socket_.get_executor(), [self = shared_from_this(), closed] {
      self->Close();
      closed->set_value();
    });
    return done;
  }

  // Used by the job's writer, from a worker thread: runs `op` on the strand and waits for the
  // result. False when the session is closed or the io_context dropped the operation.
  bool RunOnStrand(std::function<void(std::function<void(bool)>)> op);

  // On the strand.
  void WriteWhole(const HttpResponse& r, std::function<void(bool)> done);
  void WriteStreamHeader(int status, const std::string& content_type, const HttpHeaders& headers,
                         std::function<void(bool)> done);
  void WriteChunk(std::string data, std::function<void(bool)> done);
  void WriteLastChunk(std::function<void(bool)> done);
  void OnJobDone(bool response_complete);

 private:
  void Arm(std::chrono::milliseconds d) { ArmUntil(std::chrono::steady_clock::now() + d); }
  void ArmUntil(std::chrono::steady_clock::time_point deadline) {
    ++timer_gen_;
    timer_.expires_at(deadline);
    timer_.async_wait([self = shared_from_this(), gen = timer_gen_](beast::error_code ec) {
      if (ec || gen != self->timer_gen_) return;
      self->Close();
    });
  }
  void Disarm() {
    ++timer_gen_;
    timer_.cancel();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    if (stream_) stream_->gone = true;
    Disarm();
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }

  // Sends what is left and closes after the client had a moment to read it.
  void LingeringClose() {
    if (closed_) return;
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    Arm(kLingerTime);
    Drain();
  }
  void Drain() {
    auto scratch = std::make_shared<std::array<char, kReadChunk>>();
    socket_.async_read_some(net::buffer(*scratch),
                            [self = shared_from_this(), scratch](beast::error_code ec, size_t) {
                              if (ec || self->closed_) {
                                self->Close();
                                return;
                              }
                              self->Drain();
                            });
  }

  void ReadRequest() {
    if (closed_) return;
    if (server_.stopping()) {
      Close();
      return;
    }
    parser_.emplace();
    LimitRequestParser(*parser_, server_.options());
    if (buffer_.size() == 0) {
      // A new connection waits for its first request within the header deadline; a keep-alive
      // one for its next request within the idle time, and then for its headers.
      if (served_) {
        Arm(server_.options().idle_timeout);
        header_deadline_.reset();
      } else {
        ArmUntil(*header_deadline_);
      }
      StartRawRead();
      return;
    }
    ReadRest();
  }

  // A plain read into buffer_: waits for the first byte of the next request, and while a job runs,
  // notices a client that closes the connection (so its generation stops at once).
  void StartRawRead() {
    reading_raw_ = true;
    socket_.async_read_some(
        buffer_.prepare(kReadChunk),
        [self = shared_from_this()](beast::error_code ec, size_t n) { self->OnRawRead(ec, n); });
  }

  void OnRawRead(beast::error_code ec, size_t n) {
    reading_raw_ = false;
    if (closed_) return;
    if (ec == net::error::operation_aborted) {
      // Cancelled by OnJobDone to read the next request.
      if (!job_running_) ReadRequest();
      return;
    }
    if (ec) {
      Close();  // EOF or reset: the client is gone, and with it any generation for it
      return;
    }
    buffer_.commit(n);
    if (!job_running_) {
      ReadRequest();  // a fresh parser: the last one may have finished the previous request
    } else if (buffer_.size() <
               server_.options().max_header_bytes + server_.options().max_body_bytes) {
      StartRawRead();  // a pipelined request: keep it, and keep watching
    }
  }

  // The header first, to answer "Expect: 100-continue" (curl sends it for larger bodies and
  // otherwise waits a second before sending the body), then the body; one deadline for both.
  void ReadRest() {
    if (!header_deadline_) {
      header_deadline_ = std::chrono::steady_clock::now() + server_.options().header_timeout;
    }
    ArmUntil(*header_deadline_);
    http::async_read_header(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    if (ec || closed_) {
      OnRequest(ec);
      return;
    }
    served_ = true;
    header_deadline_.reset();
    Arm(server_.options().request_timeout);
    if (!parser_->is_done() &&
        beast::iequals(parser_->get()[http::field::expect], "100-continue")) {
      auto res = std::make_shared<http::response<http::empty_body>>(http::status::continue_, 11);
      http::async_write(socket_, *res,
                        [self = shared_from_this(), res](beast::error_code ec, size_t) {
                          if (ec) {
                            self->Close();
                            return;
                          }
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    http::async_read(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRequest(ec); });
  }

  void OnRequest(beast::error_code ec);
  void Dispatch();
  void RespondError(int status, const std::string& message, bool linger);

  HttpServer::Impl& server_;
  tcp::socket socket_;
  net::steady_timer timer_;
  uint64_t timer_gen_ = 0;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string remote_;
  const std::string client_;
  // When the headers of the request being read must be complete; unset between requests.
  std::optional<std::chrono::steady_clock::time_point> header_deadline_;
  bool served_ = false;  // a request's headers were read on this connection
  bool keep_alive_ = false;
  bool closed_ = false;
  bool reading_raw_ = false;
  bool job_running_ = false;
  std::shared_ptr<StreamState> stream_;
  // The streamed response in progress (kept alive until written).
  std::shared_ptr<http::response<http::empty_body>> stream_header_;
  std::shared_ptr<http::response_serializer<http::empty_body>> stream_serializer_;
};

namespace {

class SessionWriter final : public ResponseWriter {
 public:
  SessionWriter(std::shared_ptr<Session> session, std::shared_ptr<StreamState> stream,
                const HttpServer::Impl& server, Admission& admission)
      : session_(std::move(session)),
        stream_(std::move(stream)),
        server_(server),
        admission_(admission) {}

  bool Send(const HttpResponse& response) override {
    if (state_ != State::kNone) return false;
    state_ = State::kDone;
    admission_.Release();
    if (client_gone()) return false;
    return session_->RunOnStrand(
        [&](std::function<void(bool)> done) { session_->WriteWhole(response, std::move(done)); });
  }
  bool BeginStream(int status, const std::string& content_type,
                   const HttpHeaders& headers) override {
    if (state_ != State::kNone) return false;
    state_ = State::kStreaming;
    if (client_gone()) return false;
    return session_->RunOnStrand([&](std::function<void(bool)> done) {
      session_->WriteStreamHeader(status, content_type, headers, std::move(done));
    });
  }
  bool Write(std::string data) override {
    if (state_ != State::kStreaming) return false;
    if (client_gone()) return false;
    if (data.empty()) return true;  // an empty chunk would end the body
    return session_->RunOnStrand([&](std::function<void(bool)> done) {
      session_->WriteChunk(std::move(data), std::move(done));
    });
  }
  bool EndStream() override {
    if (state_ != State::kStreaming) return false;
    state_ = State::kDone;
    admission_.Release();
    if (client_gone()) return false;
    return session_->RunOnStrand(
        [&](std::function<void(bool)> done) { session_->WriteLastChunk(std::move(done)); });
  }
  bool client_gone() const override { return stream_->gone.load() || server_.stopping(); }

  bool complete() const { return state_ == State::kDone; }

 private:
  enum class State { kNone, kStreaming, kDone };
  std::shared_ptr<Session> session_;
  std::shared_ptr<StreamState> stream_;
  const HttpServer::Impl& server_;
  Admission& admission_;
  State state_ = State::kNone;
};

}  // namespace

bool Session::RunOnStrand(std::function<void(std::function<void(bool)>)> op) {
  auto promise = std::make_shared<std::promise<bool>>();
  std::future<bool> result = promise->get_future();
  net::post(socket_.get_executor(), [self = shared_from_this(), op = std::move(op), promise] {
    if (self->closed_) {
      promise->set_value(false);
      return;
    }
    op([promise](bool ok) { promise->set_value(ok); });
  });
  try {
    return result.get();
  } catch (const std::future_error&) {
    return false;  // the io_context was destroyed with the operation still queued
  }
}

void Session::WriteWhole(const HttpResponse& r, std::function<void(bool)> done) {
  auto res = std::make_shared<http::response<http::string_body>>(ToStatus(r.status), 11);
  res->set(http::field::server, "swarm");
  res->set(http::field::content_type, r.content_type);
  for (const auto& [name, value] : r.headers) res->set(name, value);
  res->keep_alive(keep_alive_);
  res->body() = r.body;
  res->prepare_payload();
  Arm(server_.options().write_timeout);
  http::async_write(
      socket_, *res,
      [self = shared_from_this(), res, done = std::move(done)](beast::error_code ec, size_t) {
        self->Disarm();
        if (ec) self->Close();
        done(!ec);
      });
}

void Session::WriteStreamHeader(int status, const std::string& content_type,
                                const HttpHeaders& headers, std::function<void(bool)> done) {
  stream_header_ = std::make_shared<http::response<http::empty_body>>(ToStatus(status), 11);
  stream_header_->set(http::field::server, "swarm");
  stream_header_->set(http::field::content_type, content_type);
  for (const auto& [name, value] : headers) stream_header_->set(name, value);
  stream_header_->keep_alive(keep_alive_);
  stream_header_->chunked(true);
  stream_serializer_ =
      std::make_shared<http::response_serializer<http::empty_body>>(*stream_header_);
  Arm(server_.options().write_timeout);
  http::async_write_header(
      socket_, *stream_serializer_,
      [self = shared_from_this(), done = std::move(done)](beast::error_code ec, size_t) {
        self->Disarm();
        if (ec) self->Close();
        done(!ec);
      });
}

void Session::WriteChunk(std::string data, std::function<void(bool)> done) {
  auto owned = std::make_shared<std::string>(std::move(data));
  Arm(server_.options().write_timeout);
  net::async_write(
      socket_, http::make_chunk(net::buffer(*owned)),
      [self = shared_from_this(), owned, done = std::move(done)](beast::error_code ec, size_t) {
        self->Disarm();
        if (ec) self->Close();
        done(!ec);
      });
}

void Session::WriteLastChunk(std::function<void(bool)> done) {
  Arm(server_.options().write_timeout);
  net::async_write(
      socket_, http::make_chunk_last(),
      [self = shared_from_this(), done = std::move(done)](beast::error_code ec, size_t) {
        self->Disarm();
        if (ec) self->Close();
        done(!ec);
      });
}

void Session::OnRequest(beast::error_code ec) {
  Disarm();
  if (closed_) return;
  if (ec == http::error::end_of_stream || ec == net::error::eof ||
      ec == net::error::connection_reset || ec == net::error::operation_aborted) {
    Close();
    return;
  }
  if (const int status = RequestErrorStatus(ec); status != 0) {
    RespondError(status, RequestErrorMessage(ec, server_.options()), /*linger=*/true);
    return;
  }
  if (ec) {
    Close();
    return;
  }
  Dispatch();
}

void Session::RespondError(int status, const std::string& message, bool linger) {
  keep_alive_ = false;
  HttpResponse r;
  try {
    r = server_.handler().ServerError(status, message);
  } catch (const std::exception&) {
    r = HttpResponse{status, "text/plain", message, {}};
  }
  WriteWhole(r, [self = shared_from_this(), linger](bool ok) {
    if (!ok) return;
    if (linger) {
      self->LingeringClose();
    } else {
      self->Close();
    }
  });
}

void Session::Dispatch() {
  http::request<http::string_body> req = parser_->release();
  keep_alive_ = req.keep_alive();
  HttpRequest request = ToHttpRequest(std::move(req), remote_);
  request.client = client_;

  HttpDispatch dispatch;
  try {
    dispatch = server_.handler().Handle(std::move(request));
  } catch (const std::exception& e) {
    RespondError(500, absl::StrCat("Internal error: ", e.what()), /*linger=*/false);
    return;
  }
  if (dispatch.response || !dispatch.job) {
    HttpResponse r = dispatch.response ? std::move(*dispatch.response)
                                       : server_.handler().ServerError(500, "No response.");
    WriteWhole(r, [self = shared_from_this()](bool ok) {
      if (!ok) return;
      if (self->keep_alive_) {
        self->ReadRequest();
      } else {
        self->Close();
      }
    });
    return;
  }

  stream_ = std::make_shared<StreamState>();
  job_running_ = true;
  auto self = shared_from_this();
  const Admit admit =
      server_.pool().TrySubmit(client_, [self, stream = stream_, job = std::move(dispatch.job),
                                         &server = server_](Admission& admission) {
        SessionWriter writer(self, stream, server, admission);
        try {
          job(writer);
        } catch (const std::exception&) {
          // The job failed before finishing its response; OnJobDone closes or answers 500.
        }
        const bool complete = writer.complete();
        net::post(self->socket_.get_executor(), [self, complete] { self->OnJobDone(complete); });
      });
  if (admit != Admit::kAccepted) {
    job_running_ = false;
    stream_.reset();
    HttpResponse r;
    if (admit == Admit::kStopping) {
      r = server_.handler().ServerError(503, "The server is shutting down.");
    } else if (admit == Admit::kClientBusy) {
      r = server_.handler().ServerError(
          429, absl::StrCat("Too many requests from your address are running or waiting (the "
                            "limit is ",
                            server_.options().max_jobs_per_client,
                            " per client); wait for one to finish."));
    } else {
      r = server_.handler().ServerError(429, "Too many requests in progress; try again shortly.");
    }
    WriteWhole(r, [self](bool ok) {
      if (!ok) return;
      if (self->keep_alive_) {
        self->ReadRequest();
      } else {
        self->Close();
      }
    });
    return;
  }
  StartRawRead();
}

void Session::OnJobDone(bool response_complete) {
  job_running_ = false;
  stream_header_.reset();
  stream_serializer_.reset();
  if (closed_) return;
  if (!response_complete) {
    // Half a stream cannot be repaired; nothing written can still become an error response.
    Close();
    return;
  }
  if (!keep_alive_ || server_.stopping()) {
    Close();
    return;
  }
  if (reading_raw_) {
    beast::error_code ec;
    socket_.cancel(ec);  // OnRawRead(operation_aborted) continues with ReadRequest()
    return;
  }
  ReadRequest();
}

absl::Status HttpServer::Impl::Listen() {
  beast::error_code ec;
  net::ip::address address = net::ip::make_address(options_.host, ec);
  if (ec)
    return absl::InvalidArgumentError(absl::StrCat("bad listen address '", options_.host, "'"));
  tcp::endpoint endpoint(address, options_.port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.host, ":", options_.port, ": ", ec.message()));
  }
  port_ = acceptor_.local_endpoint(ec).port();
  return absl::OkStatus();
}

void HttpServer::Impl::Accept() {
  acceptor_.async_accept(net::make_strand(ioc_), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || stopping_) return;
    if (ec) {
      // E.g. out of file descriptors: try again shortly instead of spinning.
      retry_timer_.expires_after(std::chrono::milliseconds(100));
      retry_timer_.async_wait([this](beast::error_code e) {
        if (!e && !stopping_) Accept();
      });
      return;
    }
    beast::error_code peer_ec;
    const tcp::endpoint peer = socket.remote_endpoint(peer_ec);
    std::string client = peer_ec ? "" : ClientKey(peer.address().to_string());
    const std::string refusal = Refusal(client);
    if (!refusal.empty()) {
      Refuse(socket, refusal);
    } else {
      std::make_shared<Session>(std::move(socket), *this, std::move(client))->Start();
    }
    Accept();
  });
}

std::string HttpServer::Impl::Refusal(const std::string& client) const {
  std::lock_guard lock(sessions_mu_);
  auto it = per_client_.find(client);
  if (it != per_client_.end() && it->second >= options_.max_connections_per_client) {
    return absl::StrCat("Too many connections from your address (the limit is ",
                        options_.max_connections_per_client,
                        " per client); reuse a keep-alive connection or close idle ones.");
  }
  if (static_cast<int>(sessions_.size()) >= options_.max_connections) {
    return "Too many connections to this server; try again shortly.";
  }
  return "";
}

// Answers 429 and closes, on the acceptor's strand and without waiting: the socket is non-blocking,
// a fresh socket's send buffer takes the small response whole, and whatever request bytes have
// already arrived are read first so that closing does not reset the connection before the client
// reads the answer. A refused connection holds no slot and no timer.
void HttpServer::Impl::Refuse(tcp::socket& socket, const std::string& message) {
  beast::error_code ec;
  socket.non_blocking(true, ec);
  std::array<char, kReadChunk> scratch;
  for (int i = 0; i < 16 && !ec; ++i) socket.read_some(net::buffer(scratch), ec);
  try {
    const HttpResponse r = handler_.ServerError(429, message);
    http::response<http::string_body> res(ToStatus(r.status), 11);
    res.set(http::field::server, "swarm");
    res.set(http::field::content_type, r.content_type);
    for (const auto& [name, value] : r.headers) res.set(name, value);
    res.keep_alive(false);
    res.body() = r.body;
    res.prepare_payload();
    std::ostringstream out;
    out << res;
    const std::string bytes = out.str();
    ec.clear();
    socket.write_some(net::buffer(bytes), ec);
  } catch (const std::exception&) {
    // Out of memory: close without an answer.
  }
  socket.shutdown(tcp::socket::shutdown_both, ec);
  socket.close(ec);
}

void HttpServer::Impl::Run() {
  Accept();
  for (int i = 0; i < options_.io_threads; ++i) {
    io_threads_.emplace_back([this] {
      for (;;) {
        try {
          ioc_.run();
          return;
        } catch (const std::exception&) {
          // A handler threw (bad_alloc): keep serving the other connections.
        }
      }
    });
  }
}

void HttpServer::Impl::Stop() {
  if (stopped_) return;
  stopped_ = true;
  stopping_ = true;
  net::post(acceptor_.get_executor(), [this] {
    beast::error_code ec;
    acceptor_.close(ec);
    retry_timer_.cancel();
  });
  // Take references under the lock but close (and possibly drop the last reference, whose
  // destructor unregisters under the same lock) outside it.
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard lock(sessions_mu_);
    for (Session* s : sessions_) {
      if (auto session = s->weak_from_this().lock()) live.push_back(std::move(session));
    }
  }
  std::vector<std::future<void>> closes;
  for (const auto& session : live) closes.push_back(session->CloseFromOutside());
  live.clear();
  // The closes must run before the io_context stops: a close it dropped would leave the client's
  // connection open until the server is destroyed, and the session's job unaware that its client
  // is gone. (Without the work guard the io threads could also return as soon as the acceptor
  // closed, with a close still queued: ApiServerTest.StopEndsRunningGenerations hung in ~2% of
  // runs that way.)
  for (std::future<void>& closed : closes) closed.wait();
  pool_.Stop();  // jobs see client_gone() and return; their writes fail fast
  work_.reset();
  ioc_.stop();
  for (std::thread& t : io_threads_) {
    if (t.joinable()) t.join();
  }
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                              HttpHandler& handler) {
  if (options.io_threads < 1 || options.worker_threads < 1 || options.max_queued_jobs < 0 ||
      options.max_jobs_per_client < 0 || options.max_connections < 1 ||
      options.max_connections_per_client < 1 || options.max_header_bytes < 256) {
    return absl::InvalidArgumentError("HttpServerOptions: thread counts and limits must be >= 1");
  }
  if (options.max_connections_per_client > options.max_connections) {
    return absl::InvalidArgumentError(
        "the connections per client must not exceed the connections in all: one client could "
        "take them all");
  }
  auto impl = std::make_unique<Impl>(options, handler);
  absl::Status st = impl->Listen();
  if (!st.ok()) return st;
  impl->Run();
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

std::string ClientKey(const std::string& address) {
  beast::error_code ec;
  net::ip::address a = net::ip::make_address(address, ec);
  if (ec) return "";
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6()).to_string();
  }
  if (a.is_v4()) return a.to_string();
  net::ip::address_v6::bytes_type bytes = a.to_v6().to_bytes();
  std::fill(bytes.begin() + 8, bytes.end(), 0);
  return net::ip::address_v6(bytes).to_string() + "/64";
}

bool IsLoopbackAddress(const std::string& address) {
  beast::error_code ec;
  const net::ip::address a = net::ip::make_address(address, ec);
  return !ec && a.is_loopback();
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpServer::~HttpServer() { Stop(); }
void HttpServer::Stop() { impl_->Stop(); }
uint16_t HttpServer::port() const { return impl_->port(); }
int HttpServer::open_connections() const { return impl_->open_connections(); }
int HttpServer::running_jobs() const { return impl_->pool().busy(); }

}  // namespace swarm::gateway
