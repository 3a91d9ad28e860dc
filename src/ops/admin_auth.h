// AdminAuth: who may use the admin endpoints and the console, and the
// console's login session. Shared by OpsService (/admin/*) and Console.
//
//  - With an admin token: `Authorization: Bearer <token>`, or the console's
//    session cookie `sluice_console` (POST /console/login with the token sets
//    it: HttpOnly; SameSite=Strict; Path=/; Max-Age = session_ttl). The
//    cookie is "<expiry ms>.<HMAC-SHA256(token, expiry)>": valid on every
//    replica that shares the token, void once the token changes or it expires.
//  - Without one: loopback clients only, and the Host header must name a
//    loopback address too, so a page on a DNS-rebinding domain cannot read
//    the API through the browser.
//  - Writes (POST) from a browser, i.e. requests that carry a Cookie or an
//    Origin header, also need Origin (when sent) to be the request's own
//    origin (scheme://Host) and the header `X-Sluice-CSRF` to hold the
//    session's CSRF token (GET /console/session, POST /console/login).
//    A cross-site page can neither read that token nor send the header
//    without a CORS preflight, which sluice never grants. Scripts that send
//    neither (curl with a bearer token, or on loopback) are unaffected.
//
// Every refusal counts in sluice_ops_rejected_total{reason}. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/metrics.h"
#include "http/auth.h"
#include "http/http_server.h"

namespace sluice {

inline constexpr const char* kConsoleCookie = "sluice_console";
inline constexpr const char* kCsrfHeader = "x-sluice-csrf";
// Longest login request body read (the token, JSON or form encoded).
inline constexpr size_t kMaxLoginBodyBytes = 4096;

class AdminAuth {
 public:
  // `session_ttl_ms`: lifetime of a console login; REQUIRES: > 0.
  AdminAuth(AuthOptions auth, int64_t session_ttl_ms, Metrics* metrics);

  AdminAuth(const AdminAuth&) = delete;
  AdminAuth& operator=(const AdminAuth&) = delete;

  // nullopt when `req` may use admin endpoints (`write`: a state change, POST),
  // else the refusal (401, 403).
  std::optional<HttpResponse> Check(const HttpRequest& req, bool write) const;

  // POST /console/login: body {"token":"..."} or token=... (form). 200 with
  // {"csrf":..,"expires_ms":..} and the cookie; 401 on a wrong token; 400
  // when no admin token is configured (nothing to log in to).
  HttpResponse Login(const HttpRequest& req, int64_t now_ms) const;
  // POST /console/logout: clears the cookie.
  HttpResponse Logout(const HttpRequest& req) const;
  // GET /console/session: {"auth":"token"|"loopback","login_required":bool,
  // "csrf":".."}; "login_required":true (no csrf) without a valid login; 403
  // off loopback without an admin token.
  HttpResponse Session(const HttpRequest& req, int64_t now_ms) const;

  bool token_configured() const { return !auth_.admin_token.empty(); }

  // Exposed for tests: the cookie value for a session ending at `expiry_ms`,
  // and the CSRF token a request with that cookie needs.
  std::string SessionCookieValue(int64_t expiry_ms) const;
  std::string CsrfFor(const std::string& cookie_value) const;

 private:
  // The session cookie of `req` when it is valid now, else "".
  std::string ValidCookie(const HttpRequest& req, int64_t now_ms) const;
  std::optional<HttpResponse> Refuse(Code code, const char* reason, std::string message) const;
  // The browser-write checks (Origin, CSRF header); `cookie` the session in use.
  std::optional<HttpResponse> CheckBrowserWrite(const HttpRequest& req,
                                                const std::string& cookie) const;

  // Constant after construction.
  const AuthOptions auth_;
  const int64_t session_ttl_ms_;
  // HMAC key: the admin token, or random bytes of this process when none.
  std::string key_;
  Counter* unauthorized_;
  Counter* csrf_;
};

}  // namespace sluice
