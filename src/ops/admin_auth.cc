#include "ops/admin_auth.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <simdjson.h>

#include <charconv>
#include <random>

#include "common/event.h"
#include "common/http_status.h"
#include "common/time.h"
#include "http/http_util.h"

namespace sluice {
namespace {

std::string Hex(const unsigned char* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[p[i] >> 4]);
    out.push_back(kDigits[p[i] & 15]);
  }
  return out;
}

std::string HmacHex(const std::string& key, const std::string& message) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac,
           &len) == nullptr) {
    return std::string();
  }
  return Hex(mac, len);
}

// The value of cookie `name` in a Cookie header, "" when absent.
std::string CookieValue(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    const size_t semi = header.find(';');
    std::string_view pair = header.substr(0, semi);
    header = semi == std::string_view::npos ? std::string_view() : header.substr(semi + 1);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    const size_t eq = pair.find('=');
    if (eq != std::string_view::npos && pair.substr(0, eq) == name) {
      return std::string(pair.substr(eq + 1));
    }
  }
  return std::string();
}

// "host:port" / "[v6]:port" / "host" -> host, lower-case.
std::string HostOnly(std::string_view host_header) {
  std::string_view h = host_header;
  if (!h.empty() && h.front() == '[') {
    const size_t close = h.find(']');
    h = close == std::string_view::npos ? h.substr(1) : h.substr(1, close - 1);
  } else if (const size_t colon = h.rfind(':'); colon != std::string_view::npos) {
    h = h.substr(0, colon);
  }
  std::string out(h);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The token of a login body: {"token":".."} or token=.. (form encoded).
std::optional<std::string> LoginToken(const HttpRequest& req) {
  std::string_view body = req.body;
  while (!body.empty() && (body.front() == ' ' || body.front() == '\n')) body.remove_prefix(1);
  if (!body.empty() && body.front() == '{') {
    simdjson::ondemand::parser parser;
    simdjson::padded_string padded(body);
    simdjson::ondemand::document doc;
    std::string_view token;
    if (parser.iterate(padded).get(doc) != simdjson::SUCCESS ||
        doc["token"].get_string().get(token) != simdjson::SUCCESS) {
      return std::nullopt;
    }
    return std::string(token);
  }
  return QueryValue(body, "token");
}

}  // namespace

AdminAuth::AdminAuth(AuthOptions auth, int64_t session_ttl_ms, Metrics* metrics)
    : auth_(std::move(auth)), session_ttl_ms_(std::max<int64_t>(1, session_ttl_ms)) {
  if (!auth_.admin_token.empty()) {
    key_ = auth_.admin_token;
  } else {
    // Only the loopback CSRF token is derived from it: nothing outlives the process.
    unsigned char bytes[32];
    if (RAND_bytes(bytes, sizeof bytes) != 1) {
      std::random_device rd;
      for (unsigned char& b : bytes) b = static_cast<unsigned char>(rd());
    }
    key_.assign(reinterpret_cast<const char*>(bytes), sizeof bytes);
  }
  const char* help = "Ops/admin/read API requests refused, by reason";
  unauthorized_ = &metrics->GetCounter("sluice_ops_rejected_total", help,
                                       Labels({{"reason", "unauthorized"}}));
  csrf_ = &metrics->GetCounter("sluice_ops_rejected_total", help, Labels({{"reason", "csrf"}}));
}

std::string AdminAuth::SessionCookieValue(int64_t expiry_ms) const {
  const std::string expiry = std::to_string(expiry_ms);
  return expiry + "." + HmacHex(key_, "sluice-console-session." + expiry);
}

std::string AdminAuth::CsrfFor(const std::string& cookie_value) const {
  return HmacHex(key_, "sluice-console-csrf." + cookie_value);
}

std::string AdminAuth::ValidCookie(const HttpRequest& req, int64_t now_ms) const {
  if (auth_.admin_token.empty()) return std::string();
  const std::string value = CookieValue(req.Header("cookie"), kConsoleCookie);
  const size_t dot = value.find('.');
  if (dot == std::string::npos) return std::string();
  int64_t expiry = 0;
  const auto [ptr, ec] = std::from_chars(value.data(), value.data() + dot, expiry);
  if (ec != std::errc() || ptr != value.data() + dot || expiry <= now_ms) return std::string();
  if (!ConstantTimeEquals(value, SessionCookieValue(expiry))) return std::string();
  return value;
}

std::optional<HttpResponse> AdminAuth::Refuse(Code code, const char* reason,
                                              std::string message) const {
  (std::string_view(reason) == "csrf" ? csrf_ : unauthorized_)->Inc();
  HttpResponse r = JsonError(code, message);
  if (code == Code::kUnauthorized) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

std::optional<HttpResponse> AdminAuth::CheckBrowserWrite(const HttpRequest& req,
                                                         const std::string& cookie) const {
  const std::string_view origin = req.Header("origin");
  const bool browser = !origin.empty() || !req.Header("cookie").empty();
  if (!browser) return std::nullopt;
  if (!origin.empty()) {
    const std::string host(req.Header("host"));
    if (host.empty() || (origin != "http://" + host && origin != "https://" + host)) {
      return Refuse(Code::kForbidden, "csrf", "cross-origin admin request refused (Origin is not this server)");
    }
  }
  const std::string expected = CsrfFor(cookie.empty() ? std::string("loopback") : cookie);
  if (!ConstantTimeEquals(req.Header(kCsrfHeader), expected)) {
    return Refuse(Code::kForbidden, "csrf", "missing or wrong X-Sluice-CSRF header (reload the console)");
  }
  return std::nullopt;
}

std::optional<HttpResponse> AdminAuth::Check(const HttpRequest& req, bool write) const {
  if (auth_.admin_token.empty()) {
    if (!req.remote_is_loopback) {
      return Refuse(Code::kForbidden, "unauthorized",
                    "admin endpoints are open to loopback clients only while no "
                    "auth.admin_token is configured");
    }
    // (Browsers always send Host; a request without one is no rebinding page.)
    const std::string_view host = req.Header("host");
    if (!host.empty() && !IsLoopbackHost(HostOnly(host))) {
      return Refuse(Code::kForbidden, "unauthorized",
                    "without auth.admin_token, admin endpoints answer only requests for a "
                    "loopback host name (Host: 127.0.0.1, localhost or [::1])");
    }
    return write ? CheckBrowserWrite(req, std::string()) : std::nullopt;
  }
  if (ConstantTimeEquals(RequestCredential(req), auth_.admin_token)) {
    // A bearer token is never attached by a browser on its own: no CSRF risk.
    return std::nullopt;
  }
  const std::string cookie = ValidCookie(req, WallNowMs());
  if (cookie.empty()) {
    return Refuse(Code::kUnauthorized, "unauthorized",
                  "admin endpoints need Authorization: Bearer <admin token> (or a console login)");
  }
  return write ? CheckBrowserWrite(req, cookie) : std::nullopt;
}

HttpResponse AdminAuth::Login(const HttpRequest& req, int64_t now_ms) const {
  if (auth_.admin_token.empty()) {
    return JsonError(Code::kInvalidArgument, "no auth.admin_token is configured: the console needs no login here");
  }
  if (req.body.size() > kMaxLoginBodyBytes) return JsonError(Code::kTooLarge, "login body too large");
  const std::string_view origin = req.Header("origin");
  if (!origin.empty()) {
    const std::string host(req.Header("host"));
    if (origin != "http://" + host && origin != "https://" + host) {
      csrf_->Inc();
      return JsonError(Code::kForbidden, "cross-origin login refused");
    }
  }
  std::optional<std::string> token = LoginToken(req);
  if (!token || !ConstantTimeEquals(*token, auth_.admin_token)) {
    unauthorized_->Inc();
    return JsonError(Code::kUnauthorized, "wrong admin token");
  }
  const int64_t expiry = now_ms + session_ttl_ms_;
  const std::string cookie = SessionCookieValue(expiry);
  std::string body = "{\"csrf\":";
  AppendJsonString(CsrfFor(cookie), &body);
  body += ",\"expires_ms\":" + std::to_string(expiry) + "}";
  HttpResponse r = JsonResponse(kHttpOk, std::move(body));
  std::string set = std::string(kConsoleCookie) + "=" + cookie +
                    "; Path=/; HttpOnly; SameSite=Strict; Max-Age=" +
                    std::to_string(session_ttl_ms_ / 1000);
  if (req.Header("x-forwarded-proto") == "https") set += "; Secure";
  r.headers.emplace_back("Set-Cookie", std::move(set));
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

HttpResponse AdminAuth::Logout(const HttpRequest& /*req*/) const {
  HttpResponse r = JsonResponse(kHttpOk, "{\"logged_out\":true}");
  r.headers.emplace_back("Set-Cookie", std::string(kConsoleCookie) +
                                           "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
  return r;
}

HttpResponse AdminAuth::Session(const HttpRequest& req, int64_t now_ms) const {
  if (auth_.admin_token.empty()) {
    if (auto refused = Check(req, /*write=*/false)) return *refused;
    std::string body = "{\"auth\":\"loopback\",\"login_required\":false,\"csrf\":";
    AppendJsonString(CsrfFor("loopback"), &body);
    body += "}";
    return JsonResponse(kHttpOk, std::move(body));
  }
  const std::string cookie = ValidCookie(req, now_ms);
  // Not logged in is a normal answer here (200), not an error: the page shows the login form.
  if (cookie.empty()) return JsonResponse(kHttpOk, "{\"auth\":\"token\",\"login_required\":true}");
  std::string body = "{\"auth\":\"token\",\"login_required\":false,\"csrf\":";
  AppendJsonString(CsrfFor(cookie), &body);
  body += "}";
  return JsonResponse(kHttpOk, std::move(body));
}

}  // namespace sluice
