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
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/metrics.h"
#include "common/status.h"
#include "config/config.h"

namespace sluice {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // raw request target, path + "?" + query
  std::string path;    // percent-decoded path, no query
  std::string query;   // raw query, "" when none
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;                                          // as received (not gunzipped)
  std::string remote_addr;
  bool remote_is_loopback = false;

  // First header with this lower-case name, "" when absent.
  std::string_view Header(std::string_view lower_name) const;
  // Value of query parameter `key` (percent-decoded, '+' as space), nullopt when absent.
  std::optional<std::string> QueryParam(std::string_view key) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

using Responder = std::function<void(HttpResponse)>;
// A handler must call `respond` exactly once, now or later, from any thread.
using Handler = std::function<void(const HttpRequest&, Responder respond)>;

class HttpServer {
 public:
  HttpServer(ServerOptions options, IngestOptions limits, Metrics* metrics);
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
