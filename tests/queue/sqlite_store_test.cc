// SQLite-specific store behaviour: schema migrations, lock contention,
// query plans of the claim protocol, and an enqueue throughput smoke run.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "queue/effects.h"
#include "queue/open/open_store.h"
#include "queue/sqlite/sqlite_db.h"
#include "queue/sqlite/sqlite_schema.h"
#include "queue/store.h"
#include "testing/store_fixture.h"
#include "testing/testing.h"

namespace sluice {
namespace {

using std::chrono::milliseconds;

// The database file the fixture created under `dir`.
std::string DbFile(const testing::TempDir& dir) {
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path())) {
    if (e.path().filename() == "sluice.db") return e.path().string();
  }
  return "";
}

// Runs `sql` on the file with a plain connection; returns rows as "a|b|c".
std::vector<std::string> Query(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  std::vector<std::string> rows;
  sqlite3_stmt* s = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  while (s != nullptr && sqlite3_step(s) == SQLITE_ROW) {
    std::string row;
    for (int i = 0; i < sqlite3_column_count(s); ++i) {
      if (i > 0) row += "|";
      const unsigned char* t = sqlite3_column_text(s, i);
      row += t != nullptr ? reinterpret_cast<const char*>(t) : "NULL";
    }
    rows.push_back(row);
  }
  sqlite3_finalize(s);
  sqlite3_close(db);
  return rows;
}

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::vector<NewEvent> Events(int n, const std::string& prefix, size_t body_bytes = 300) {
  std::vector<NewEvent> out;
  out.reserve(n);
  std::string pad(body_bytes > 80 ? body_bytes - 80 : 0, 'x');
  for (int i = 0; i < n; ++i) {
    out.push_back({"default", prefix + std::to_string(i),
                   R"({"event":"page_view","user_id":"user-)" + std::to_string(i % 1000) +
                       R"(","time":1700000000000,"properties":{"pad":")" + pad + R"("}})"});
  }
  return out;
}

TEST(SqliteStoreTest, OpenCreatesParentDirectoryAndMigratesOnce) {
  testing::TempDir dir;
  StoreOptions o;
  o.url = "sqlite:" + dir.File("a/b/c/sluice.db");
  {
    auto s = OpenStore(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_STREQ((*s)->kind(), "sqlite");
  }
  EXPECT_EQ(Query(dir.File("a/b/c/sluice.db"), "PRAGMA user_version"),
            std::vector<std::string>{std::to_string(kSqliteSchemaVersion)});
  EXPECT_EQ(Query(dir.File("a/b/c/sluice.db"), "PRAGMA journal_mode"),
            std::vector<std::string>{"wal"});
  auto again = OpenStore(o);  // reopening an up-to-date file changes nothing
  ASSERT_TRUE(again.ok()) << again.status().ToString();
}

TEST(SqliteStoreTest, FileFromANewerBuildIsRefused) {
  testing::TempDir dir;
  const std::string path = dir.File("sluice.db");
  Query(path, "PRAGMA user_version=99");
  StoreOptions o;
  o.url = "sqlite:" + path;
  auto s = OpenStore(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("newer"), std::string::npos);
}

// v4 adds the job tables: a v3 file with events in flight is migrated in
// place, its events stay, and jobs schedule and run on it.
TEST(SqliteStoreTest, V3FileMigratesToTheJobTablesKeepingItsEvents) {
  testing::TempDir dir;
  const std::string path = dir.File("sluice.db");
  {
    auto conn = SqliteConn::Open(path, /*sync=*/false, /*busy_timeout_ms=*/1000, &Clock::Real());
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    ASSERT_TRUE(MigrateSqlite(**conn, /*target=*/3).ok());
    ASSERT_TRUE((*conn)->Exec("INSERT INTO queue(project, insert_id, body, visible_at, enqueued_at) "
                              "VALUES ('p', 'old', '{}', 0, 0)")
                    .ok());
  }
  StoreOptions o;
  o.url = "sqlite:" + path;
  auto store = OpenStore(o);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ(Query(path, "PRAGMA user_version"),
            std::vector<std::string>{std::to_string(kSqliteSchemaVersion)});
  auto lease = (*store)->Claim(ClaimRequest{.owner = "t", .max_events = 10, .lease_ttl_ms = 60000});
  ASSERT_TRUE(lease.ok());
  ASSERT_EQ(lease->events.size(), 1u);
  CompleteRequest req{lease->token, lease->events, 8, 0, {}};
  InStoreEffects part{.bit = 8, .effects = {}};
  part.effects.jobs.push_back(JobDelta{"j", "p", "k", 1, 0, 0, 0, 0});
  req.in_store.push_back(std::move(part));
  ASSERT_TRUE((*store)->Complete(req).ok());
  auto runs = (*store)->ClaimJobRuns(JobClaimRequest{"t", {"j"}, 10, 60000});
  ASSERT_TRUE(runs.ok()) << runs.status().ToString();
  ASSERT_EQ(runs->runs.size(), 1u);
  EXPECT_GT(runs->token, lease->token);
}

// v6 keeps the dedup window as key hashes in time buckets: the entries of a
// v5 file move into bucket 1 (starting at the oldest entry), so their keys
// stay refused after the migration, and unknown keys are accepted.
TEST(SqliteStoreTest, V5DedupEntriesMigrateIntoTheFirstBucketAndStayRefused) {
  testing::TempDir dir;
  const std::string path = dir.File("sluice.db");
  {
    auto conn = SqliteConn::Open(path, /*sync=*/false, /*busy_timeout_ms=*/1000, &Clock::Real());
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    ASSERT_TRUE(MigrateSqlite(**conn, /*target=*/5).ok());
    ASSERT_TRUE((*conn)
                    ->Exec("INSERT INTO dedup(project, insert_id, seen_at) VALUES "
                           "('default', 'seen-1', 1000), ('default', 'seen-2', 2000), "
                           "('other', 'seen-1', 3000)")
                    .ok());
  }
  StoreOptions o;
  o.url = "sqlite:" + path;
  auto store = OpenStore(o);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ(Query(path, "SELECT id, start_ms FROM dedup_buckets"),
            std::vector<std::string>{"1|1000"});
  EXPECT_EQ(Query(path, "SELECT count(*) FROM dedup_1"), std::vector<std::string>{"3"});
  EXPECT_EQ(Query(path, "SELECT count(*) FROM sqlite_master WHERE name IN ('dedup', 'dedup_seen')"),
            std::vector<std::string>{"0"});
  std::vector<NewEvent> events = {{"default", "seen-1", "{}"},
                                  {"default", "seen-2", "{}"},
                                  {"other", "seen-1", "{}"},
                                  {"default", "new-1", "{}"},
                                  {"other", "seen-2", "{}"}};
  EnqueueBatch batch{events};
  auto r = (*store)->Enqueue(std::span<const EnqueueBatch>(&batch, 1));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)[0].duplicates, 3);
  EXPECT_EQ((*r)[0].accepted, 2);
}

// The key's encoding is unambiguous: moving bytes between project and
// insert_id gives another key.
TEST(SqliteStoreTest, DedupKeyDependsOnWhereProjectEnds) {
  const DedupKey a = SqliteDedupKey("ab", "c");
  const DedupKey b = SqliteDedupKey("a", "bc");
  EXPECT_FALSE(a.h1 == b.h1 && a.h2 == b.h2);
  const DedupKey again = SqliteDedupKey("ab", "c");
  EXPECT_TRUE(a.h1 == again.h1 && a.h2 == again.h2);
}

// v1 kept distinct users per counter bucket as text keys; v2 as hashes. A
// file written by v1 is migrated in place, and users it had already counted
// in a bucket are not counted again afterwards.
TEST(SqliteStoreTest, V1CounterUsersMigrateAndKeepCountingDistinctUsers) {
  testing::TempDir dir;
  const std::string path = dir.File("sluice.db");
  constexpr int64_t kHour = 1700000000000 / 3600000 * 3600000;
  {
    auto conn = SqliteConn::Open(path, /*sync=*/false, /*busy_timeout_ms=*/1000, &Clock::Real());
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    ASSERT_TRUE(MigrateSqlite(**conn, /*target=*/1).ok());
    const std::string ins =
        "INSERT INTO counters VALUES ('default', 'page_view', 'hour', " + std::to_string(kHour) +
        ", 2, 2); INSERT INTO counter_users VALUES ('default', 'page_view', 'hour', " +
        std::to_string(kHour) + ", 'u1'), ('default', 'page_view', 'hour', " +
        std::to_string(kHour) + ", 'u2')";
    ASSERT_TRUE((*conn)->Exec(ins.c_str()).ok());
  }
  StoreOptions o;
  o.url = "sqlite:" + path;
  auto store = OpenStore(o);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ(Query(path, "PRAGMA user_version"),
            std::vector<std::string>{std::to_string(kSqliteSchemaVersion)});
  EXPECT_EQ(Query(path, "SELECT count(*) FROM counter_users WHERE bucket = " +
                            std::to_string(kHour) + " AND series = " +
                            std::to_string(CounterSeriesHash("default", "page_view", "hour")) +
                            " AND user_hash IN (" + std::to_string(CounterUserHash("u1")) + ", " +
                            std::to_string(CounterUserHash("u2")) + ")"),
            std::vector<std::string>{"2"});

  // Two more events in that hour: u1 (counted before the migration) and u3.
  std::vector<NewEvent> events;
  for (const char* user : {"u1", "u3"}) {
    events.push_back({"default", std::string("id-") + user,
                      std::string(R"({"event":"page_view","user_id":")") + user +
                          R"(","time":)" + std::to_string(kHour + 60000) + "}"});
  }
  const EnqueueBatch batch{events};
  ASSERT_TRUE((*store)->Enqueue(std::span<const EnqueueBatch>(&batch, 1)).ok());
  auto lease = (*store)->Claim(ClaimRequest{.owner = "t", .max_events = 10, .lease_ttl_ms = 60000});
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  ASSERT_EQ(lease->events.size(), 2u);
  InStoreEffects work{.bit = 1, .effects = {}};
  work.effects.counters.push_back(CounterDelta{"default",
                                               "page_view",
                                               Granularity::kHour,
                                               kHour,
                                               static_cast<int64_t>(lease->events.size()),
                                               {"u1", "u3"}});
  auto done = (*store)->Complete(CompleteRequest{
      .token = lease->token, .events = lease->events, .all_bits = 1, .in_store = {work}});
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(Query(path, "SELECT count, users FROM counters WHERE granularity = 'hour'"),
            std::vector<std::string>{"4|3"});
}

TEST(SqliteStoreTest, UnknownUrlSchemeIsInvalid) {
  StoreOptions o;
  o.url = "mongodb://localhost";
  EXPECT_EQ(OpenStore(o).status().code(), Code::kInvalidArgument);
}

TEST(SqliteStoreTest, ManyHandlesOpeningOneFreshFileTogetherAllSucceed) {
  testing::TempDir dir;
  StoreOptions o;
  o.url = "sqlite:" + dir.File("sluice.db");
  o.pool_size = 2;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&] {
      auto s = OpenStore(o);
      if (s.ok() && (*s)->Stats().ok()) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 6);
}

TEST(SqliteStoreTest, WriteLockHeldTooLongGivesUnavailableAndStoresNothing) {
  testing::TempDir dir;
  StoreOptions o;
  o.busy_timeout_ms = 200;
  auto store = testing::OpenTestStore("sqlite", dir, o);
  ASSERT_NE(store, nullptr);
  // Hold the file's write lock from outside, like a stuck replica would.
  const std::string path = DbFile(dir);
  ASSERT_FALSE(path.empty());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  std::vector<NewEvent> events = Events(3, "x");
  EnqueueBatch batch{events};
  const auto t0 = std::chrono::steady_clock::now();
  auto r = store->Enqueue(std::span<const EnqueueBatch>(&batch, 1));
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().ToString();
  EXPECT_GE(waited, milliseconds(190));
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  auto stats = store->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pending, 0);
  auto again = store->Enqueue(std::span<const EnqueueBatch>(&batch, 1));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->at(0).accepted, 3);
}

TEST(SqliteStoreTest, ClaimScanUsesThePartialIndex) {
  testing::TempDir dir;
  auto store = testing::OpenTestStore("sqlite", dir);
  ASSERT_NE(store, nullptr);
  const std::string path = DbFile(dir);
  auto plan = Query(path,
                    "EXPLAIN QUERY PLAN SELECT seq FROM queue WHERE state != 'dead' AND "
                    "visible_at <= 5 ORDER BY seq LIMIT 10");
  std::string all;
  for (const auto& row : plan) all += row + "\n";
  EXPECT_NE(all.find("COVERING INDEX queue_claim"), std::string::npos) << all;
  EXPECT_EQ(all.find("TEMP B-TREE"), std::string::npos) << all;  // no sort step
}

// Not a timed assertion (CI machines vary): logs events/s so a regression is visible.
TEST(SqliteStoreTest, EnqueueThroughputSmoke) {
  testing::TempDir dir;
  for (bool sync : {false, true}) {
    StoreOptions o;
    o.sync = sync;
    auto store = testing::OpenTestStore("sqlite", dir, o);
    ASSERT_NE(store, nullptr);
    constexpr int kBatches = 400;
    std::vector<std::vector<NewEvent>> data;
    for (int b = 0; b < kBatches; ++b) data.push_back(Events(100, "b" + std::to_string(b) + "-"));
    // Group commit shape: 8 requests of 100 events per transaction.
    const auto t0 = std::chrono::steady_clock::now();
    const double cpu0 = ThreadCpuSeconds();
    int64_t accepted = 0;
    for (int b = 0; b < kBatches; b += 8) {
      std::vector<EnqueueBatch> group;
      for (int k = 0; k < 8; ++k) group.push_back({data[b + k]});
      auto r = store->Enqueue(group);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      for (const auto& x : *r) accepted += x.accepted;
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double cpu = ThreadCpuSeconds() - cpu0;
    EXPECT_EQ(accepted, kBatches * 100);
    std::vector<std::vector<NewEvent>> singles;
    for (int b = 0; b < 40; ++b) singles.push_back(Events(100, "single" + std::to_string(b) + "-"));
    const auto t1 = std::chrono::steady_clock::now();
    const double cpu1 = ThreadCpuSeconds();
    for (int b = 0; b < 40; ++b) {
      EnqueueBatch one{singles[b]};
      ASSERT_TRUE(store->Enqueue(std::span<const EnqueueBatch>(&one, 1)).ok());
    }
    const double secs1 =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    const double cpu_1 = ThreadCpuSeconds() - cpu1;
    // Wall time depends on the machine's load and disk; CPU time on the code.
    std::printf(
        "[ enqueue  ] sync=%d groups of 8x100 events (~300 B): %.0f events/s wall, "
        "%.0f events/CPU-s; single 100-event transactions: %.0f events/s wall, "
        "%.0f events/CPU-s\n",
        sync, accepted / secs, accepted / cpu, 4000 / secs1, 4000 / cpu_1);
  }
}

}  // namespace
}  // namespace sluice
