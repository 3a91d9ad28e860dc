#include "http/http_server.h"

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "common/clock.h"
#include "common/http_status.h"
#include "common/strings.h"
#include "http/http_util.h"

namespace sluice {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;

namespace {

// Bytes an error reply is allowed to drain from a client still sending, so the
// client reads our status instead of a reset (bounded in bytes and time).
constexpr size_t kMaxDrainBytes = 1 << 20;
constexpr int64_t kDrainTimeoutMs = 1000;

}  // namespace

class Session;

// Shared between the server and every Responder it hands out: a Responder that
// outlives the server (or its connection) must become a no-op instead of
// touching a destroyed io_context.
struct Gate {
  std::mutex mu;
  bool alive = true;  // GUARDED_BY(mu)
};

// The ResponseStream a streamed response hands out. Its state lives here,
// under its own mutex, so Write can answer from any thread; the bytes go to
// the session's strand.
class StreamSink final : public ResponseStream {
 public:
  StreamSink(std::weak_ptr<Session> session, std::shared_ptr<Gate> gate)
      : session_(std::move(session)), gate_(std::move(gate)) {}

  WriteResult Write(std::string chunk) override;
  void End() override;
  bool closed() const override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return true;
    }
    std::lock_guard<std::mutex> gate_lock(gate_->mu);
    return !gate_->alive;  // the server stopped
  }

  // Called on the session's strand.
  void MarkIdle() {
    std::lock_guard<std::mutex> lock(mu_);
    busy_ = false;
  }
  void MarkBusy() {
    std::lock_guard<std::mutex> lock(mu_);
    busy_ = true;
  }
  void MarkClosed() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }

 private:
  // Posts `fn(session)` to the session's strand; false when it is gone.
  bool Post(std::function<void(const std::shared_ptr<Session>&)> fn);

  const std::weak_ptr<Session> session_;
  const std::shared_ptr<Gate> gate_;
  mutable std::mutex mu_;
  bool busy_ = false;    // GUARDED_BY(mu_): a chunk is being written
  bool closed_ = false;  // GUARDED_BY(mu_)
};

struct ServerCore {
  struct RouteEntry {
    std::string method;
    std::string path;  // without the trailing "*" for prefix routes
    bool prefix = false;
    Handler handler;
  };

  ServerCore(ServerOptions o, int64_t max_body, Metrics* m)
      : options(std::move(o)), max_body_bytes(max_body), metrics(m) {
    for (auto& c : by_code) c.store(nullptr);
  }

  // Constant after construction.
  const ServerOptions options;
  const int64_t max_body_bytes;  // compressed or not; 413 above
  Metrics* const metrics;

  // Constant after Start().
  std::vector<RouteEntry> routes;
  Handler fallback;

  std::optional<tcp::acceptor> acceptor;  // reset by Stop(), before ioc goes
  std::vector<std::thread> threads;
  std::shared_ptr<Gate> gate = std::make_shared<Gate>();
  std::atomic<bool> stopping{false};
  bool started = false;
  bool stopped = false;

  std::atomic<int64_t> connections{0};
  // Requests read whose answer is not written yet: counted from the handler
  // call until the response's write completes (or fails), so a graceful Stop
  // also waits for answers still being written, not only for handlers.
  std::atomic<int64_t> in_flight{0};

  std::mutex sessions_mu;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;  // GUARDED_BY(sessions_mu)

  std::array<std::atomic<Counter*>, 600> by_code;

  // Declared after the members above so it is destroyed before them:
  // destroying it destroys the pending handlers, hence the sessions, which
  // still use those members.
  net::io_context ioc;
  // Keeps ioc.run() going while no I/O is pending: once Stop closed the
  // acceptor and the idle connections, a request still being handled (its
  // answer comes later from another thread, e.g. after a group commit) has no
  // pending operation, and without this the I/O threads would return before
  // its answer could be written. Created by Start, reset by Stop right before
  // ioc.stop(). Declared after ioc: released before ioc is destroyed.
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;

  void CountStatus(int code) {
    if (metrics == nullptr) return;
    if (code < 100 || code >= 600) code = HttpStatusFor(Code::kInternal);
    Counter* c = by_code[code].load(std::memory_order_acquire);
    if (c == nullptr) {
      c = &metrics->GetCounter("sluice_http_requests_total", "HTTP responses by status code.",
                               Labels({{"code", std::to_string(code)}}));
      by_code[code].store(c, std::memory_order_release);
    }
    c->Inc();
  }
  void CountRejected(const char* reason) {
    if (metrics == nullptr) return;
    metrics
        ->GetCounter("sluice_http_rejected_total",
                     "HTTP requests/connections refused by a limit, by reason.",
                     Labels({{"reason", reason}}))
        .Inc();
  }

  const Handler* FindRoute(const std::string& method, const std::string& path,
                           bool* path_known) const {
    const Handler* best = nullptr;
    size_t best_len = 0;
    for (const auto& r : routes) {
      const bool method_ok = r.method == "*" || r.method == method;
      if (!r.prefix) {
        if (r.path == path) {
          *path_known = true;
          if (method_ok) return &r.handler;
        }
      } else if (path.size() >= r.path.size() && path.compare(0, r.path.size(), r.path) == 0) {
        *path_known = true;
        if (method_ok && r.path.size() >= best_len) {
          best = &r.handler;
          best_len = r.path.size();
        }
      }
    }
    return best;
  }

  void DoAccept();
};

// One connection. Confined to its strand (every member below is touched only
// from the strand), except `hold` which the server clears after its threads stop.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, ServerCore* server) : stream_(std::move(socket)), server_(server) {
    server_->connections.fetch_add(1);
    beast::error_code ec;
    const auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec) {
      auto addr = ep.address();
      if (addr.is_v6() && addr.to_v6().is_v4_mapped()) {
        addr = net::ip::make_address_v4(net::ip::v4_mapped, addr.to_v6());
      }
      remote_addr_ = addr.to_string();
      loopback_ = addr.is_loopback();
    }
  }

  ~Session() {
    server_->connections.fetch_sub(1);
    std::lock_guard<std::mutex> lock(server_->sessions_mu);
    server_->sessions.erase(this);
  }

  void Begin() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->WaitForRequest(); });
  }

  // Closes the connection when it is between requests (server stopping).
  void CloseIfIdle() {
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      if (self->state_ == State::kIdle || self->state_ == State::kStreaming) {
        beast::error_code ec;
        self->stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
        self->stream_.cancel();
      }
    });
  }

  // Closes the socket at once. REQUIRES: the I/O threads are stopped.
  void ForceCloseStopped() {
    if (sink_) sink_->MarkClosed();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }

  // Cleared by the server after its I/O threads stopped, so that a request
  // whose answer never came does not keep this session (and its socket) alive.
  std::shared_ptr<Session> hold;

 private:
  enum class State { kIdle, kReading, kHandling, kWriting, kStreaming, kClosing };

  // Between requests: wait up to idle_timeout for the first byte, then the
  // whole request must arrive within read_timeout (slowloris is closed).
  void WaitForRequest() {
    state_ = State::kIdle;
    if (server_->stopping.load()) return Close();
    if (buffer_.size() > 0) return ReadHeader();
    stream_.expires_after(std::chrono::milliseconds(server_->options.idle_timeout_ms));
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              if (ec) return self->Close();
                              self->buffer_.commit(n);
                              self->ReadHeader();
                            });
  }

  void ReadHeader() {
    state_ = State::kReading;
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(std::max(1024, server_->options.max_header_bytes)));
    parser_->body_limit(
        static_cast<uint64_t>(std::max<int64_t>(0, server_->max_body_bytes)));
    stream_.expires_after(std::chrono::milliseconds(server_->options.read_timeout_ms));
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  bool HandleReadError(beast::error_code ec) {
    if (!ec) return false;
    if (ec == http::error::header_limit) {
      server_->CountRejected("header_too_large");
      Reject(kHttpHeaderFieldsTooLarge, "request header fields too large");
    } else if (ec == http::error::body_limit) {
      server_->CountRejected("body_too_large");
      Reject(HttpStatusFor(Code::kTooLarge),
             "request body over " + std::to_string(server_->max_body_bytes) + " bytes");
    } else if (ec == beast::error::timeout) {
      server_->CountRejected("read_timeout");
      Close();
    } else if (ec == http::error::end_of_stream || ec == net::error::eof ||
               ec == net::error::connection_reset || ec == net::error::operation_aborted ||
               ec == http::error::partial_message) {
      Close();
    } else {
      server_->CountRejected("bad_request");
      Reject(HttpStatusFor(Code::kInvalidArgument), "malformed HTTP request");
    }
    return true;
  }

  void OnHeader(beast::error_code ec) {
    if (HandleReadError(ec)) return;
    auto& req = parser_->get();
    if (req.method() == http::verb::head || req.method() == http::verb::unknown ||
        req.method() == http::verb::connect || req.method() == http::verb::trace) {
      server_->CountRejected("method_not_allowed");
      return Reject(kHttpMethodNotAllowed, "method not allowed");
    }
    if (beast::iequals(req[http::field::expect], "100-continue") && !parser_->is_done()) {
      auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                     req.version());
      http::async_write(stream_, *cont,
                        [self = shared_from_this(), cont](beast::error_code ec2, size_t) {
                          if (ec2) return self->Close();
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRequest(ec); });
  }

  void OnRequest(beast::error_code ec) {
    if (HandleReadError(ec)) return;
    state_ = State::kHandling;
    stream_.expires_never();
    auto msg = parser_->release();
    parser_.reset();
    keep_alive_ = msg.keep_alive();
    version_ = msg.version();

    HttpRequest req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    const auto qpos = req.target.find('?');
    const std::string_view raw_path = std::string_view(req.target).substr(0, qpos);
    if (qpos != std::string::npos) req.query = req.target.substr(qpos + 1);
    auto path = PercentDecode(raw_path, {.plus_is_space = false, .strict = true});
    if (!path || raw_path.empty() || raw_path.front() != '/') {
      server_->CountRejected("bad_request");
      return Reject(HttpStatusFor(Code::kInvalidArgument), "malformed request target");
    }
    req.path = std::move(*path);
    req.headers.reserve(16);
    for (const auto& f : msg) {
      std::string name(f.name_string());
      ToLowerInPlace(&name);
      req.headers.emplace_back(std::move(name), std::string(f.value()));
    }
    req.body = std::move(msg.body());
    req.remote_addr = remote_addr_;
    req.remote_is_loopback = loopback_;

    bool path_known = false;
    const Handler* handler = server_->FindRoute(req.method, req.path, &path_known);
    if (handler == nullptr && server_->fallback) handler = &server_->fallback;
    if (handler == nullptr) {
      return Reject(path_known ? kHttpMethodNotAllowed : HttpStatusFor(Code::kNotFound),
                    path_known ? "method not allowed" : "not found", /*close=*/false);
    }

    server_->in_flight.fetch_add(1);
    hold = shared_from_this();
    answered_ = std::make_shared<std::atomic<bool>>(false);
    Responder respond = MakeResponder();
    try {
      (*handler)(req, respond);
    } catch (...) {
      // A handler bug must not take the server down; answer if it did not.
      HttpResponse r;
      r.status = HttpStatusFor(Code::kInternal);
      r.body = JsonErrorBody("internal error");
      respond(std::move(r));
    }
  }

  Responder MakeResponder() {
    std::weak_ptr<Session> weak = shared_from_this();
    std::shared_ptr<Gate> gate = server_->gate;
    std::shared_ptr<std::atomic<bool>> answered = answered_;
    return [weak, gate, answered](HttpResponse response) {
      if (answered->exchange(true)) return;  // a handler must answer once; ignore extras
      std::lock_guard<std::mutex> lock(gate->mu);
      if (!gate->alive) return;
      auto self = weak.lock();
      if (!self) return;
      net::post(self->stream_.get_executor(),
                [self, r = std::move(response)]() mutable { self->WriteResponse(std::move(r)); });
    };
  }

  void WriteResponse(HttpResponse r) {
    if (r.stream && version_ != 10) return StartStream(std::move(r));
    if (r.stream) {  // chunked coding needs HTTP/1.1
      r.stream = nullptr;
      r.status = kHttpVersionNotSupported;
      r.content_type = "application/json";
      r.body = JsonErrorBody("a streamed response needs HTTP/1.1");
    }
    Send(std::move(r), keep_alive_ && !server_->stopping.load(), /*drain=*/false,
         /*release_in_flight=*/true);
  }

 public:
  // Streamed responses (on the strand). The head goes out with chunked
  // transfer coding and Connection: close; each Write is one chunk. A read
  // stays posted meanwhile, so a client that goes away is noticed at once.
  void StartStream(HttpResponse r) {
    state_ = State::kStreaming;
    server_->CountStatus(r.status);
    auto res = std::make_shared<http::response<http::empty_body>>();
    res->version(version_ == 10 ? 10 : 11);
    res->result(static_cast<unsigned>(r.status));
    res->set(http::field::server, "sluice");
    res->set(http::field::content_type, r.content_type);
    for (const auto& [k, v] : r.headers) res->insert(k, v);
    res->keep_alive(false);
    res->chunked(true);
    auto sr = std::make_shared<http::response_serializer<http::empty_body>>(*res);
    sink_ = std::make_shared<StreamSink>(weak_from_this(), server_->gate);
    auto first = std::make_shared<std::string>(std::move(r.body));
    auto on_open = std::move(r.stream);
    stream_.expires_after(std::chrono::milliseconds(server_->options.read_timeout_ms));
    http::async_write_header(
        stream_, *sr,
        [self = shared_from_this(), res, sr, first, on_open = std::move(on_open)](
            beast::error_code ec, size_t) mutable {
          self->server_->in_flight.fetch_sub(1);
          self->stream_.expires_never();
          if (ec) return self->Close();
          self->WatchStreamPeer();
          if (!first->empty()) {
            self->sink_->MarkBusy();
            self->WriteChunk(first, /*last=*/false);
          }
          try {
            on_open(self->sink_);
          } catch (...) {
            // A stream that could not start ends here; nothing else to answer.
            self->EndStream();
          }
        });
  }

  // Writes one chunk (`last`: the terminating chunk, then close). One write
  // at a time: the sink stays busy until this one is done.
  void WriteChunk(std::shared_ptr<std::string> data, bool last) {
    if (state_ != State::kStreaming) {
      if (sink_) sink_->MarkClosed();
      return;
    }
    chunk_writing_ = true;
    stream_.expires_after(std::chrono::milliseconds(server_->options.read_timeout_ms));
    auto done = [self = shared_from_this(), data, last](beast::error_code ec, size_t) {
      self->chunk_writing_ = false;
      self->stream_.expires_never();
      if (ec || last) return self->Close();
      if (self->end_after_write_) {
        self->end_after_write_ = false;
        return self->WriteChunk(std::make_shared<std::string>(), /*last=*/true);
      }
      if (self->sink_) self->sink_->MarkIdle();
    };
    if (last) {
      net::async_write(stream_, http::make_chunk_last(), std::move(done));
    } else {
      net::async_write(stream_, http::make_chunk(net::buffer(*data)), std::move(done));
    }
  }

  void EndStream() {
    if (state_ != State::kStreaming) return;
    if (chunk_writing_) {
      end_after_write_ = true;
      return;
    }
    WriteChunk(std::make_shared<std::string>(), /*last=*/true);
  }

  net::any_io_executor executor() { return stream_.get_executor(); }

 private:
  // The client of a stream sends nothing more; any read completing with an
  // error (EOF, reset, cancelled by Stop) ends the stream. Bytes it does send
  // are discarded.
  void WatchStreamPeer() {
    stream_.socket().async_read_some(net::buffer(scratch_),
                                     [self = shared_from_this()](beast::error_code ec, size_t) {
                                       if (ec) return self->Close();
                                       if (self->state_ == State::kStreaming) {
                                         self->WatchStreamPeer();
                                       }
                                     });
  }

  // Answers with a JSON error; `close` (the default) ends the connection after
  // the answer, draining what the client still sends so it reads the status.
  void Reject(int status, const std::string& message, bool close = true) {
    HttpResponse r;
    r.status = status;
    r.body = JsonErrorBody(message);
    if (parser_) version_ = parser_->get().version() ? parser_->get().version() : 11;
    parser_.reset();
    Send(std::move(r), !close && keep_alive_ && !server_->stopping.load(), close);
  }

  // `release_in_flight`: this answers a request counted in in_flight, which is
  // released only once the write completed (an acknowledgement handed to the
  // socket, or a dead connection), so Stop does not cut it off mid-write.
  void Send(HttpResponse r, bool keep_alive, bool drain = false, bool release_in_flight = false) {
    state_ = State::kWriting;
    server_->CountStatus(r.status);
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(version_ == 10 ? 10 : 11);
    res->result(static_cast<unsigned>(r.status));
    res->set(http::field::server, "sluice");
    res->set(http::field::content_type, r.content_type);
    for (const auto& [k, v] : r.headers) res->insert(k, v);
    res->body() = std::move(r.body);
    res->keep_alive(keep_alive);
    res->prepare_payload();
    stream_.expires_after(std::chrono::milliseconds(server_->options.read_timeout_ms));
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res, keep_alive, drain, release_in_flight](
                          beast::error_code ec, size_t) {
                        if (release_in_flight) self->server_->in_flight.fetch_sub(1);
                        self->hold.reset();
                        if (ec) return self->Close();
                        if (keep_alive) return self->WaitForRequest();
                        if (drain) return self->Drain();
                        self->Close();
                      });
  }

  void Drain() {
    state_ = State::kClosing;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    buffer_.clear();
    stream_.expires_after(std::chrono::milliseconds(kDrainTimeoutMs));
    DrainSome();
  }

  void DrainSome() {
    stream_.async_read_some(net::buffer(scratch_),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              self->drained_ += n;
                              if (ec || self->drained_ > kMaxDrainBytes) return self->Close();
                              self->DrainSome();
                            });
  }

  void Close() {
    state_ = State::kClosing;
    if (sink_) sink_->MarkClosed();
    hold.reset();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }

  beast::tcp_stream stream_;
  ServerCore* const server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<std::atomic<bool>> answered_;
  State state_ = State::kIdle;
  bool keep_alive_ = true;
  unsigned version_ = 11;
  std::string remote_addr_;
  bool loopback_ = false;
  size_t drained_ = 0;
  std::array<char, 16384> scratch_;
  std::shared_ptr<StreamSink> sink_;  // a streamed response's sink, once started
  bool chunk_writing_ = false;        // a chunk write is pending
  bool end_after_write_ = false;      // End() came while a chunk was being written
};

bool StreamSink::Post(std::function<void(const std::shared_ptr<Session>&)> fn) {
  std::lock_guard<std::mutex> gate_lock(gate_->mu);
  if (!gate_->alive) return false;
  std::shared_ptr<Session> self = session_.lock();
  if (!self) return false;
  net::post(self->executor(), [self, fn = std::move(fn)] { fn(self); });
  return true;
}

ResponseStream::WriteResult StreamSink::Write(std::string chunk) {
  if (closed()) return WriteResult::kClosed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return WriteResult::kClosed;
    if (busy_) return WriteResult::kBusy;
    busy_ = true;
  }
  if (chunk.empty()) {  // an empty chunk would end the response
    MarkIdle();
    return WriteResult::kQueued;
  }
  auto data = std::make_shared<std::string>(std::move(chunk));
  if (!Post([data](const std::shared_ptr<Session>& s) { s->WriteChunk(data, /*last=*/false); })) {
    MarkClosed();
    return WriteResult::kClosed;
  }
  return WriteResult::kQueued;
}

void StreamSink::End() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
  }
  (void)Post([](const std::shared_ptr<Session>& s) { s->EndStream(); });
}

void ServerCore::DoAccept() {
  acceptor->async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor || !acceptor->is_open()) return;
    if (!ec) {
      if (stopping.load()) {
        beast::error_code ignored;
        socket.close(ignored);
      } else if (connections.load() >= options.max_connections) {
        CountRejected("max_connections");
        beast::error_code ignored;
        socket.close(ignored);
      } else {
        auto session = std::make_shared<Session>(std::move(socket), this);
        {
          std::lock_guard<std::mutex> lock(sessions_mu);
          sessions[session.get()] = session;
        }
        session->Begin();
      }
    }
    // Accept errors (EMFILE...) are transient: keep accepting.
    DoAccept();
  });
}

struct HttpServer::Impl : ServerCore {
  using ServerCore::ServerCore;
};

HttpServer::HttpServer(ServerOptions options, int64_t max_body_bytes, Metrics* metrics)
    : impl_(std::make_unique<Impl>(std::move(options), max_body_bytes, metrics)) {}

HttpServer::~HttpServer() {
  if (impl_->started && !impl_->stopped) Stop(0);
  {
    std::lock_guard<std::mutex> lock(impl_->gate->mu);
    impl_->gate->alive = false;
  }
}

void HttpServer::Route(std::string method, std::string path, Handler handler) {
  ServerCore::RouteEntry e;
  e.method = std::move(method);
  if (path.size() >= 2 && path.compare(path.size() - 2, 2, "/*") == 0) {
    e.prefix = true;
    path.pop_back();
  }
  e.path = std::move(path);
  e.handler = std::move(handler);
  impl_->routes.push_back(std::move(e));
}

void HttpServer::Fallback(Handler handler) { impl_->fallback = std::move(handler); }

Result<int> HttpServer::Start() {
  if (impl_->started) return Status::Internal("server already started");
  std::string host;
  int port = 0;
  SLUICE_RETURN_IF_ERROR(SplitHostPort(impl_->options.listen, &host, &port));
  beast::error_code ec;
  tcp::resolver resolver(impl_->ioc);
  auto results = resolver.resolve(host, std::to_string(port),
                                  tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) {
    return Status::InvalidArgument("listen: cannot resolve '" + impl_->options.listen +
                                   "': " + ec.message());
  }
  const tcp::endpoint ep = results.begin()->endpoint();
  impl_->acceptor.emplace(net::make_strand(impl_->ioc));
  impl_->acceptor->open(ep.protocol(), ec);
  if (!ec) impl_->acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor->bind(ep, ec);
  if (!ec) impl_->acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    impl_->acceptor.reset();
    return Status::Unavailable("listen on " + impl_->options.listen + ": " + ec.message());
  }
  const int bound = impl_->acceptor->local_endpoint().port();
  impl_->started = true;
  impl_->work.emplace(impl_->ioc.get_executor());
  impl_->DoAccept();
  const int n = std::max(1, impl_->options.threads);
  for (int i = 0; i < n; ++i) {
    impl_->threads.emplace_back([this] {
      for (;;) {
        try {
          impl_->ioc.run();
          return;
        } catch (...) {
          // A throwing completion handler must not kill the I/O thread; the
          // handlers themselves catch at the boundary, this is a last resort.
        }
      }
    });
  }
  return bound;
}

void HttpServer::Stop(int64_t grace_ms) {
  Impl& s = *impl_;
  if (!s.started || s.stopped) return;
  s.stopping.store(true);
  net::post(s.acceptor->get_executor(), [&s] {
    beast::error_code ec;
    s.acceptor->close(ec);
  });
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard<std::mutex> lock(s.sessions_mu);
    for (auto& [p, w] : s.sessions) {
      if (auto sp = w.lock()) live.push_back(std::move(sp));
    }
  }
  for (auto& sp : live) sp->CloseIfIdle();
  live.clear();
  Clock& clock = Clock::Real();
  const int64_t deadline = clock.MonoMs() + grace_ms;
  while (s.in_flight.load() > 0 && clock.MonoMs() < deadline) clock.SleepMs(5);
  s.work.reset();
  s.ioc.stop();
  for (auto& t : s.threads) t.join();
  s.threads.clear();
  s.stopped = true;
  {
    std::lock_guard<std::mutex> lock(s.gate->mu);
    s.gate->alive = false;
  }
  {
    std::lock_guard<std::mutex> lock(s.sessions_mu);
    for (auto& [p, w] : s.sessions) {
      if (auto sp = w.lock()) live.push_back(std::move(sp));
    }
  }
  // Connections still open (in-flight past the grace, or idle ones whose
  // close was queued after the loop stopped) are closed here, threads gone.
  for (auto& sp : live) {
    sp->ForceCloseStopped();
    sp->hold.reset();
  }
  live.clear();
  s.acceptor.reset();
}

}  // namespace sluice
