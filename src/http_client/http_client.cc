#include "http_client/http_client.h"

#include <curl/curl.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>

#include "common/metrics.h"
#include "common/strings.h"

namespace sluice {
namespace {

// curl_global_init is not thread-safe in 7.88: run it once, before any handle.
void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
  ClientResponse* resp;
  int64_t max_body;
  int32_t max_headers;
};

size_t OnBody(char* data, size_t size, size_t n, void* ud) {
  auto* t = static_cast<Transfer*>(ud);
  const size_t len = size * n;
  // Keep reading past the limit (the connection stays reusable) but drop the
  // bytes: the total timeout bounds the time, max_body the memory.
  const auto room = static_cast<size_t>(
      std::max<int64_t>(0, t->max_body - static_cast<int64_t>(t->resp->body.size())));
  if (len > room) t->resp->truncated = true;
  t->resp->body.append(data, std::min(len, room));
  return len;
}

size_t OnHeader(char* data, size_t size, size_t n, void* ud) {
  auto* t = static_cast<Transfer*>(ud);
  const size_t len = size * n;
  std::string_view line(data, len);
  if (line.starts_with("HTTP/")) {
    // A new response begins (after 100 Continue or a proxy CONNECT): forget
    // the previous one's headers.
    t->resp->headers.clear();
    return len;
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos ||
      t->resp->headers.size() >= static_cast<size_t>(t->max_headers)) {
    return len;
  }
  t->resp->headers.emplace_back(ToLower(line.substr(0, colon)),
                                std::string(HeaderValue(line.substr(colon + 1))));
  return len;
}

bool HasHeader(const ClientRequest& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (EqualsNoCase(k, name)) return true;
  }
  return false;
}

std::string Encode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() + 8);
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (keep_slash && c == '/')) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

}  // namespace

struct HttpClient::Handle {
  Handle() : curl(curl_easy_init()) {}
  ~Handle() {
    if (curl != nullptr) curl_easy_cleanup(curl);
  }
  CURL* curl;
};

const std::string* ClientResponse::Header(std::string_view name) const {
  const std::string* found = nullptr;
  for (const auto& [k, v] : headers) {
    if (k == name) found = &v;
  }
  return found;
}

HttpClient::HttpClient(HttpClientOptions options, Metrics* metrics, const std::string& name,
                       Clock* clock)
    : options_(std::move(options)), clock_(clock) {
  GlobalInitOnce();
  if (metrics != nullptr) {
    const std::string l = Labels({{"consumer", name}});
    requests_ = &metrics->GetCounter("sluice_consumer_http_requests_total",
                                     "HTTP requests sent by external consumers", l);
    transport_errors_ = &metrics->GetCounter(
        "sluice_consumer_http_transport_errors_total",
        "HTTP requests of external consumers that got no response (connect, timeout)", l);
    truncated_ = &metrics->GetCounter(
        "sluice_consumer_http_response_truncated_total",
        "HTTP responses whose body exceeded max_response_bytes (rest discarded)", l);
  }
}

HttpClient::~HttpClient() = default;

std::unique_ptr<HttpClient::Handle> HttpClient::Take() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      auto h = std::move(idle_.back());
      idle_.pop_back();
      return h;
    }
  }
  return std::make_unique<Handle>();
}

void HttpClient::Give(std::unique_ptr<Handle> h) {
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() < static_cast<size_t>(std::max(0, options_.max_idle_handles))) {
    idle_.push_back(std::move(h));
  }
}

Result<ClientResponse> HttpClient::Send(const ClientRequest& req) {
  if (!req.url.starts_with("http://") && !req.url.starts_with("https://")) {
    return Status::InvalidArgument("url must start with http:// or https://: " + req.url);
  }
  int64_t timeout = req.timeout_ms > 0 ? req.timeout_ms : options_.timeout_ms;
  if (req.deadline_mono_ms > 0) {
    const int64_t left = req.deadline_mono_ms - clock_->MonoMs();
    if (left <= 0) return Status::Unavailable("deadline passed before " + req.method);
    timeout = std::min(timeout, left);
  }
  std::unique_ptr<Handle> h = Take();
  if (h->curl == nullptr) return Status::Internal("curl_easy_init failed");
  CURL* c = h->curl;
  // reset keeps the live connections, DNS and TLS session caches of the handle.
  curl_easy_reset(c);

  ClientResponse resp;
  Transfer transfer{&resp, options_.max_response_bytes, options_.max_response_headers};
  curl_slist* headers = nullptr;
  std::string line;
  for (const auto& [k, v] : req.headers) {
    line = k + ": " + v;
    headers = curl_slist_append(headers, line.c_str());
  }
  const bool has_body = req.method == "POST" || req.method == "PUT";
  if (has_body && !HasHeader(req, "content-type")) {
    // Otherwise curl adds (unsigned) application/x-www-form-urlencoded.
    headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
  }
  if (req.sigv4) {
    // libcurl 7.88 neither adds x-amz-content-sha256 nor hashes the body
    // itself: it signs whatever value this header has. Never remove headers or
    // set X-Amz-Date here (7.88 signs removed headers, duplicates the date).
    line = "x-amz-content-sha256: " + Sha256Hex(req.body);
    headers = curl_slist_append(headers, line.c_str());
  } else {
    // No 100-continue round trip for large bodies (receivers that ignore it
    // would cost a 1 s stall). Not done for SigV4: 7.88 would sign "expect".
    headers = curl_slist_append(headers, "Expect:");
  }

  curl_easy_setopt(c, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout_ms));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout));
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, options_.verify_tls ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, options_.verify_tls ? 2L : 0L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, options_.user_agent.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &transfer);

  static const char kEmpty[] = "";
  const char* body_ptr = req.body.empty() ? kEmpty : req.body.data();
  if (req.method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else if (req.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else {
    if (has_body || !req.body.empty()) {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, body_ptr);
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
    }
    if (req.method != "POST") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }
  std::string provider;
  if (req.sigv4) {
    provider = "aws:amz:" + req.sigv4->region + ":" + req.sigv4->service;
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, provider.c_str());
    curl_easy_setopt(c, CURLOPT_USERNAME, req.sigv4->access_key.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, req.sigv4->secret_key.c_str());
  } else if (!req.user.empty()) {
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
    curl_easy_setopt(c, CURLOPT_USERNAME, req.user.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, req.password.c_str());
  }

  if (requests_ != nullptr) requests_->Inc();
  const CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  // Drop the pointers into this frame before the handle goes back to the pool.
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  curl_slist_free_all(headers);
  Give(std::move(h));
  if (rc != CURLE_OK) {
    if (transport_errors_ != nullptr) transport_errors_->Inc();
    std::string msg = req.method + " " + req.url + ": " + curl_easy_strerror(rc);
    if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL) {
      return Status::InvalidArgument(std::move(msg));
    }
    return Status::Unavailable(std::move(msg));
  }
  if (resp.truncated && truncated_ != nullptr) truncated_->Inc();
  resp.status = status;
  return resp;
}

std::string_view HeaderValue(std::string_view raw) {
  while (!raw.empty() && (raw.back() == '\r' || raw.back() == '\n')) raw.remove_suffix(1);
  return Trim(raw);
}

std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (unsigned i = 0; i < n; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

std::optional<int64_t> ParseRetryAfterMs(std::string_view value, int64_t now_epoch_ms) {
  value = Trim(value);
  if (value.empty()) return std::nullopt;
  if (std::isdigit(static_cast<unsigned char>(value.front()))) {
    int64_t s = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), s);
    if (ec != std::errc() || p != value.data() + value.size() || s > 365LL * 86400) {
      return std::nullopt;
    }
    return s * 1000;
  }
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
  std::tm tm{};
  const std::string s(value);
  const char* end = strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  const int64_t at_ms = static_cast<int64_t>(timegm(&tm)) * 1000;
  return std::max<int64_t>(0, at_ms - now_epoch_ms);
}

std::string UriEncodePath(std::string_view s) { return Encode(s, true); }
std::string UriEncode(std::string_view s) { return Encode(s, false); }

}  // namespace sluice
