// PostgreSQL-specific behaviour of PostgresStore, beyond the shared
// conformance suite: migrations under concurrent start-up, LISTEN/NOTIFY
// wake-ups, the claim's index, the pool bound, binary-safe parameters, and
// the server going away and coming back.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "fmt/format.h"
#include "queue/store.h"
#include "testing/pg_fixture.h"
#include "testing/testing.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;

std::string FreshUrl() {
  std::string error;
  std::string url = testing::FreshPostgresUrl(&error);
  EXPECT_FALSE(url.empty()) << error;
  return url;
}

StorePtr OpenPg(const std::string& url, StoreOptions o = {}) {
  o.url = url;
  auto s = Store::Open(o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : nullptr;
}

std::vector<NewEvent> Events(const std::string& prefix, int n) {
  std::vector<NewEvent> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(NewEvent{"default", fmt::format("{}{}", prefix, i),
                           fmt::format(R"({{"event":"e","user_id":"u{}","time":1}})", i)});
  }
  return out;
}

Status EnqueueAll(Store& s, const std::vector<NewEvent>& events) {
  EnqueueBatch b{events};
  auto r = s.Enqueue(std::span<const EnqueueBatch>(&b, 1));
  return r.status();
}

std::string Query(const std::string& url, const std::string& sql) {
  std::string error;
  std::string v = testing::PostgresQueryValue(url, sql, &error);
  EXPECT_EQ(error, "") << sql;
  return v;
}

TEST(PostgresStoreTest, ReplicasStartingTogetherMigrateOnce) {
  const std::string url = FreshUrl();
  ASSERT_FALSE(url.empty());
  std::vector<std::thread> threads;
  std::atomic<int> opened{0};
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&] {
      StoreOptions o;
      o.url = url;
      o.pool_size = 1;
      auto s = Store::Open(o);
      EXPECT_TRUE(s.ok()) << s.status().ToString();
      if (s.ok()) ++opened;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(opened.load(), 6);
  EXPECT_EQ(Query(url, "SELECT count(*) FROM sluice_schema"), "1");
  EXPECT_EQ(Query(url, "SELECT max(version) FROM sluice_schema"), "1");
}

TEST(PostgresStoreTest, EnqueueOnOneReplicaWakesAnotherThroughNotify) {
  const std::string url = FreshUrl();
  ASSERT_FALSE(url.empty());
  StorePtr a = OpenPg(url);
  StorePtr b = OpenPg(url);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::atomic<int> wakes{0};
  a->SetWakeCallback([&] { ++wakes; });
  // The listener calls once when its LISTEN is in place (catch-up).
  ASSERT_TRUE(testing::WaitUntil([&] { return wakes.load() >= 1; }, 10s));
  const int before = wakes.load();
  ASSERT_TRUE(EnqueueAll(*b, Events("n", 3)).ok());
  EXPECT_TRUE(testing::WaitUntil([&] { return wakes.load() > before; }, 10s));
  a->SetWakeCallback(nullptr);
}

TEST(PostgresStoreTest, ClaimWalksTheClaimIndexPastLeasedRows) {
  const std::string url = FreshUrl();
  ASSERT_FALSE(url.empty());
  StorePtr s = OpenPg(url);
  ASSERT_NE(s, nullptr);
  // 100,000 pending rows, the first 2,000 held by a live lease.
  ASSERT_EQ(testing::PostgresExec(
                url,
                "INSERT INTO queue (project, insert_id, body) SELECT 'default', 'id' || g, "
                "'{\"event\":\"e\",\"user_id\":\"u\",\"time\":1}' "
                "FROM generate_series(1, 100000) g; "
                "UPDATE queue SET state = 'leased', lease_owner = 'other/0', lease_token = 1, "
                "lease_until = now() + interval '1 hour', visible_at = now() + interval '1 hour' "
                "WHERE seq <= 2000; ANALYZE queue;"),
            "");
  // The plan of the store's own statement, as prepared on its connection, is
  // not reachable from here; pg_stat_user_indexes shows which index it used.
  auto scans = [&] {
    return std::stoll(Query(url,
                            "SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes "
                            "WHERE indexrelname = 'queue_claim'"));
  };
  const int64_t before = scans();
  auto lease = s->Claim(ClaimRequest{"me/0", 500, 30000});
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  ASSERT_EQ(lease->events.size(), 500u);
  EXPECT_EQ(lease->events.front().seq, 2001);
  EXPECT_EQ(lease->events.back().seq, 2500);
  EXPECT_TRUE(testing::WaitUntil([&] { return scans() > before; }, 10s, 100ms))
      << "the claim did not use queue_claim";
}

TEST(PostgresStoreTest, TextParametersRoundTripExactly) {
  const std::string url = FreshUrl();
  ASSERT_FALSE(url.empty());
  StorePtr s = OpenPg(url);
  ASSERT_NE(s, nullptr);
  const std::vector<std::string> nasty = {
      "NULL", "", " ", "a,b", "{x}", "\"q\"", "back\\slash", "new\nline", "tab\t",
      "caf\xc3\xa9 \xf0\x9f\x98\x80", "'single'", "$1", "}{\",\\"};
  std::vector<NewEvent> events;
  for (size_t i = 0; i < nasty.size(); ++i) {
    events.push_back(NewEvent{"p" + nasty[i], "id" + nasty[i], "{\"b\":\"" + nasty[i] + "\"}"});
  }
  ASSERT_TRUE(EnqueueAll(*s, events).ok());
  auto lease = s->Claim(ClaimRequest{"me/0", 100, 30000});
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  ASSERT_EQ(lease->events.size(), events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(lease->events[i].project, events[i].project);
    EXPECT_EQ(lease->events[i].insert_id, events[i].insert_id);
    EXPECT_EQ(lease->events[i].body, events[i].body);
  }
}

TEST(PostgresStoreTest, InvalidUtf8IsRejectedAndNothingIsStored) {
  const std::string url = FreshUrl();
  ASSERT_FALSE(url.empty());
  StorePtr s = OpenPg(url);
  ASSERT_NE(s, nullptr);
  auto events = Events("ok", 3);
  events.push_back(NewEvent{"default", "bad", "{\"b\":\"\xff\xfe\"}"});
  Status st = EnqueueAll(*s, events);
  EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.ToString();
  auto stats = s->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pending, 0);
  EXPECT_EQ(Query(url, "SELECT count(*) FROM dedup"), "0");
}

TEST(PostgresStoreTest, PoolNeverOpensMoreConnectionsThanItsSize) {
  const std::string url = FreshUrl();
  ASSERT_FALSE(url.empty());
  StoreOptions o;
  o.pool_size = 2;
  StorePtr s = OpenPg(url, o);
  ASSERT_NE(s, nullptr);
  const std::string db = url.substr(url.rfind('/') + 1);
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; !stop.load() && i < 200; ++i) {
        if (!EnqueueAll(*s, Events(fmt::format("t{}-{}-", t, i), 5)).ok()) ++errors;
        if (!s->Claim(ClaimRequest{fmt::format("r/{}", t), 5, 30000}).ok()) ++errors;
      }
    });
  }
  int64_t max_seen = 0;
  for (int i = 0; i < 20; ++i) {
    max_seen = std::max<int64_t>(
        max_seen, std::stoll(Query(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = '" +
                                            db + "' AND application_name = 'sluice'")));
    std::this_thread::sleep_for(20ms);
  }
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GE(max_seen, 1);
  EXPECT_LE(max_seen, 2);
}

TEST(PostgresStoreTest, ServerDownIsUnavailableWithinTheTimeoutThenRecoversByItself) {
  testing::PgCluster cluster;
  ASSERT_EQ(cluster.Start(), "");
  ASSERT_EQ(testing::PostgresExec(cluster.url(), "CREATE DATABASE down"), "");
  const std::string url = testing::PostgresUrlWithDatabase(cluster.url(), "down");
  StoreOptions o;
  o.busy_timeout_ms = 2000;
  StorePtr s = OpenPg(url, o);
  StorePtr other = OpenPg(url, o);
  ASSERT_NE(s, nullptr);
  ASSERT_NE(other, nullptr);
  std::atomic<int> wakes{0};
  s->SetWakeCallback([&] { ++wakes; });
  ASSERT_TRUE(EnqueueAll(*s, Events("before", 10)).ok());

  ASSERT_EQ(cluster.StopFast(), "");
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    Status st = EnqueueAll(*s, Events("down", 10));
    auto claim = s->Claim(ClaimRequest{"me/0", 10, 30000});
    const auto elapsed = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
    EXPECT_EQ(claim.status().code(), Code::kUnavailable) << claim.status().ToString();
    EXPECT_LT(elapsed, 5s);
  }

  ASSERT_EQ(cluster.StartAgain(), "");
  // No reopen: the pool reconnects after its backoff.
  EXPECT_TRUE(testing::WaitUntil([&] { return EnqueueAll(*s, Events("after", 10)).ok(); }, 20s,
                                 50ms));
  auto lease = s->Claim(ClaimRequest{"me/0", 100, 30000});
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  EXPECT_EQ(lease->events.size(), 20u);  // "before" and "after", nothing of "down"
  // The listener reconnected too: another replica's enqueue wakes us.
  const int before = wakes.load();
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        (void)EnqueueAll(*other, Events(fmt::format("wake{}-", wakes.load()), 1));
        return wakes.load() > before;
      },
      20s, 200ms));
  s->SetWakeCallback(nullptr);
}

}  // namespace
}  // namespace sluice
