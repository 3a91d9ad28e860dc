// HttpServer: the HTTP/1.1 front door on Boost.Beast/Asio.
//
// Keep-alive, bounded everything: header bytes, body bytes, whole-request
// read time, idle time, connection count. Routes are registered before
// Start(); a handler gets the whole request and answers through `respond`,
// which may be called later from any thread (ingest answers after its group
// commit). Thread-safe after Start().
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/metrics.h"
#include "common/status.h"

namespace sluice {

struct ServerOptions {
  std::string listen = "127.0.0.1:8080";  // HOST:PORT; port 0 picks a free port
  int32_t threads = 2;                    // I/O threads, >= 1
  int64_t read_timeout_ms = 30000;        // whole request (headers+body) must arrive within this
  int64_t idle_timeout_ms = 60000;        // keep-alive connection idle limit
  int32_t max_connections = 4096;         // further connections are closed at accept
  int32_t max_header_bytes = 16384;       // request line + headers
  // Without write keys the server accepts any event; it then refuses to listen
  // beyond loopback unless this is true.
  bool allow_public_without_auth = false;
};

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // raw request target, path + "?" + query
  std::string path;    // percent-decoded path, no query
  std::string query;   // raw query, "" when none
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;                                          // as received (not gunzipped)
  std::string remote_addr;
  bool remote_is_loopback = false;

  // First header with this lower-case name, "" when absent. (Inline: the
  // fuzz targets link http_util.cc without the server.)
  std::string_view Header(std::string_view lower_name) const {
    for (const auto& [k, v] : headers) {
      if (k == lower_name) return v;
    }
    return {};
  }
};

// The sink of a streamed response (HttpResponse::stream), e.g. Server-Sent
// Events. At most one chunk is in flight per stream, so a slow client costs
// one chunk of memory. Thread-safe; may outlive the connection and the server
// (then every call is a no-op answering kClosed).
class ResponseStream {
 public:
  enum class WriteResult {
    kQueued,  // handed to the connection
    kBusy,    // the previous chunk is still being written; nothing queued, try later
    kClosed,  // the client went away, the server is stopping, or End() was called
  };
  virtual ~ResponseStream() = default;
  virtual WriteResult Write(std::string chunk) = 0;
  // Ends the response after the chunk in flight; the connection then closes.
  virtual void End() = 0;
  virtual bool closed() const = 0;
};
using ResponseStreamPtr = std::shared_ptr<ResponseStream>;

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  // When set, the response is streamed: the server sends the status and
  // headers (chunked transfer coding, then the connection closes) and `body`
  // as the first chunk, then calls `stream` once, on an I/O thread, with the
  // sink to write the rest to. It must not block. A streamed response stops
  // counting as in flight once its head is written: HttpServer::Stop closes
  // it rather than waiting for it.
  std::function<void(ResponseStreamPtr)> stream{};
};

using Responder = std::function<void(HttpResponse)>;
// A handler must call `respond` exactly once, now or later, from any thread.
using Handler = std::function<void(const HttpRequest&, Responder respond)>;

class HttpServer {
 public:
  // `max_body_bytes`: the largest request body read, compressed or not; 413
  // above ([ingest] max_body_bytes). REQUIRES: > 0.
  HttpServer(ServerOptions options, int64_t max_body_bytes, Metrics* metrics);
  ~HttpServer();

  // Exact path match for `method` ("*" = any method). Later matches win over
  // none; a prefix route ends with '/' + '*' (e.g. "/v1/users/*").
  void Route(std::string method, std::string path, Handler handler);
  // Called for requests no route matched (formats route by path + body); 404 when unset.
  void Fallback(Handler handler);

  // Binds and starts the I/O threads. Returns the bound port (for port 0).
  Result<int> Start();
  // Stops accepting, closes idle connections, waits up to `grace_ms` for
  // in-flight requests, then stops the I/O threads.
  void Stop(int64_t grace_ms);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice
