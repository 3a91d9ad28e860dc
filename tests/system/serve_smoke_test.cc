// The real binary end to end: serve on SQLite, ingest over HTTP, read the
// aggregates back, scrape /metrics, check /admin/status, drain on SIGTERM,
// and the store-side CLI commands against the same file.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "ingest/formats/native.h"
#include "testing/process.h"
#include "testing/testing.h"

namespace sluice {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::HttpGet;
using testing::HttpPost;
using testing::RunSluice;
using testing::SluiceProcess;

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The integer value of the first "key": in a flat JSON text; -1 when absent.
int64_t JsonInt(const std::string& json, const std::string& key) {
  const size_t at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return -1;
  return std::strtoll(json.c_str() + at + key.size() + 3, nullptr, 10);
}

class ServeSmokeTest : public ::testing::Test {
 protected:
  std::string StoreUrl() const { return "sqlite:" + dir_.File("sluice.db"); }

  std::unique_ptr<SluiceProcess> StartServe(std::vector<std::string> extra = {}) {
    testing::SluiceProcessOptions o;
    o.dir = dir_.path();
    o.args = {"--store", StoreUrl(), "--replica-id", "smoke-1"};
    for (auto& a : extra) o.args.push_back(a);
    auto p = std::make_unique<SluiceProcess>(o);
    EXPECT_TRUE(p->Start()) << p->error();
    return p;
  }

  testing::TempDir dir_;
};

// 2024-05-01T10:00:00Z and a few minutes later.
constexpr int64_t kT0 = 1714557600000;

std::string Batch() {
  return R"({"events":[
    {"insert_id":"e1","event":"signup","user_id":"u1","time":1714557600000,
     "properties":{"plan":"free"},
     "user_properties":{"$set":{"plan":"free"},"$set_once":{"src":"ad"}}},
    {"insert_id":"e2","event":"login","user_id":"u1","time":"2024-05-01T10:05:00Z"},
    {"insert_id":"e3","event":"login","user_id":"u1","time":1714557900000,
     "user_properties":{"$set":{"plan":"pro"}}},
    {"insert_id":"e4","event":"login","anonymous_id":"anon-9","time":1714557960000}]})";
}

TEST_F(ServeSmokeTest, IngestedEventsReachReadApiMetricsAndStatusThenSigtermExitsZero) {
  auto p = StartServe();
  ASSERT_TRUE(p->Running());

  auto first = HttpPost(p->Url("/v1/events"), Batch());
  ASSERT_EQ(first.status, 200) << first.body << first.error;
  EXPECT_TRUE(Contains(first.body, "\"accepted\":4")) << first.body;
  auto again = HttpPost(p->Url("/v1/events"), Batch());
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_TRUE(Contains(again.body, "\"duplicates\":4")) << again.body;

  // The watcher applies the users + counters consumers shortly after.
  testing::HttpResult user;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        user = HttpGet(p->Url("/v1/users/u1"));
        return user.status == 200 && Contains(user.body, "\"events\":3");
      },
      seconds(20), milliseconds(50)))
      << user.status << " " << user.body << "\n"
      << p->ReadLog();
  EXPECT_TRUE(Contains(user.body, "\"user_id\":\"u1\"")) << user.body;
  EXPECT_TRUE(Contains(user.body, "\"first_seen\":\"2024-05-01T10:00:00")) << user.body;
  EXPECT_TRUE(Contains(user.body, "\"last_seen\":\"2024-05-01T10:05:00")) << user.body;
  EXPECT_TRUE(Contains(user.body, "\"login\":2")) << user.body;
  EXPECT_TRUE(Contains(user.body, "\"signup\":1")) << user.body;
  EXPECT_TRUE(Contains(user.body, "\"plan\":\"pro\"")) << user.body;
  EXPECT_TRUE(Contains(user.body, "\"src\":\"ad\"")) << user.body;

  auto unknown = HttpGet(p->Url("/v1/users/nobody"));
  EXPECT_EQ(unknown.status, 404) << unknown.body;

  testing::HttpResult counters;
  const std::string q = "/v1/counters?event=login&bucket=hour&from=" + std::to_string(kT0) +
                        "&to=2024-05-01T12:00:00Z";
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        counters = HttpGet(p->Url(q));
        return counters.status == 200 && Contains(counters.body, "\"count\":3");
      },
      seconds(20), milliseconds(50)))
      << counters.status << " " << counters.body;
  EXPECT_TRUE(
      Contains(counters.body, "{\"ts\":" + std::to_string(kT0) + ",\"count\":3,\"users\":2}"))
      << counters.body;

  auto metrics = HttpGet(p->Url("/metrics"));
  ASSERT_EQ(metrics.status, 200);
  EXPECT_TRUE(Contains(metrics.Header("content-type"), "text/plain; version=0.0.4"));
  for (const char* series :
       {"sluice_queue_events{state=\"pending\"}", "sluice_queue_events{state=\"leased\"}",
        "sluice_queue_events{state=\"dead\"}", "sluice_deliveries_total{consumer=\"users\"}",
        "sluice_deliveries_total{consumer=\"counters\"}", "sluice_build_info"}) {
    EXPECT_TRUE(Contains(metrics.body, series)) << series << "\n" << metrics.body;
  }

  auto status = HttpGet(p->Url("/admin/status"));
  ASSERT_EQ(status.status, 200) << status.body;
  for (const char* key : {"\"queue\":{\"pending\":", "\"leased\":", "\"dead\":0",
                          "\"oldest_pending_age_ms\":", "\"replicas\":[{\"id\":\"smoke-1\"",
                          "\"host\":", "\"pid\":", "\"version\":", "\"started\":", "\"heartbeat\":",
                          "\"leases_held\":", "\"store\":\"sqlite\""}) {
    EXPECT_TRUE(Contains(status.body, key)) << key << "\n" << status.body;
  }
  EXPECT_EQ(HttpGet(p->Url("/healthz")).status, 200);
  EXPECT_EQ(HttpGet(p->Url("/readyz")).status, 200);

  std::optional<int> code = p->Terminate(seconds(30));
  ASSERT_TRUE(code.has_value()) << "sluice did not exit after SIGTERM\n" << p->ReadLog();
  EXPECT_EQ(*code, 0) << p->ReadLog();
  const std::string log = p->ReadLog();
  EXPECT_TRUE(Contains(log, "\"msg\":\"draining\"")) << log;
  EXPECT_TRUE(Contains(log, "\"msg\":\"stopped\"")) << log;

  // The CLI reads the same store directly; the drained replica is gone.
  auto cli = RunSluice({"status", "--json", "--store", StoreUrl()});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_TRUE(Contains(cli.out, "\"queue\":{\"pending\":0,\"leased\":0,\"dead\":0")) << cli.out;
  EXPECT_TRUE(Contains(cli.out, "\"replicas\":[]")) << cli.out;
  EXPECT_TRUE(Contains(cli.out, "\"store\":\"sqlite\"")) << cli.out;
  auto text = RunSluice({"status", "--store", StoreUrl()});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_TRUE(Contains(text.out, "pending 0")) << text.out;
}

TEST_F(ServeSmokeTest, SendPostsArgumentEventsAndNdjsonFilesInBatches) {
  auto p = StartServe();
  auto sent = RunSluice({"send", "--url", p->url(), "--event", "click", "--user", "u7", "--prop",
                         "n=3", "--prop", "label=hi there", "--count", "3"});
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  EXPECT_TRUE(Contains(sent.out, "accepted 3")) << sent.out;

  const std::string file = dir_.File("events.ndjson");
  {
    std::ofstream out(file);
    for (int i = 0; i < 1200; ++i) {  // three POSTs of <= 500
      Event e;
      e.insert_id = "f" + std::to_string(i);
      e.event = "view";
      e.user_id = "u" + std::to_string(i % 10);
      e.time_ms = kT0 + i;
      std::string line;
      EncodeNativeEvent(e, &line);
      out << line << "\n";
    }
    out << "\n";
  }
  auto from_file = RunSluice({"send", "--url", p->url(), "--file", file});
  ASSERT_EQ(from_file.exit_code, 0) << from_file.err;
  EXPECT_TRUE(Contains(from_file.out, "sent 1200 event(s): accepted 1200, duplicates 0"))
      << from_file.out;

  testing::HttpResult user;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        user = HttpGet(p->Url("/v1/users/u3"));
        return user.status == 200 && Contains(user.body, "\"events\":120");
      },
      seconds(30), milliseconds(50)))
      << user.body;
  auto bad = RunSluice({"send", "--url", p->url(), "--event", "x"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_EQ(p->Terminate(seconds(30)), std::optional<int>(0)) << p->ReadLog();
}

TEST_F(ServeSmokeTest, KilledReplicaRestartsOnTheSameStoreAndKeepsData) {
  // A short lease so a batch held by the killed process is reclaimed quickly.
  const std::string cfg = dir_.File("short-lease.toml");
  std::ofstream(cfg) << "[watcher]\nlease_ttl = \"2s\"\n";
  auto p = StartServe({"--config", cfg});
  auto posted = HttpPost(p->Url("/v1/events"), Batch());
  ASSERT_EQ(posted.status, 200) << posted.body;
  EXPECT_EQ(p->Kill(), -9);
  ASSERT_TRUE(p->Restart()) << p->error();
  testing::HttpResult user;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        user = HttpGet(p->Url("/v1/users/u1"));
        return user.status == 200 && Contains(user.body, "\"events\":3");
      },
      seconds(60), milliseconds(100)))
      << user.body << "\n"
      << p->ReadLog();
  EXPECT_EQ(p->Terminate(seconds(30)), std::optional<int>(0)) << p->ReadLog();
}

TEST_F(ServeSmokeTest, CliVersionMigrateDlqAndConfigErrors) {
  auto version = RunSluice({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_TRUE(Contains(version.out, "sluice 0.1.0")) << version.out;

  auto migrate = RunSluice({"migrate", "--store", StoreUrl()});
  ASSERT_EQ(migrate.exit_code, 0) << migrate.err;
  EXPECT_TRUE(Contains(migrate.out, "sqlite")) << migrate.out;

  auto list = RunSluice({"dlq", "list", "--json", "--store", StoreUrl()});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(Contains(list.out, "\"count\":0")) << list.out;
  EXPECT_EQ(RunSluice({"dlq", "purge", "--store", StoreUrl()}).exit_code, 2);
  auto purge = RunSluice({"dlq", "purge", "--all", "--store", StoreUrl()});
  EXPECT_EQ(purge.exit_code, 0) << purge.err;
  EXPECT_EQ(RunSluice({"dlq", "requeue", "--id", "5", "--store", StoreUrl()}).exit_code, 0);

  auto bench = RunSluice({"bench"});
  EXPECT_EQ(bench.exit_code, 2);
  EXPECT_EQ(RunSluice({"frobnicate"}).exit_code, 2);

  // Public listen without auth is refused before anything starts.
  auto open = RunSluice({"serve", "--listen", "0.0.0.0:0", "--store", StoreUrl()});
  EXPECT_EQ(open.exit_code, 2);
  EXPECT_TRUE(Contains(open.err, "allow_public_without_auth")) << open.err;

  const std::string cfg = dir_.File("bad.toml");
  std::ofstream(cfg) << "[watcher]\nloops = -1\n";
  auto bad = RunSluice({"serve", "--config", cfg});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_TRUE(Contains(bad.err, "watcher.loops")) << bad.err;
}

TEST_F(ServeSmokeTest, AnyIdOfAPersonAnswersThePersonOverHttpAndUsersShow) {
  auto p = StartServe();
  ASSERT_TRUE(p->Running());
  auto r = HttpPost(p->Url("/v1/events"), R"({"events":[
    {"insert_id":"v1","event":"view","anonymous_id":"anon-9","time":1714557600000,
     "user_properties":{"$set":{"plan":"free"}}},
    {"insert_id":"v2","event":"identify","type":"identify","user_id":"ann",
     "anonymous_id":"anon-9","time":1714557700000,"user_properties":{"$set":{"plan":"pro"}}}]})");
  ASSERT_EQ(r.status, 200) << r.body;
  testing::HttpResult person;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        person = HttpGet(p->Url("/v1/users/anon-9"));
        return person.status == 200 && Contains(person.body, "\"events\":2");
      },
      seconds(20), milliseconds(50)))
      << person.status << " " << person.body;
  EXPECT_EQ(person.body,
            R"({"user_id":"ann","ids":["ann","anon-9"],"project":"default",)"
            R"("first_seen":"2024-05-01T10:00:00.000Z","last_seen":"2024-05-01T10:01:40.000Z",)"
            R"("events":2,"event_counts":{"identify":1,"view":1},"properties":{"plan":"pro"},)"
            R"("merges_refused":[]})");
  EXPECT_EQ(HttpGet(p->Url("/v1/users/ann")).body, person.body);

  auto json = RunSluice({"users", "show", "anon-9", "--json", "--store", StoreUrl()});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_EQ(json.out, person.body + "\n");
  auto text = RunSluice({"users", "show", "ann", "--store", StoreUrl()});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_TRUE(Contains(text.out, "ids:        ann, anon-9")) << text.out;
  EXPECT_EQ(RunSluice({"users", "show", "nobody", "--store", StoreUrl()}).exit_code, 3);
}

TEST_F(ServeSmokeTest, AdminTokenAndWriteKeysGuardTheApis) {
  const std::string cfg = dir_.File("auth.toml");
  std::ofstream(cfg) << "[auth]\nadmin_token = \"adm-token\"\n[auth.write_keys]\nwk-1 = \"p1\"\n";
  auto p = StartServe({"--config", cfg});
  EXPECT_EQ(HttpGet(p->Url("/admin/status")).status, 401);
  EXPECT_EQ(HttpGet(p->Url("/admin/status"), {{"Authorization", "Bearer adm-token"}}).status, 200);
  EXPECT_EQ(HttpGet(p->Url("/v1/users/u1")).status, 401);
  EXPECT_EQ(HttpGet(p->Url("/v1/users/u1"), {{"Authorization", "Bearer wk-1"}}).status, 404);
  EXPECT_EQ(HttpGet(p->Url("/metrics")).status, 200);
  const std::string log = p->ReadLog();
  EXPECT_FALSE(Contains(log, "adm-token")) << log;
  EXPECT_FALSE(Contains(log, "wk-1")) << log;
  EXPECT_EQ(p->Terminate(seconds(30)), std::optional<int>(0)) << p->ReadLog();
}

TEST_F(ServeSmokeTest, PausedReplicaAnswersNothingUntilResumed) {
  auto p = StartServe();
  p->Pause();
  EXPECT_EQ(HttpGet(p->Url("/healthz"), {}, milliseconds(300)).status, 0);
  p->Resume();
  EXPECT_TRUE(testing::WaitUntil(
      [&] { return HttpGet(p->Url("/healthz"), {}, seconds(2)).status == 200; }, seconds(10)));
  // Terminate also works on a paused process (it is continued first).
  p->Pause();
  EXPECT_EQ(p->Terminate(seconds(30)), std::optional<int>(0)) << p->ReadLog();
}

// SIGTERM while clients are posting: every acknowledged event is in the store
// and gets processed after a restart; the drain exits 0.
TEST_F(ServeSmokeTest, SigtermUnderIngestLosesNoAcknowledgedEvent) {
  auto p = StartServe();
  constexpr int kThreads = 3;
  std::atomic<int64_t> acked[kThreads] = {};
  std::atomic<int64_t> attempted[kThreads] = {};
  std::atomic<bool> go{true};
  std::vector<std::thread> posters;
  const std::string url = p->Url("/v1/events");
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&, t] {
      for (int batch = 0; go.load(); ++batch) {
        NativeBodyBuilder builder;
        for (int i = 0; i < 50; ++i) {
          Event e;
          e.insert_id =
              "t" + std::to_string(t) + "-" + std::to_string(batch) + "-" + std::to_string(i);
          e.event = "load";
          e.user_id = "poster" + std::to_string(t);
          e.time_ms = kT0;
          builder.Add(e);
        }
        const std::string body = builder.Finish();
        attempted[t] += 50;
        auto r = HttpPost(url, body, {}, seconds(10));
        if (r.status != 200) return;  // the server went away: stop
        acked[t] += 50;
      }
    });
  }
  ASSERT_TRUE(testing::WaitUntil([&] { return acked[kThreads - 1].load() >= 200; }, seconds(20)));
  std::optional<int> code = p->Terminate(seconds(30));
  go = false;
  for (auto& th : posters) th.join();
  ASSERT_EQ(code, std::optional<int>(0)) << p->ReadLog();

  ASSERT_TRUE(p->Restart()) << p->error();
  // Wait until the restarted replica has processed everything.
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        auto st = HttpGet(p->Url("/admin/status"));
        return st.status == 200 && Contains(st.body, "\"pending\":0,\"leased\":0,");
      },
      seconds(30), milliseconds(50)));
  for (int t = 0; t < kThreads; ++t) {
    auto user = HttpGet(p->Url("/v1/users/poster" + std::to_string(t)));
    ASSERT_EQ(user.status, 200) << user.body;
    const int64_t events = JsonInt(user.body, "events");
    // Acknowledged events are all there; a batch in flight at SIGTERM may be
    // committed without its answer reaching the client (at-least-once edge).
    EXPECT_GE(events, acked[t].load()) << user.body;
    EXPECT_LE(events, attempted[t].load()) << user.body;
  }
  EXPECT_EQ(p->Terminate(seconds(30)), std::optional<int>(0)) << p->ReadLog();
}

}  // namespace
}  // namespace sluice
