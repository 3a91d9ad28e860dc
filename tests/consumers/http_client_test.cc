// HttpClient (the external consumers' libcurl layer) and its helpers, against
// a local receiver.
#include "http_client/http_client.h"

#include <gtest/gtest.h>

#include <thread>

#include "common/clock.h"
#include "common/metrics.h"
#include "consumers/api/option_reader.h"
#include "testing/fake_clock.h"
#include "testing/sink_servers.h"

namespace sluice {
namespace {

using testing::HttpReceiver;
using testing::ReceivedRequest;
using testing::Reply;

TEST(RetryAfter, ParsesSecondsAndHttpDates) {
  const int64_t now = 784111777000;  // Sun, 06 Nov 1994 08:49:37 GMT
  EXPECT_EQ(ParseRetryAfterMs("120", now), 120000);
  EXPECT_EQ(ParseRetryAfterMs(" 0 ", now), 0);
  EXPECT_EQ(ParseRetryAfterMs("Sun, 06 Nov 1994 08:50:07 GMT", now), 30000);
  EXPECT_EQ(ParseRetryAfterMs("Sun, 06 Nov 1994 08:00:00 GMT", now), 0);  // past: now
  EXPECT_EQ(ParseRetryAfterMs("soon", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfterMs("-5", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfterMs("1.5", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfterMs("", now), std::nullopt);
}

TEST(UriEncode, KeepsOnlyUnreservedCharacters) {
  EXPECT_EQ(UriEncodePath("a/dt=2024-05-01/x y$.~_-"), "a/dt%3D2024-05-01/x%20y%24.~_-");
  EXPECT_EQ(UriEncode("a/b+c"), "a%2Fb%2Bc");
  EXPECT_EQ(UriEncode("\xc3\xa9"), "%C3%A9");
}

TEST(Sha256Hex, MatchesKnownDigest) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(HttpClient, SendsBodyHeadersAndBasicAuthAndReadsHeaders) {
  HttpReceiver rx([](const ReceivedRequest& r) {
    return Reply{201,
                 {{"X-Echo", r.headers.count("x-a") ? r.headers.at("x-a") : ""}},
                 r.method + " " + r.body};
  });
  HttpClient http(HttpClientOptions{}, nullptr, "t");
  ClientRequest req;
  req.method = "PUT";
  req.url = rx.url("/p?q=1");
  req.body = "payload";
  req.headers = {{"X-A", "b"}};
  req.user = "u";
  req.password = "p:w";
  auto resp = http.Send(req);
  ASSERT_TRUE(resp.ok()) << resp.status().ToString();
  EXPECT_EQ(resp->status, 201);
  EXPECT_EQ(resp->body, "PUT payload");
  ASSERT_NE(resp->Header("x-echo"), nullptr);
  EXPECT_EQ(*resp->Header("x-echo"), "b");
  const auto got = rx.requests().at(0);
  EXPECT_EQ(got.target, "/p?q=1");
  EXPECT_EQ(got.headers.at("authorization"), "Basic dTpwOnc=");  // u:p:w
  EXPECT_EQ(got.headers.at("content-type"), "application/octet-stream");
  EXPECT_EQ(got.headers.count("expect"), 0u);
}

TEST(HttpClient, BodyOverTheLimitIsTruncatedAndConnectionIsReused) {
  HttpReceiver rx([](const ReceivedRequest&) { return Reply{200, {}, std::string(5000, 'x')}; });
  HttpClientOptions o;
  o.max_response_bytes = 1000;
  Metrics m;
  HttpClient http(o, &m, "t");
  ClientRequest req;
  req.url = rx.url();
  for (int i = 0; i < 3; ++i) {
    auto resp = http.Send(req);
    ASSERT_TRUE(resp.ok()) << resp.status().ToString();
    EXPECT_EQ(resp->body.size(), 1000u);
    EXPECT_TRUE(resp->truncated);
  }
  EXPECT_EQ(rx.connections(), 1);
  EXPECT_NE(
      m.RenderPrometheus().find("sluice_consumer_http_response_truncated_total{consumer=\"t\"} 3"),
      std::string::npos);
}

TEST(HttpClient, SlowServerTimesOutAsUnavailable) {
  HttpReceiver rx([](const ReceivedRequest&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the server under test is slow
    return Reply{};
  });
  HttpClientOptions o;
  o.timeout_ms = 200;
  HttpClient http(o, nullptr, "t");
  ClientRequest req;
  req.url = rx.url();
  const int64_t start = Clock::Real().MonoMs();
  auto resp = http.Send(req);
  EXPECT_EQ(resp.status().code(), Code::kUnavailable);
  EXPECT_LT(Clock::Real().MonoMs() - start, 1400);
  // A deadline in the past fails at once.
  req.deadline_mono_ms = Clock::Real().MonoMs() - 1;
  EXPECT_EQ(http.Send(req).status().code(), Code::kUnavailable);
}

// Deadlines are read on the client's clock: a deadline still ahead on it is
// sent, one it has passed fails without contacting the receiver.
TEST(HttpClient, DeadlineIsCheckedAgainstTheInjectedClock) {
  HttpReceiver rx([](const ReceivedRequest&) { return Reply{}; });
  testing::FakeClock clock;
  HttpClient http(HttpClientOptions{}, nullptr, "t", &clock);
  ClientRequest req;
  req.url = rx.url();
  req.deadline_mono_ms = clock.MonoMs() + 100;
  auto resp = http.Send(req);
  ASSERT_TRUE(resp.ok()) << resp.status().ToString();
  EXPECT_EQ(resp->status, 200);
  EXPECT_EQ(rx.count(), 1u);
  clock.Advance(100);
  resp = http.Send(req);
  EXPECT_EQ(resp.status().code(), Code::kUnavailable);
  EXPECT_NE(resp.status().message().find("deadline passed"), std::string::npos);
  EXPECT_EQ(rx.count(), 1u);
}

TEST(HttpClient, ConcurrentSendsFromManyThreads) {
  HttpReceiver rx([](const ReceivedRequest& r) { return Reply{200, {}, r.body}; });
  HttpClient http(HttpClientOptions{}, nullptr, "t");
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        const std::string body = std::to_string(t * 100 + i);
        ClientRequest req;
        req.method = "POST";
        req.url = rx.url();
        req.body = body;
        auto resp = http.Send(req);
        if (resp.ok() && resp->body == body) ok.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 40);
  EXPECT_LE(rx.connections(), 4);
}

TEST(HttpClient, HttpsUrlsVerifyTheCertificate) {
  // A plain-HTTP server behind an https:// URL: the TLS handshake fails,
  // which is reported as unavailable, never silently accepted.
  HttpReceiver rx([](const ReceivedRequest&) { return Reply{}; });
  HttpClientOptions o;
  o.timeout_ms = 500;
  HttpClient http(o, nullptr, "t");
  ClientRequest req;
  req.url = "https://127.0.0.1:" + std::to_string(rx.port()) + "/";
  EXPECT_EQ(http.Send(req).status().code(), Code::kUnavailable);
  req.url = "ftp://127.0.0.1/";
  EXPECT_EQ(http.Send(req).status().code(), Code::kInvalidArgument);
}

TEST(OptionReader, RefusesUnknownKeysAndBadValues) {
  std::map<std::string, std::string> opts{{"a", "5"}, {"b", "yes"}, {"c", "3s"}};
  int64_t a = 0, c = 0;
  bool b = false;
  {
    OptionReader r(opts, "consumer x");
    r.Int("a", &a, 0, 10);
    r.DurationMs("c", &c);
    EXPECT_NE(r.Finish().message().find("unknown option(s): b"), std::string::npos);
  }
  {
    OptionReader r(opts, "consumer x");
    r.Int("a", &a, 0, 10);
    r.Bool("b", &b);
    r.DurationMs("c", &c);
    EXPECT_NE(r.Finish().message().find("option b"), std::string::npos);
  }
  EXPECT_EQ(a, 5);
  EXPECT_EQ(c, 3000);
}

}  // namespace
}  // namespace sluice
