#include "http_client/simple_http.h"

#include <curl/curl.h>

#include <algorithm>
#include <mutex>

#include "common/strings.h"
#include "http_client/http_client.h"

namespace sluice {
namespace {

struct Sink {
  std::string* body;
  int64_t max_bytes;
  bool overflow = false;
};

size_t OnBody(char* ptr, size_t size, size_t nmemb, void* user) {
  auto* sink = static_cast<Sink*>(user);
  const size_t n = size * nmemb;
  if (static_cast<int64_t>(sink->body->size() + n) > sink->max_bytes) {
    sink->overflow = true;
    return 0;  // aborts the transfer
  }
  sink->body->append(ptr, n);
  return n;
}

size_t OnHeader(char* ptr, size_t size, size_t nmemb, void* user) {
  auto* headers = static_cast<std::vector<std::pair<std::string, std::string>>*>(user);
  const size_t n = size * nmemb;
  const std::string_view line(ptr, n);
  const size_t colon = line.find(':');
  if (colon != std::string_view::npos && headers->size() < 200) {
    headers->emplace_back(ToLower(line.substr(0, colon)),
                          std::string(HeaderValue(line.substr(colon + 1))));
  } else if (line.starts_with("HTTP/")) {
    headers->clear();  // a new response (after 100-continue or a redirect)
  }
  return n;
}

}  // namespace

std::string SimpleHttpResponse::Header(const std::string& lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) return v;
  }
  return {};
}

Result<SimpleHttpResponse> SimpleHttp(const SimpleHttpRequest& req) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });

  CURL* curl = curl_easy_init();
  if (curl == nullptr) return Status::Internal("curl_easy_init failed");
  SimpleHttpResponse resp;
  Sink sink{&resp.body, req.max_response_bytes};
  curl_slist* headers = nullptr;
  for (const auto& [k, v] : req.headers)
    headers = curl_slist_append(headers, (k + ": " + v).c_str());
  // No "Expect: 100-continue" round trip for larger bodies.
  headers = curl_slist_append(headers, "Expect:");

  curl_easy_setopt(curl, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(req.timeout_ms));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::min<int64_t>(req.timeout_ms, 10000)));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &resp.headers);
  if (req.method == "HEAD") curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  if (!req.body.empty() || req.method == "POST" || req.method == "PUT") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  }
  const CURLcode rc = curl_easy_perform(curl);
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (sink.overflow) {
    return Status::TooLarge("response body over " + std::to_string(req.max_response_bytes) +
                            " bytes");
  }
  if (rc != CURLE_OK) {
    return Status::Unavailable(req.method + " " + req.url + ": " + curl_easy_strerror(rc));
  }
  resp.status = static_cast<int>(code);
  return resp;
}

}  // namespace sluice
