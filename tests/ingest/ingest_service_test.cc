// End to end: raw HTTP -> HttpServer -> IngestService -> group commit -> a
// real SQLite store.
#include "ingest/ingest_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "ingest/formats/gzip.h"
#include "ingest/formats/native.h"
#include "ingest/formats/registry.h"
#include "queue/open/open_store.h"
#include "testing/fake_clock.h"
#include "testing/raw_http.h"
#include "testing/store_fixture.h"
#include "testing/testing.h"
#include "testkit/broken_stores.h"

namespace sluice {
namespace {

using testing::RawCall;
using testing::RawConn;
using testing::RawRequest;
using testing::RawResponse;
using testing::WaitUntil;

std::string Gzip(std::string_view in) { return Compress(in, Compression::kGzip, 1).value(); }

// A native body with events prefix0..prefix{n-1} as insert_ids.
std::string Batch(const std::string& prefix, int n, const std::string& write_key = "") {
  NativeBodyBuilder body;
  for (int i = 0; i < n; ++i) {
    Event e;
    e.event = "signup";
    e.user_id = "u" + std::to_string(i % 7);
    e.insert_id = prefix + std::to_string(i);
    e.time_ms = 1714557600000;
    e.properties = "{\"i\":" + std::to_string(i) + "}";
    body.Add(e);
  }
  return body.Finish(write_key);
}

class IngestServiceTest : public ::testing::Test {
 protected:
  void Start() {
    url_ = "sqlite:" + dir_.File("db");
    auto store = OpenStore({.url = url_});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    if (faults_.fail_first_requests > 0) {
      store_ = std::make_unique<IngestFaultStore>(std::move(store_), faults_);
    }
    ServerOptions so;
    so.listen = "127.0.0.1:0";
    so.threads = 2;
    server_ = std::make_unique<HttpServer>(so, limits_.max_body_bytes, &metrics_);
    std::vector<FormatPtr> formats;
    formats.push_back(NewNativeFormat());
    service_ = std::make_unique<IngestService>(
        store_.get(), limits_, auth_, &metrics_, std::move(formats), [this] { commits_++; },
        GroupCommitter::Committed{}, clock_);
    service_->RegisterRoutes(server_.get());
    auto port = server_->Start();
    ASSERT_TRUE(port.ok()) << port.status().ToString();
    port_ = *port;
  }

  void TearDown() override {
    if (server_) server_->Stop(2000);
    if (service_) service_->Stop();
  }

  RawResponse Post(const std::string& body, const std::vector<std::string>& headers = {}) {
    return RawCall(port_, "POST", "/v1/events", body, headers);
  }

  int64_t Pending() {
    auto s = store_->Stats();
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? s->pending + s->leased : -1;
  }

  int64_t Events(const std::string& result) {
    return metrics_.GetCounter("sluice_ingest_events_total", "", Labels({{"result", result}}))
        .value();
  }

  testing::TempDir dir_;
  std::string url_;
  IngestOptions limits_;
  IngestFaultOptions faults_;  // the test kit's failing store, when set
  AuthOptions auth_;
  testing::FakeClock fake_clock_;  // for the tests that set clock_ to it
  Clock* clock_ = &Clock::Real();
  Metrics metrics_;
  StorePtr store_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<IngestService> service_;
  std::atomic<int> commits_{0};
  int port_ = 0;
};

TEST_F(IngestServiceTest, AcceptedThenDuplicatesAreCounted) {
  Start();
  auto r = Post(Batch("a", 10));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"({"accepted":10,"duplicates":0})");
  EXPECT_EQ(Pending(), 10);
  EXPECT_GE(commits_.load(), 1);

  // Half old, half new.
  NativeBodyBuilder mixed;
  for (int i = 5; i < 15; ++i) {
    Event e;
    e.event = "signup";
    e.user_id = "u";
    e.insert_id = "a" + std::to_string(i);
    mixed.Add(e);
  }
  r = Post(mixed.Finish());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"({"accepted":5,"duplicates":5})");
  EXPECT_EQ(Pending(), 15);
  EXPECT_EQ(Events("accepted"), 15);
  EXPECT_EQ(Events("duplicate"), 5);
}

TEST_F(IngestServiceTest, StoredBodyIsTheNormalizedEvent) {
  Start();
  ASSERT_EQ(Post(R"({"events":[{"event":"buy","anonymous_id":"anon","insert_id":"x1",
      "time":"2024-05-01T10:00:00Z","properties":{"sku":"A"},
      "user_properties":{"$set":{"plan":"pro"}}}]})")
                .status,
            200);
  auto lease = store_->Claim({.owner = "t", .max_events = 10, .lease_ttl_ms = 30000});
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  ASSERT_EQ(lease->events.size(), 1u);
  const auto& row = lease->events[0];
  EXPECT_EQ(row.project, "default");
  EXPECT_EQ(row.insert_id, "x1");
  Event e;
  ASSERT_TRUE(ParseBody(row.body, &e).ok()) << row.body;
  EXPECT_EQ(e.event, "buy");
  EXPECT_EQ(e.anonymous_id, "anon");
  EXPECT_EQ(e.time_ms, 1714557600000);
  EXPECT_EQ(e.properties, R"({"sku":"A"})");
  EXPECT_EQ(e.set, R"({"plan":"pro"})");
  EXPECT_GT(e.received_ms, 0);
}

TEST_F(IngestServiceTest, ReceiveTimeComesFromTheInjectedClock) {
  clock_ = &fake_clock_;
  Start();
  ASSERT_EQ(Post(R"({"events":[{"event":"e","user_id":"u","insert_id":"t1"}]})").status, 200);
  auto lease = store_->Claim({.owner = "t", .max_events = 10, .lease_ttl_ms = 30000});
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  ASSERT_EQ(lease->events.size(), 1u);
  Event e;
  ASSERT_TRUE(ParseBody(lease->events[0].body, &e).ok());
  EXPECT_EQ(e.received_ms, fake_clock_.WallMs());
  EXPECT_EQ(e.time_ms, fake_clock_.WallMs());  // no time given: the receive time
}

TEST_F(IngestServiceTest, BadEventRejectsTheWholeBatchAndStoresNothing) {
  Start();
  std::string body = R"({"events":[{"event":"a","user_id":"u","insert_id":"k0"},
      {"event":"a","user_id":"u","insert_id":"k1"},{"user_id":"u","insert_id":"k2"}]})";
  auto r = Post(body);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body, R"({"error":"event: a non-empty event name is required","index":2,)"
                    R"("field":"event"})");
  EXPECT_EQ(Pending(), 0);
  // The good events were not stored: sending them now accepts them all.
  r = Post(R"({"events":[{"event":"a","user_id":"u","insert_id":"k0"},
      {"event":"a","user_id":"u","insert_id":"k1"}]})");
  EXPECT_EQ(r.body, R"({"accepted":2,"duplicates":0})");
}

TEST_F(IngestServiceTest, EveryRejectionLeavesTheStoreUnchanged) {
  limits_.max_body_bytes = 64 * 1024;
  Start();
  ASSERT_EQ(Post(Batch("base", 3)).status, 200);
  const int64_t before = Pending();
  EXPECT_EQ(Post("{not json").status, 400);
  EXPECT_EQ(Post(R"({"events":[{"event":5,"user_id":"u"}]})").status, 400);
  EXPECT_EQ(Post(R"({"events":[{"event":"e"}]})").status, 400);
  EXPECT_EQ(Post(Batch("big", 1001)).status, 413);
  EXPECT_EQ(Post(std::string("{\"events\":[{\"event\":\"\xff\",\"user_id\":\"u\"}]}")).status, 400);
  EXPECT_EQ(Post(std::string(100 * 1024, ' ')).status, 413);
  EXPECT_EQ(Post("{}", {"Content-Encoding: br"}).status, 400);
  EXPECT_EQ(Post("not gzip", {"Content-Encoding: gzip"}).status, 400);
  EXPECT_EQ(RawCall(port_, "POST", "/v1/nothing-here", "{}").status, 404);
  EXPECT_EQ(Pending(), before);
  // 6 reached the ingest service; the two 413s (body > 64 KiB) and the 404
  // were refused before it (counted in sluice_http_rejected_total).
  EXPECT_GE(Events("rejected"), 6);
}

TEST_F(IngestServiceTest, TenMebibyteBodyIs413) {
  Start();
  RawConn c(port_);
  const std::string body(10 << 20, 'x');
  c.Send("POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body.substr(0, 1 << 20));
  EXPECT_EQ(c.Read().status, 413);
  EXPECT_EQ(Pending(), 0);
}

TEST_F(IngestServiceTest, GzipBodiesAreAcceptedAndBombsAre413) {
  limits_.max_decompressed_bytes = 1 << 20;
  Start();
  auto r = Post(Gzip(Batch("gz", 50)), {"Content-Encoding: gzip"});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"({"accepted":50,"duplicates":0})");
  const std::string bomb = Gzip(std::string(8 << 20, ' '));
  ASSERT_LT(bomb.size(), limits_.max_body_bytes);
  EXPECT_EQ(Post(bomb, {"Content-Encoding: gzip"}).status, 413);
  EXPECT_EQ(Pending(), 50);
}

TEST_F(IngestServiceTest, OversizedEventIs413WithItsIndex) {
  limits_.max_event_bytes = 300;
  Start();
  std::string body = R"({"events":[{"event":"e","user_id":"u"},{"event":"e","user_id":"u",)"
                     R"("properties":{"blob":")" +
                     std::string(400, 'b') + R"("}}]})";
  auto r = Post(body);
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("\"index\":1"), std::string::npos) << r.body;
  EXPECT_EQ(Pending(), 0);
}

TEST_F(IngestServiceTest, AuthRequiresAKnownWriteKey) {
  auth_.write_keys = {{"key-one", "alpha"}, {"key-two", "beta"}};
  Start();
  auto r = Post(Batch("n", 1));
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.body.find("write key"), std::string::npos);
  EXPECT_EQ(Post(Batch("w", 1), {"Authorization: Bearer key-wrong"}).status, 401);
  EXPECT_EQ(Post(Batch("w", 1, "key-on")).status, 401);
  EXPECT_EQ(Pending(), 0);

  EXPECT_EQ(Post(Batch("body", 1, "key-one")).status, 200);
  // Basic auth: the key as user name, empty password ("key-two:" base64).
  EXPECT_EQ(Post(Batch("basic", 1), {"Authorization: Basic a2V5LXR3bzo="}).status, 200);
  EXPECT_EQ(Post(Batch("bearer", 1), {"Authorization: Bearer key-one"}).status, 200);

  auto lease = store_->Claim({.owner = "t", .max_events = 10, .lease_ttl_ms = 30000});
  ASSERT_TRUE(lease.ok());
  ASSERT_EQ(lease->events.size(), 3u);
  std::map<std::string, std::string> project_of;
  for (const auto& e : lease->events) project_of[e.insert_id] = e.project;
  EXPECT_EQ(project_of["body0"], "alpha");
  EXPECT_EQ(project_of["basic0"], "beta");
  EXPECT_EQ(project_of["bearer0"], "alpha");
}

TEST_F(IngestServiceTest, AboveHighWaterAnswers503WithRetryAfter) {
  limits_.high_water = 5;
  limits_.retry_after_s = 7;
  Start();
  ASSERT_EQ(Post(Batch("fill", 10)).status, 200);
  RawResponse r;
  // The queue depth is sampled in the background; wait for it to be seen.
  ASSERT_TRUE(WaitUntil(
      [&] {
        r = Post(Batch("more", 2));
        return r.status == 503;
      },
      std::chrono::seconds(5)));
  EXPECT_EQ(r.headers["retry-after"], "7");
  // Requests before the depth refresh may have landed; none after it.
  const int64_t depth = Pending();
  EXPECT_EQ(Post(Batch("after", 2)).status, 503);
  EXPECT_EQ(Pending(), depth);
}

TEST_F(IngestServiceTest, FailedCommitAnswers503AndStoresNothingOfTheBatch) {
  Start();
  ASSERT_EQ(testing::InjectEnqueueFailure("sqlite", url_, "poison"), "");
  auto r = Post(R"({"events":[{"event":"a","user_id":"u","insert_id":"ok1"},
      {"event":"a","user_id":"u","insert_id":"ok2"},
      {"event":"a","user_id":"u","insert_id":"poison"}]})");
  EXPECT_EQ(r.status, 503);
  EXPECT_FALSE(r.headers["retry-after"].empty());
  EXPECT_EQ(Pending(), 0);
  r = Post(R"({"events":[{"event":"a","user_id":"u","insert_id":"ok1"},
      {"event":"a","user_id":"u","insert_id":"ok2"}]})");
  EXPECT_EQ(r.body, R"({"accepted":2,"duplicates":0})");
}

TEST_F(IngestServiceTest, ConcurrentRequestsShareGroupCommits) {
  Start();
  constexpr int kThreads = 8, kRequests = 25, kEvents = 10;
  std::atomic<int64_t> accepted{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kThreads; ++t) {
    clients.emplace_back([&, t] {
      RawConn c(port_);
      for (int i = 0; i < kRequests; ++i) {
        const std::string prefix = "t" + std::to_string(t) + "r" + std::to_string(i) + "-";
        if (!c.Send(RawRequest("POST", "/v1/events", Batch(prefix, kEvents)))) {
          failures++;
          return;
        }
        auto r = c.Read();
        if (r.status != 200) {
          failures++;
          continue;
        }
        accepted += kEvents;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(accepted.load(), kThreads * kRequests * kEvents);
  EXPECT_EQ(Pending(), kThreads * kRequests * kEvents);
  EXPECT_EQ(Events("accepted"), kThreads * kRequests * kEvents);
  std::vector<int64_t> cumulative;
  double sum = 0;
  int64_t groups = 0;
  metrics_.GetHistogram("sluice_group_commit_size", "", "").Snapshot(&cumulative, &sum, &groups);
  EXPECT_EQ(static_cast<int64_t>(sum), kThreads * kRequests * kEvents);
  EXPECT_LE(groups, kThreads * kRequests);
}

TEST_F(IngestServiceTest, FailedCommitsAnswer503ThenRecover) {
  faults_.fail_first_requests = 2;
  Start();
  EXPECT_EQ(Post(Batch("f", 1)).status, 503);
  EXPECT_EQ(Post(Batch("f", 1)).status, 503);
  EXPECT_EQ(Pending(), 0);
  EXPECT_EQ(Post(Batch("f", 1)).status, 200);
}

// Browser SDKs send a CORS preflight before each cross-origin POST.
TEST_F(IngestServiceTest, CorsPreflightIsAnsweredAndAnswersCarryTheOrigin) {
  Start();
  auto pre = RawCall(port_, "OPTIONS", "/v1/events", "",
                     {"Origin: https://app.example", "Access-Control-Request-Method: POST",
                      "Access-Control-Request-Headers: content-type, authorization"});
  ASSERT_EQ(pre.status, 204) << pre.body;
  EXPECT_EQ(pre.headers["access-control-allow-origin"], "https://app.example");
  EXPECT_EQ(pre.headers["access-control-allow-headers"], "content-type, authorization");
  EXPECT_NE(pre.headers["access-control-allow-methods"].find("POST"), std::string::npos);
  EXPECT_EQ(Pending(), 0);

  auto post = Post(Batch("c", 2), {"Origin: https://app.example"});
  ASSERT_EQ(post.status, 200) << post.body;
  EXPECT_EQ(post.headers["access-control-allow-origin"], "https://app.example");
  EXPECT_EQ(Pending(), 2);

  // A header list that is not one gets the default list, not an echo.
  auto odd = RawCall(port_, "OPTIONS", "/v1/events", "",
                     {"Origin: https://app.example", "Access-Control-Request-Headers: a;b=\"c\""});
  ASSERT_EQ(odd.status, 204);
  EXPECT_EQ(odd.headers["access-control-allow-headers"],
            "Content-Type, Content-Encoding, Authorization");
  // No format serves this path: no preflight either.
  EXPECT_EQ(RawCall(port_, "OPTIONS", "/nowhere", "", {"Origin: https://app.example"}).status, 404);
  // Without an Origin, no CORS headers.
  EXPECT_EQ(Post(Batch("d", 1)).headers.count("access-control-allow-origin"), 0u);
}

TEST_F(IngestServiceTest, AllFormatsStartWithNative) {
  auto formats = AllFormats();
  ASSERT_FALSE(formats.empty());
  EXPECT_EQ(formats[0]->name(), "native");
}

}  // namespace
}  // namespace sluice
