// Console and EventTail behind a real HttpServer on a real SQLite store:
// the page and its headers, the overview and its metrics, the login, and the
// live tail's filter, rate and stream bounds.
#include "ops/console.h"

#include <gtest/gtest.h>

#include "common/event.h"
#include "http/http_server.h"
#include "ops/console_assets.h"
#include "ops/ops_service.h"
#include "queue/open/open_store.h"
#include "testing/raw_http.h"
#include "testing/testing.h"

namespace sluice {
namespace {

using testing::RawCall;
using testing::RawConn;
using testing::RawRequest;
using testing::RawResponse;

std::string Body(const std::string& event, const std::string& user, const std::string& props = "") {
  Event e;
  e.event = event;
  e.user_id = user;
  e.time_ms = 1714557600000;
  e.properties = props;
  return ToBody(e);
}

class ConsoleTest : public ::testing::Test {
 protected:
  void Start(AuthOptions auth = {}, TailOptions tail = {}) {
    StoreOptions so;
    so.url = "sqlite:" + dir_.File("console.db");
    so.sync = false;
    auto store = OpenStore(so);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    OpsOptions oo;
    oo.auth = auth;
    ops_ = std::make_unique<OpsService>(store_.get(), &metrics_, oo, nullptr);
    tail.tick_ms = 20;
    tail_ = std::make_unique<EventTail>(tail, "replica-1", &metrics_);
    ConsoleOptions co;
    co.cache_ms = 0;
    console_ = std::make_unique<Console>(
        store_.get(), &metrics_, co, ops_->admin_auth(), tail_.get(),
        std::vector<ConsumerSpec>{{"users", 1, true}, {"webhook", 4, false}}, 10000, "replica-1");
    ServerOptions server;
    server.listen = "127.0.0.1:0";
    server_ = std::make_unique<HttpServer>(server, 1 << 20, &metrics_);
    std::vector<OpsRoute> routes = ops_->Routes();
    for (OpsRoute& r : console_->Routes()) routes.push_back(std::move(r));
    for (OpsRoute& r : routes) server_->Route(r.method, r.path, std::move(r.handler));
    auto port = server_->Start();
    ASSERT_TRUE(port.ok()) << port.status().ToString();
    port_ = *port;
  }
  void TearDown() override {
    if (server_) server_->Stop(1000);
    if (tail_) tail_->Stop();
  }

  void Enqueue(std::vector<NewEvent> events) {
    EnqueueBatch batch{events};
    auto r = store_->Enqueue(std::span<const EnqueueBatch>(&batch, 1));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    tail_->Publish(std::span<const EnqueueBatch>(&batch, 1), *r);
  }

  // Opens /admin/tail?query on `c` and waits for its hello frame.
  void OpenTail(RawConn& c, const std::string& query) {
    ASSERT_TRUE(c.Send(RawRequest("GET", "/admin/tail" + query, "")));
    const std::string head = c.ReadUntil("event: hello");
    ASSERT_NE(head.find("200 OK"), std::string::npos) << head;
    ASSERT_NE(head.find("text/event-stream"), std::string::npos) << head;
    ASSERT_TRUE(testing::WaitUntil([&] { return tail_->watchers() > 0; },
                                   std::chrono::milliseconds(5000)));
  }

  testing::TempDir dir_;
  Metrics metrics_;
  StorePtr store_;
  std::unique_ptr<OpsService> ops_;
  std::unique_ptr<EventTail> tail_;
  std::unique_ptr<Console> console_;
  std::unique_ptr<HttpServer> server_;
  int port_ = 0;
};

TEST_F(ConsoleTest, PageIsServedWithAStrictContentSecurityPolicy) {
  Start();
  RawResponse page = RawCall(port_, "GET", "/console");
  ASSERT_EQ(page.status, 200);
  EXPECT_EQ(page.headers["content-type"], "text/html; charset=utf-8");
  const std::string csp = page.headers["content-security-policy"];
  EXPECT_NE(csp.find("default-src 'none'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("script-src 'self'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("connect-src 'self'"), std::string::npos) << csp;
  EXPECT_EQ(csp.find("unsafe"), std::string::npos) << csp;
  EXPECT_EQ(page.headers["x-content-type-options"], "nosniff");
  EXPECT_NE(page.body.find("/console/app.js"), std::string::npos);
  EXPECT_NE(page.body.find("data-refresh-ms=\"2000\""), std::string::npos);
  EXPECT_EQ(RawCall(port_, "GET", "/console/app.js").headers["content-type"],
            "text/javascript; charset=utf-8");
  EXPECT_EQ(RawCall(port_, "GET", "/console/app.css").status, 200);
  EXPECT_EQ(RawCall(port_, "GET", "/console/nope.js").status, 404);
}

TEST_F(ConsoleTest, PageLoadsNothingFromElsewhereAndNeverParsesDataAsHtml) {
  for (const ConsoleAsset& a : ConsoleAssets()) {
    const std::string content(a.content);
    for (const char* outside : {"http://", "https://", "//cdn", "@import"}) {
      // The SVG namespace URI is a name, not a request.
      std::string scrubbed = content;
      for (size_t at; (at = scrubbed.find("http://www.w3.org/2000/svg")) != std::string::npos;) {
        scrubbed.erase(at, 26);
      }
      EXPECT_EQ(scrubbed.find(outside), std::string::npos) << a.name << " has " << outside;
    }
    if (!a.name.ends_with(".js")) continue;
    for (const char* sink : {"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                             "eval(", "new Function", "DOMParser", "createContextualFragment"}) {
      EXPECT_EQ(content.find(sink), std::string::npos) << a.name << " uses " << sink;
    }
  }
}

TEST_F(ConsoleTest, OverviewShowsEachConsumersBacklogAndMetricsExportIt) {
  Start();
  Enqueue({{"p", "a", Body("signup", "u1")}, {"p", "b", Body("signup", "u2")}});
  RawResponse r = RawCall(port_, "GET", "/admin/overview");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"name\":\"webhook\",\"bit\":2,\"in_store\":false,\"backlog\":2,"
                        "\"exact\":true"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("\"served_by\":\"replica-1\""), std::string::npos) << r.body;
  const std::string m = metrics_.RenderPrometheus();
  EXPECT_NE(m.find("sluice_consumer_backlog_events{consumer=\"webhook\"} 2"), std::string::npos)
      << m;
  EXPECT_NE(m.find("sluice_consumer_oldest_age_seconds{consumer=\"users\"}"), std::string::npos);
}

TEST_F(ConsoleTest, WithATokenTheApiNeedsALoginAndTheCookieOpensIt) {
  Start(AuthOptions{"tok-123", {}});
  EXPECT_EQ(RawCall(port_, "GET", "/admin/overview").status, 401);
  EXPECT_EQ(RawCall(port_, "GET", "/admin/tail").status, 401);
  EXPECT_EQ(RawCall(port_, "GET", "/console").status, 200);  // the page itself holds no data
  RawResponse login = RawCall(port_, "POST", "/console/login", "{\"token\":\"tok-123\"}");
  ASSERT_EQ(login.status, 200) << login.body;
  const std::string set = login.headers["set-cookie"];
  const std::string cookie = set.substr(0, set.find(';'));
  EXPECT_EQ(RawCall(port_, "GET", "/admin/overview", "", {"Cookie: " + cookie}).status, 200);
  // A write with the cookie but without the CSRF header is refused.
  EXPECT_EQ(RawCall(port_, "POST", "/admin/dlq/requeue", "{}", {"Cookie: " + cookie}).status, 403);
}

TEST_F(ConsoleTest, TailStreamsOnlyMatchingEvents) {
  Start();
  RawConn c(port_);
  OpenTail(c, "?event=signup&user=u2");
  Enqueue({{"p", "a", Body("signup", "u1")},
           {"p", "b", Body("pageview", "u2")},
           {"p", "c", Body("signup", "u2", "{\"x\":\"<script>alert(1)</script>\"}")}});
  const std::string got = c.ReadUntil("\"insert_id\":\"c\"");
  ASSERT_NE(got, "");
  EXPECT_EQ(got.find("\"insert_id\":\"a\""), std::string::npos) << got;
  EXPECT_EQ(got.find("\"insert_id\":\"b\""), std::string::npos) << got;
  EXPECT_NE(got.find("\"event\":\"signup\",\"user_id\":\"u2\""), std::string::npos) << got;
  EXPECT_NE(got.find("id: "), std::string::npos) << got;
}

TEST_F(ConsoleTest, TailOverItsRateSkipsTheOlderEventsAndSaysHowMany) {
  TailOptions t;
  t.max_events_per_s = 5;
  Start({}, t);
  RawConn c(port_);
  OpenTail(c, "");
  std::vector<NewEvent> many;
  for (int i = 0; i < 50; ++i) many.push_back({"p", "e" + std::to_string(i), Body("v", "u")});
  Enqueue(many);
  // The newest go out, after a frame that says how many older ones were skipped.
  const std::string got = c.ReadUntil("\"insert_id\":\"e49\"");
  ASSERT_NE(got, "");
  EXPECT_NE(got.find("event: dropped\ndata: {\"dropped\":45}"), std::string::npos) << got;
  EXPECT_EQ(got.find("\"insert_id\":\"e0\""), std::string::npos) << got;
  EXPECT_GT(metrics_.GetCounter("sluice_tail_dropped_total", "", Labels({{"reason", "rate"}}))
                .value(),
            0);
}

TEST_F(ConsoleTest, TailRefusesStreamsBeyondItsLimit) {
  TailOptions t;
  t.max_streams = 1;
  Start({}, t);
  RawConn c(port_);
  OpenTail(c, "");
  RawResponse second = RawCall(port_, "GET", "/admin/tail");
  EXPECT_EQ(second.status, 503);
  EXPECT_EQ(second.headers["retry-after"], "5");
  c.Close();
  // The slot comes back once the first watcher is gone.
  EXPECT_TRUE(testing::WaitUntil([&] { return tail_->watchers() == 0; },
                                 std::chrono::milliseconds(5000)));
}

TEST_F(ConsoleTest, TailCopiesNothingWhileNobodyWatches) {
  Start();
  Enqueue({{"p", "a", Body("signup", "u1")}});
  EXPECT_EQ(metrics_.GetCounter("sluice_tail_events_total", "").value(), 0);
}

TEST_F(ConsoleTest, TailFilterValuesAreBounded) {
  Start();
  EXPECT_EQ(RawCall(port_, "GET", "/admin/tail?project=" + std::string(300, 'p')).status, 400);
  EXPECT_EQ(RawCall(port_, "GET", "/admin/tail", "", {"Last-Event-ID: x"}).status, 400);
}

}  // namespace
}  // namespace sluice
