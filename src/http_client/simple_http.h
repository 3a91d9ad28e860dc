// SimpleHttp: one blocking HTTP request over libcurl, for the CLI (`sluice
// send`) and the tests' process harness. Not for hot paths: a new connection
// per call. Thread-safe (no shared state besides curl's global init).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace sluice {

struct SimpleHttpResponse {
  int status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string Header(const std::string& lower_name) const;
};

struct SimpleHttpRequest {
  std::string method = "GET";
  std::string url;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  int64_t timeout_ms = 30000;             // whole request; default 30 s
  int64_t max_response_bytes = 64 << 20;  // larger bodies are an error; default 64 MiB
};

// Unavailable when the connection fails or times out; any HTTP status is Ok.
Result<SimpleHttpResponse> SimpleHttp(const SimpleHttpRequest& req);

}  // namespace sluice
