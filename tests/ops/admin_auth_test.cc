// AdminAuth: bearer token, the console's login cookie, the CSRF check of
// browser writes, and the loopback rules without a token.
#include "ops/admin_auth.h"

#include <gtest/gtest.h>

#include "common/time.h"

namespace sluice {
namespace {

constexpr int64_t kHour = 3600 * 1000;

HttpRequest Req(std::string method, bool loopback = true, std::string host = "127.0.0.1:8080") {
  HttpRequest r;
  r.method = std::move(method);
  r.path = "/admin/overview";
  r.remote_is_loopback = loopback;
  if (!host.empty()) r.headers.emplace_back("host", std::move(host));
  return r;
}

HttpRequest With(HttpRequest r, std::string name, std::string value) {
  r.headers.emplace_back(std::move(name), std::move(value));
  return r;
}

std::string CookieOf(const HttpResponse& r) {
  for (const auto& [k, v] : r.headers) {
    if (k == "Set-Cookie") return v;
  }
  return std::string();
}

class AdminAuthTest : public ::testing::Test {
 protected:
  AdminAuthTest() : token_auth_(AuthOptions{"s3cret-admin", {}}, 12 * kHour, &metrics_),
                    open_auth_(AuthOptions{}, 12 * kHour, &metrics_) {}

  // Logs in and returns the cookie pair "sluice_console=..." and the CSRF token.
  std::pair<std::string, std::string> LogIn() {
    HttpRequest login = Req("POST", /*loopback=*/false, "console.example:8080");
    login.body = "{\"token\":\"s3cret-admin\"}";
    HttpResponse r = token_auth_.Login(login, WallNowMs());
    EXPECT_EQ(r.status, 200) << r.body;
    const std::string set = CookieOf(r);
    const std::string pair = set.substr(0, set.find(';'));
    const size_t at = r.body.find("\"csrf\":\"") + 8;
    return {pair, r.body.substr(at, r.body.find('"', at) - at)};
  }

  int64_t Rejected(const std::string& reason) {
    return metrics_.GetCounter("sluice_ops_rejected_total", "", Labels({{"reason", reason}})).value();
  }

  Metrics metrics_;
  AdminAuth token_auth_;
  AdminAuth open_auth_;
};

TEST_F(AdminAuthTest, BearerTokenAdmitsReadsAndWritesFromAnywhere) {
  HttpRequest get = With(Req("GET", false, "x.example"), "authorization", "Bearer s3cret-admin");
  EXPECT_FALSE(token_auth_.Check(get, false).has_value());
  HttpRequest post = With(Req("POST", false, "x.example"), "authorization", "Bearer s3cret-admin");
  EXPECT_FALSE(token_auth_.Check(post, true).has_value());
}

TEST_F(AdminAuthTest, WithATokenEvenLoopbackNeedsIt) {
  auto refused = token_auth_.Check(Req("GET"), false);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->status, 401);
  EXPECT_GE(Rejected("unauthorized"), 1);
}

TEST_F(AdminAuthTest, LoginSetsAnHttpOnlyStrictCookieThatAdmitsReads) {
  HttpRequest login = Req("POST", false, "console.example:8080");
  login.body = "{\"token\":\"s3cret-admin\"}";
  HttpResponse r = token_auth_.Login(login, WallNowMs());
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string set = CookieOf(r);
  EXPECT_EQ(set.rfind("sluice_console=", 0), 0u) << set;
  EXPECT_NE(set.find("; HttpOnly"), std::string::npos) << set;
  EXPECT_NE(set.find("; SameSite=Strict"), std::string::npos) << set;
  EXPECT_NE(set.find("; Path=/"), std::string::npos) << set;
  EXPECT_EQ(r.body.find("s3cret"), std::string::npos);  // the token is never echoed
  auto [cookie, csrf] = LogIn();
  EXPECT_FALSE(token_auth_.Check(With(Req("GET", false, "console.example:8080"), "cookie",
                                      "other=1; " + cookie),
                                 false)
                   .has_value());
}

TEST_F(AdminAuthTest, FormEncodedLoginWorksAndAWrongTokenIsRefused) {
  HttpRequest form = Req("POST", false, "h");
  form.body = "token=s3cret-admin";
  EXPECT_EQ(token_auth_.Login(form, WallNowMs()).status, 200);
  HttpRequest wrong = Req("POST", false, "h");
  wrong.body = "{\"token\":\"s3cret-admi\"}";
  HttpResponse r = token_auth_.Login(wrong, WallNowMs());
  EXPECT_EQ(r.status, 401);
  EXPECT_TRUE(CookieOf(r).empty());
}

TEST_F(AdminAuthTest, ExpiredOrForgedCookiesAreRefused) {
  const std::string expired = token_auth_.SessionCookieValue(WallNowMs() - 1);
  EXPECT_TRUE(token_auth_.Check(With(Req("GET"), "cookie", "sluice_console=" + expired), false)
                  .has_value());
  std::string forged = token_auth_.SessionCookieValue(WallNowMs() + kHour);
  forged.back() = forged.back() == '0' ? '1' : '0';
  EXPECT_TRUE(token_auth_.Check(With(Req("GET"), "cookie", "sluice_console=" + forged), false)
                  .has_value());
  // A cookie minted under another token is worthless here.
  Metrics other_metrics;
  AdminAuth other(AuthOptions{"another-token", {}}, kHour, &other_metrics);
  const std::string foreign = other.SessionCookieValue(WallNowMs() + kHour);
  EXPECT_TRUE(token_auth_.Check(With(Req("GET"), "cookie", "sluice_console=" + foreign), false)
                  .has_value());
}

TEST_F(AdminAuthTest, CookieWritesNeedTheCsrfHeaderAndTheirOwnOrigin) {
  auto [cookie, csrf] = LogIn();
  const std::string host = "console.example:8080";
  HttpRequest base = With(Req("POST", false, host), "cookie", cookie);
  // No CSRF header: refused.
  auto no_header = token_auth_.Check(base, true);
  ASSERT_TRUE(no_header.has_value());
  EXPECT_EQ(no_header->status, 403);
  // Right header, foreign Origin: refused.
  HttpRequest foreign = With(With(base, "x-sluice-csrf", csrf), "origin", "http://evil.example");
  EXPECT_TRUE(token_auth_.Check(foreign, true).has_value());
  // Wrong header value: refused.
  EXPECT_TRUE(token_auth_.Check(With(base, "x-sluice-csrf", csrf + "0"), true).has_value());
  // Right header, own Origin: allowed.
  HttpRequest good = With(With(base, "x-sluice-csrf", csrf), "origin", "http://" + host);
  EXPECT_FALSE(token_auth_.Check(good, true).has_value());
  EXPECT_GE(Rejected("csrf"), 3);
}

TEST_F(AdminAuthTest, WithoutATokenOnlyLoopbackClientsForLoopbackHostsGetIn) {
  EXPECT_FALSE(open_auth_.Check(Req("GET"), false).has_value());
  EXPECT_FALSE(open_auth_.Check(Req("GET", true, "localhost:9"), false).has_value());
  EXPECT_FALSE(open_auth_.Check(Req("GET", true, "[::1]:9"), false).has_value());
  EXPECT_FALSE(open_auth_.Check(Req("GET", true, ""), false).has_value());  // no Host: no browser
  auto remote = open_auth_.Check(Req("GET", false), false);
  ASSERT_TRUE(remote.has_value());
  EXPECT_EQ(remote->status, 403);
  // DNS rebinding: a page of rebound.example that resolves to 127.0.0.1.
  auto rebound = open_auth_.Check(Req("GET", true, "rebound.example:8080"), false);
  ASSERT_TRUE(rebound.has_value());
  EXPECT_EQ(rebound->status, 403);
}

TEST_F(AdminAuthTest, WithoutATokenScriptsMayWriteButBrowsersNeedTheCsrfToken) {
  EXPECT_FALSE(open_auth_.Check(Req("POST"), true).has_value());  // curl on the host
  // A cross-site form post carries the attacker's Origin.
  EXPECT_TRUE(open_auth_.Check(With(Req("POST"), "origin", "http://evil.example"), true)
                  .has_value());
  // Same origin but no token (a page that could not read /console/session).
  EXPECT_TRUE(open_auth_.Check(With(Req("POST"), "origin", "http://127.0.0.1:8080"), true)
                  .has_value());
  HttpResponse session = open_auth_.Session(Req("GET"), WallNowMs());
  ASSERT_EQ(session.status, 200) << session.body;
  const size_t at = session.body.find("\"csrf\":\"") + 8;
  const std::string csrf = session.body.substr(at, session.body.find('"', at) - at);
  EXPECT_FALSE(open_auth_
                   .Check(With(With(Req("POST"), "origin", "http://127.0.0.1:8080"),
                               "x-sluice-csrf", csrf),
                          true)
                   .has_value());
}

TEST_F(AdminAuthTest, SessionSaysWhetherALoginIsNeeded) {
  HttpResponse none = token_auth_.Session(Req("GET", false, "h"), WallNowMs());
  EXPECT_EQ(none.status, 200);
  EXPECT_NE(none.body.find("\"login_required\":true"), std::string::npos) << none.body;
  EXPECT_EQ(none.body.find("csrf"), std::string::npos);
  auto [cookie, csrf] = LogIn();
  HttpResponse in = token_auth_.Session(With(Req("GET", false, "h"), "cookie", cookie), WallNowMs());
  EXPECT_NE(in.body.find("\"csrf\":\"" + csrf + "\""), std::string::npos) << in.body;
  EXPECT_EQ(open_auth_.Session(Req("GET", false), WallNowMs()).status, 403);
}

TEST_F(AdminAuthTest, LogoutClearsTheCookie) {
  const std::string set = CookieOf(token_auth_.Logout(Req("POST")));
  EXPECT_NE(set.find("sluice_console=;"), std::string::npos) << set;
  EXPECT_NE(set.find("Max-Age=0"), std::string::npos) << set;
}

}  // namespace
}  // namespace sluice
