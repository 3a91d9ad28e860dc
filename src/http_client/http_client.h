// HttpClient: the one libcurl layer of the external consumers (archive to S3,
// clickhouse, webhook). Connection reuse through a pool of easy handles,
// connect and total timeouts, TLS verification on for https, bounded response
// bodies and headers, optional AWS SigV4 signing (libcurl 7.88 workarounds
// applied, see s3_client.h). Thread-safe: any thread may call Send at any time.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace sluice {

class Metrics;
class Counter;

struct HttpClientOptions {
  int64_t connect_timeout_ms = 5000;     // TCP+TLS handshake; default 5 s; REQUIRES: > 0
  int64_t timeout_ms = 30000;            // whole request; default 30 s; REQUIRES: > 0
  int64_t max_response_bytes = 1 << 20;  // body kept, rest discarded (truncated=true); 1 MiB
  int32_t max_response_headers = 100;    // header lines kept per response; extra ones dropped
  bool verify_tls = true;                // verify peer + host name for https; default true
  int32_t max_idle_handles = 16;         // pooled easy handles (each keeps its connections)
  std::string user_agent = "sluice/0.1";
};

// AWS Signature V4 credentials for one request.
struct SigV4 {
  std::string region;  // e.g. "us-east-1"; REQUIRES: non-empty
  std::string service = "s3";
  std::string access_key;  // REQUIRES: non-empty
  std::string secret_key;  // REQUIRES: non-empty
};

struct ClientRequest {
  std::string method = "GET";                                // GET, HEAD, POST, PUT, DELETE
  std::string url;                                           // REQUIRES: http:// or https://
  std::vector<std::pair<std::string, std::string>> headers;  // sent as "Name: value"
  std::string_view body;                                     // not copied; must outlive Send
  std::string user;                                          // HTTP basic auth when non-empty
  std::string password;
  std::optional<SigV4> sigv4;    // sign with AWS SigV4 (sets x-amz-content-sha256 itself)
  int64_t timeout_ms = 0;        // 0 = options.timeout_ms
  int64_t deadline_mono_ms = 0;  // deadline on the client's clock (MonoMs); 0 = none
};

struct ClientResponse {
  int64_t status = 0;      // HTTP status code
  std::string body;        // at most max_response_bytes
  bool truncated = false;  // body was longer than max_response_bytes
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased

  // The last header named `name` (lower-case), or nullptr.
  const std::string* Header(std::string_view name) const;
};

class HttpClient {
 public:
  // `metrics` may be null; `name` labels the metrics (consumer name).
  // `clock` (REQUIRES: outlives the client) is what request deadlines
  // (ClientRequest::deadline_mono_ms) are read against.
  HttpClient(HttpClientOptions options, Metrics* metrics, const std::string& name,
             Clock* clock = &Clock::Real());
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Performs one request. Transport failures (connect, timeout, reset) and a
  // deadline already passed are kUnavailable; any HTTP status, even 500, is a
  // Result with that status. The total timeout is cut to the deadline.
  Result<ClientResponse> Send(const ClientRequest& request);

  const HttpClientOptions& options() const { return options_; }

 private:
  struct Handle;
  std::unique_ptr<Handle> Take();
  void Give(std::unique_ptr<Handle> h);

  // Constant after construction.
  const HttpClientOptions options_;
  Clock* const clock_;
  Counter* requests_ = nullptr;
  Counter* transport_errors_ = nullptr;
  Counter* truncated_ = nullptr;

  std::mutex mu_;
  std::vector<std::unique_ptr<Handle>> idle_;  // GUARDED_BY(mu_)
};

// A received header line's value (after the ':'): without the line break and
// the spaces/tabs around it.
std::string_view HeaderValue(std::string_view raw);

// Lower-case hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);

// Retry-After: delta-seconds or an HTTP-date, as milliseconds from `now_epoch_ms`
// (>= 0). nullopt when malformed.
std::optional<int64_t> ParseRetryAfterMs(std::string_view value, int64_t now_epoch_ms);

// S3 canonical URI encoding: keeps A-Za-z0-9 -_.~ and '/', %XX (upper-case) the rest.
std::string UriEncodePath(std::string_view s);
// RFC 3986 encoding of a query value: like UriEncodePath but '/' is encoded too.
std::string UriEncode(std::string_view s);

}  // namespace sluice
