// PostgreSQL-specific behaviour of PostgresStore, beyond the shared
// conformance suite: migrations under concurrent start-up, LISTEN/NOTIFY
// wake-ups, the claim's index, the pool bound, binary-safe parameters, and
// the server going away and coming back.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "fmt/format.h"
#include "queue/effects.h"
#include "queue/jobs.h"
#include "queue/open/open_store.h"
#include "queue/postgres/pg_conn.h"
#include "queue/postgres/pg_schema.h"
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
  auto s = OpenStore(o);
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
      auto s = OpenStore(o);
      EXPECT_TRUE(s.ok()) << s.status().ToString();
      if (s.ok()) ++opened;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(opened.load(), 6);
  const std::string version = std::to_string(kPostgresSchemaVersion);
  EXPECT_EQ(Query(url, "SELECT count(*) FROM sluice_schema"), version);
  EXPECT_EQ(Query(url, "SELECT max(version) FROM sluice_schema"), version);
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
  // A backend that went idle less than 1 s after its last report flushes its
  // statistics only after 10 s idle (PostgreSQL 15): allow for that.
  EXPECT_TRUE(testing::WaitUntil([&] { return scans() > before; }, 20s, 100ms))
      << "the claim did not use queue_claim";
}

// Autovacuum of a drained queue records reltuples = 0; while the queue grows
// again the planner believes it empty. With "seq IN (subquery ... FOR UPDATE
// SKIP LOCKED)" it then re-ran the locking subquery once per row of queue
// (a nested-loop semi join): quadratic, and each re-run skipped the rows the
// statement had already updated, so the claim leased every visible row
// (BENCHMARKS.md section 6). The claim must run its scan once: exactly
// max_events rows, whatever the statistics say. Same for the jobs claim.
TEST(PostgresStoreTest, ClaimLocksItsCandidatesOnceWhenTheStatisticsSayTheQueueIsEmpty) {
  const std::string url = FreshUrl();
  ASSERT_FALSE(url.empty());
  StorePtr setup = OpenPg(url);
  ASSERT_NE(setup, nullptr);
  // 2,000 deleted rows at the head (dead index entries, no vacuum), 2,000
  // pending after them, 2,000 due job rows; statistics of empty tables.
  ASSERT_EQ(testing::PostgresExec(
                url,
                "ALTER TABLE queue SET (autovacuum_enabled = false); "
                "ALTER TABLE jobs SET (autovacuum_enabled = false); "
                "INSERT INTO queue (project, insert_id, body) SELECT 'default', 'id' || g, "
                "'{\"event\":\"e\",\"user_id\":\"u\",\"time\":1}' "
                "FROM generate_series(1, 4000) g; "
                "DELETE FROM queue WHERE seq <= 2000; "
                "INSERT INTO jobs (job, project, key, visible_at) "
                "SELECT 'j', 'default', 'k' || g, 0 FROM generate_series(1, 2000) g; "
                "UPDATE pg_class SET reltuples = 0, relpages = pg_relation_size(oid) / 8192 "
                "WHERE relname IN ('queue', 'queue_pkey', 'queue_claim', 'jobs', 'jobs_pkey', "
                "'jobs_claim')"),
            "");
  StorePtr s = OpenPg(url);  // fresh connections plan with those statistics
  ASSERT_NE(s, nullptr);
  auto lease = s->Claim(ClaimRequest{"me/0", 500, 30000});
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  EXPECT_EQ(lease->events.size(), 500u);
  EXPECT_EQ(Query(url, "SELECT count(*) FROM queue WHERE state = 'leased'"), "500");
  if (!lease->events.empty()) {
    EXPECT_EQ(lease->events.front().seq, 2001);
    EXPECT_EQ(lease->events.back().seq, 2500);
  }
  auto runs = s->ClaimJobRuns(JobClaimRequest{"me/0", {"j"}, 100, 30000});
  ASSERT_TRUE(runs.ok()) << runs.status().ToString();
  EXPECT_EQ(runs->runs.size(), 100u);
  EXPECT_EQ(Query(url, "SELECT count(*) FROM jobs WHERE state = 'leased'"), "100");
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
  EXPECT_EQ(Query(url, "SELECT count(*) FROM dedup_1"), "0");
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

// Claims, fenced writes and the token of a lost claim across a real crash
// recovery (a backend killed with SIGKILL: the postmaster resets shared
// memory and replays the WAL, forgetting whatever was not flushed, and
// empties unlogged tables). Claims commit without waiting for the flush, so
// the claim itself may be forgotten; its token must never be issued again.
TEST(PostgresStoreTest, CrashRecoveryNeverIssuesALostClaimsTokenAgain) {
  testing::PgCluster cluster;
  ASSERT_EQ(cluster.Start(), "");
  ASSERT_EQ(testing::PostgresExec(cluster.url(), "CREATE DATABASE crash"), "");
  const std::string url = testing::PostgresUrlWithDatabase(cluster.url(), "crash");
  StoreOptions o;
  o.busy_timeout_ms = 3000;
  StorePtr s = OpenPg(url, o);
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(EnqueueAll(*s, Events("c", 10)).ok());
  auto first = s->Claim(ClaimRequest{"old/0", 5, 60000});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_EQ(first->events.size(), 5u);

  // Crash: kill -9 one backend (an idle connection of our own). The
  // postmaster then terminates every other backend, `watch` included: once
  // that is seen, recovery has begun.
  PGconn* victim = PQconnectdb(url.c_str());
  PGconn* watch = PQconnectdb(url.c_str());
  ASSERT_EQ(PQstatus(victim), CONNECTION_OK);
  ASSERT_EQ(PQstatus(watch), CONNECTION_OK);
  ASSERT_EQ(::kill(PQbackendPID(victim), SIGKILL), 0);
  PQfinish(victim);
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        PGresult* r = PQexec(watch, "SELECT 1");
        const bool dead = PQresultStatus(r) != PGRES_TUPLES_OK;
        PQclear(r);
        return dead;
      },
      30s, 20ms));
  PQfinish(watch);

  // The pool reconnects by itself once recovery is over.
  Result<Lease> second = Status::Unavailable("not yet");
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        second = s->Claim(ClaimRequest{"new/0", 10, 60000});
        return second.ok();
      },
      60s, 100ms))
      << second.status().ToString();
  ASSERT_FALSE(second->events.empty());
  // Whether or not the first claim survived, the first token after recovery
  // jumped 2^40 past every token handed out before the crash.
  EXPECT_GT(second->token, first->token + (int64_t{1} << 39));
  EXPECT_EQ(Query(url, "SELECT count(*) FROM sluice_boot"), "1");
  // The old holder changes nothing of the new lease's rows.
  CompleteRequest stale{first->token, first->events, 1, 1, {}};
  (void)s->Complete(stale);
  CompleteRequest fresh{second->token, second->events, 1, 1, {}};
  auto done = s->Complete(fresh);
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(done->deleted.size(), second->events.size());
  // Later tokens are ordinary increments again.
  ASSERT_TRUE(EnqueueAll(*s, Events("d", 1)).ok());
  auto third = s->Claim(ClaimRequest{"new/0", 10, 60000});
  ASSERT_TRUE(third.ok());
  EXPECT_GT(third->token, second->token);
  EXPECT_LT(third->token, second->token + 1000);
}

std::string HeadLow(const std::string& url) {
  return Query(url, "SELECT low FROM queue_head");
}

TEST(PostgresStoreTest, LowWaterMarkRisesPastCompletedRowsAndFallsForARequeue) {
  const std::string url = FreshUrl();
  ASSERT_FALSE(url.empty());
  StorePtr s = OpenPg(url);
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(EnqueueAll(*s, Events("w", 30)).ok());
  // The first row goes dead (one attempt allowed), the next 19 complete.
  auto a = s->Claim(ClaimRequest{"me/0", 1, 30000});
  ASSERT_TRUE(a.ok());
  const int64_t dead_seq = a->events.at(0).seq;
  std::vector<int64_t> seqs{dead_seq};
  auto f = s->Fail(FailRequest{a->token, seqs, "consumer x: boom", BackoffPolicy{0, 0, 1, 0, 0}});
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_EQ(f->dead, 1);
  auto b = s->Claim(ClaimRequest{"me/0", 19, 30000});
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(b->events.size(), 19u);
  ASSERT_TRUE(s->Complete(CompleteRequest{b->token, b->events, 1, 1, {}}).ok());
  ASSERT_EQ(Query(url, "SELECT sluice_refresh_head(0) IS NOT NULL"), "t");
  const int64_t first_live = b->events.back().seq + 1;
  EXPECT_EQ(HeadLow(url), std::to_string(first_live));
  // Requeue brings the dead row back below the mark: the mark follows it and
  // the next claim takes it first.
  DeadFilter all;
  auto n = s->RequeueDead(all);
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(*n, 1);
  EXPECT_EQ(HeadLow(url), std::to_string(dead_seq));
  auto c = s->Claim(ClaimRequest{"me/0", 1, 30000});
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->events.size(), 1u);
  EXPECT_EQ(c->events[0].seq, dead_seq);
  // With nothing live the mark moves past the last seq drawn, never beyond.
  auto rest = s->Claim(ClaimRequest{"me/0", 100, 30000});
  ASSERT_TRUE(rest.ok());
  ASSERT_TRUE(s->Complete(CompleteRequest{c->token, c->events, 1, 1, {}}).ok());
  ASSERT_TRUE(s->Complete(CompleteRequest{rest->token, rest->events, 1, 1, {}}).ok());
  ASSERT_EQ(Query(url, "SELECT sluice_refresh_head(0) IS NOT NULL"), "t");
  EXPECT_EQ(HeadLow(url), std::to_string(rest->events.back().seq + 1));
  ASSERT_TRUE(EnqueueAll(*s, Events("x", 3)).ok());
  auto d = s->Claim(ClaimRequest{"me/0", 100, 30000});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->events.size(), 3u);
}

// Enqueues racing with refreshes of the mark: an enqueue that drew its seqs
// before a refresh and committed after it must not be left below the mark
// (the advisory-lock barrier). Every event enqueued is claimed in the end.
TEST(PostgresStoreTest, LowWaterMarkNeverHidesARowEnqueuedDuringARefresh) {
  const std::string url = FreshUrl();
  ASSERT_FALSE(url.empty());
  StorePtr s = OpenPg(url);
  ASSERT_NE(s, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> enqueued{0};
  std::atomic<int64_t> claimed{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) {
        if (EnqueueAll(*s, Events(fmt::format("e{}-{}-", t, i), 20)).ok()) {
          enqueued += 20;
        } else {
          ++errors;
        }
      }
    });
  }
  threads.emplace_back([&] {
    while (!stop.load()) (void)Query(url, "SELECT sluice_refresh_head(0)");
  });
  auto drain_once = [&](const std::string& owner) -> int64_t {
    auto lease = s->Claim(ClaimRequest{owner, 50, 30000});
    if (!lease.ok()) {
      ++errors;
      return 0;
    }
    if (lease->events.empty()) return 0;
    if (!s->Complete(CompleteRequest{lease->token, lease->events, 1, 1, {}}).ok()) ++errors;
    return static_cast<int64_t>(lease->events.size());
  };
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      while (!stop.load()) claimed += drain_once(fmt::format("c/{}", t));
    });
  }
  std::this_thread::sleep_for(3s);
  stop = true;
  for (auto& t : threads) t.join();
  ASSERT_EQ(Query(url, "SELECT sluice_refresh_head(0) IS NOT NULL"), "t");
  for (int i = 0; i < 1000; ++i) {
    const int64_t n = drain_once("c/final");
    claimed += n;
    if (n == 0) break;
  }
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(enqueued.load(), 0);
  EXPECT_EQ(claimed.load(), enqueued.load());
  EXPECT_EQ(Query(url, "SELECT count(*) FROM queue"), "0");
}

// v5 adds the job tables: a v4 database with events in flight is migrated
// in place, its events stay, and jobs schedule and run on it.
TEST(PostgresStoreTest, V4DatabaseMigratesToTheJobTablesKeepingItsEvents) {
  const std::string url = FreshUrl();
  ASSERT_FALSE(url.empty());
  {
    auto conn = PgConn::Connect(url, PgSessionOptions{});
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    ASSERT_TRUE(MigratePostgres(**conn, /*target=*/4).ok());
  }
  ASSERT_EQ(testing::PostgresExec(
                url, "INSERT INTO queue(project, insert_id, body) VALUES ('p', 'old', '{}')"),
            "");
  StorePtr s = OpenPg(url);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(Query(url, "SELECT max(version) FROM sluice_schema"),
            std::to_string(kPostgresSchemaVersion));
  auto lease = s->Claim(ClaimRequest{"t/0", 10, 60000});
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  ASSERT_EQ(lease->events.size(), 1u);
  CompleteRequest req{lease->token, lease->events, 8, 0, {}};
  InStoreEffects part{.bit = 8, .effects = {}};
  part.effects.jobs.push_back(JobDelta{"j", "p", "k", 1, 0, 0, 0, 0});
  req.in_store.push_back(std::move(part));
  ASSERT_TRUE(s->Complete(req).ok());
  auto runs = s->ClaimJobRuns(JobClaimRequest{"t", {"j"}, 10, 60000});
  ASSERT_TRUE(runs.ok()) << runs.status().ToString();
  ASSERT_EQ(runs->runs.size(), 1u);
  EXPECT_GT(runs->token, lease->token);
}

// v7 keeps the dedup window as 16-byte keys in time buckets: the entries of
// a v6 database move into bucket 1 (starting at the oldest entry) with the
// key computed in SQL, so their keys stay refused after the migration, and
// unknown keys are accepted.
TEST(PostgresStoreTest, V6DedupEntriesMigrateIntoTheFirstBucketAndStayRefused) {
  const std::string url = FreshUrl();
  ASSERT_FALSE(url.empty());
  {
    auto conn = PgConn::Connect(url, PgSessionOptions{});
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    ASSERT_TRUE(MigratePostgres(**conn, /*target=*/6).ok());
  }
  ASSERT_EQ(testing::PostgresExec(url,
                                  "INSERT INTO dedup(project, insert_id, seen_at) VALUES "
                                  "('default', 'seen-1', to_timestamp(1)), "
                                  "('default', 'seen-2', to_timestamp(2)), "
                                  "('other', 'seen-1', to_timestamp(3))"),
            "");
  StorePtr s = OpenPg(url);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(Query(url, "SELECT id || '|' || start_ms FROM dedup_buckets"), "1|1000");
  EXPECT_EQ(Query(url, "SELECT count(*) FROM dedup_1"), "3");
  EXPECT_EQ(Query(url, "SELECT count(*) FROM pg_class WHERE relname IN ('dedup', 'dedup_seen')"),
            "0");
  std::vector<NewEvent> events = {{"default", "seen-1", "{}"},
                                  {"default", "seen-2", "{}"},
                                  {"other", "seen-1", "{}"},
                                  {"default", "new-1", "{}"},
                                  {"other", "seen-2", "{}"}};
  EnqueueBatch batch{events};
  auto r = s->Enqueue(std::span<const EnqueueBatch>(&batch, 1));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)[0].duplicates, 3);
  EXPECT_EQ((*r)[0].accepted, 2);
}

// Two replicas enqueue the same keys, in step, while a third rotates the
// dedup window as fast as it can (31 ms buckets): the registry lock orders
// every group against every rotation, so each key is stored exactly once.
TEST(PostgresStoreTest, ConcurrentEnqueuesOfOneKeyAcrossRotationsStoreItOnce) {
  const std::string url = FreshUrl();
  ASSERT_FALSE(url.empty());
  StoreOptions o;
  o.dedup_window_ms = 60000;
  o.dedup_buckets = 64;  // ~940 ms buckets; the rotator below shortens them
  StoreOptions fast = o;
  fast.dedup_window_ms = 2000;
  fast.dedup_buckets = 64;  // 31 ms buckets, dropped after 2 s
  StorePtr a = OpenPg(url, o), b = OpenPg(url, o), rotator = OpenPg(url, fast);
  ASSERT_TRUE(a && b && rotator);
  // The rotator drops buckets after 2 s, so a key must reach both writers
  // within that: they run in step, at most one batch apart, at least
  // kBatches batches and on until a bucket was dropped.
  constexpr int kBatches = 300, kMaxBatches = 3000, kPerBatch = 20;
  std::atomic<int> done[2] = {0, 0};
  std::atomic<bool> stop{false};
  std::atomic<int64_t> rotations{0}, drops{0};
  std::thread rot([&] {
    auto token = rotator->AcquireNamedLease("dedup-prune", "rot", 600000);
    ASSERT_TRUE(token.ok());
    while (!stop.load()) {
      auto m = rotator->MaintainDedup(*token);
      ASSERT_TRUE(m.ok()) << m.status().ToString();
      rotations += m->created;
      drops += m->dropped;
    }
  });
  std::atomic<int64_t> accepted{0};
  auto writer = [&](int w, Store& s) {
    for (int i = 0; (i < kBatches || drops.load() == 0) && i < kMaxBatches; ++i) {
      while (done[1 - w].load() < i - 1) std::this_thread::yield();
      auto events = Events(fmt::format("k{}-", i), kPerBatch);
      EnqueueBatch batch{events};
      auto r = s.Enqueue(std::span<const EnqueueBatch>(&batch, 1));
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      accepted += (*r)[0].accepted;
      done[w].store(i + 1);
    }
    done[w].store(kMaxBatches + 1);
  };
  std::thread wa(writer, 0, std::ref(*a)), wb(writer, 1, std::ref(*b));
  wa.join();
  wb.join();
  stop = true;
  rot.join();
  EXPECT_GT(rotations.load(), 10);
  EXPECT_GT(drops.load(), 0);
  // Every key offered is in the queue once, and was acknowledged once.
  const std::string stored = Query(url, "SELECT count(*) FROM queue");
  EXPECT_EQ(stored, Query(url, "SELECT count(DISTINCT insert_id) FROM queue"));
  EXPECT_EQ(stored, std::to_string(accepted.load()));
  EXPECT_GE(accepted.load(), kBatches * kPerBatch);
}

// v2 kept distinct users per counter bucket as five text columns; v3 as
// (bucket, series hash, user hash). A v2 database is rehashed in place, and
// a user it had already counted in a bucket is not counted again afterwards;
// another series of that bucket keeps its own users.
TEST(PostgresStoreTest, V2CounterUsersMigrateAndKeepCountingDistinctUsers) {
  const std::string url = FreshUrl();
  ASSERT_FALSE(url.empty());
  constexpr int64_t kHour = 1700000000000 / 3600000 * 3600000;
  {
    auto conn = PgConn::Connect(url, PgSessionOptions{});
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    ASSERT_TRUE(MigratePostgres(**conn, /*target=*/2).ok());
  }
  ASSERT_EQ(Query(url, "SELECT max(version) FROM sluice_schema"), "2");
  ASSERT_EQ(testing::PostgresExec(url, fmt::format("INSERT INTO counters VALUES "
                                                   "('default', 'page_view', 'hour', {0}, 2, 2); "
                                                   "INSERT INTO counter_users VALUES "
                                                   "('default', 'page_view', 'hour', {0}, 'u1'), "
                                                   "('default', 'page_view', 'hour', {0}, 'u2')",
                                                   kHour)),
            "");
  StorePtr s = OpenPg(url);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(Query(url, "SELECT max(version) FROM sluice_schema"),
            std::to_string(kPostgresSchemaVersion));
  // The stored keys are the documented hashes of the length-prefixed series
  // text and of the user id.
  EXPECT_EQ(Query(url, fmt::format("SELECT count(*) FROM counter_users WHERE bucket = {} "
                                   "AND series = hashtextextended('7:default9:page_view:hour', 0) "
                                   "AND user_hash IN (hashtextextended('u1', 0), "
                                   "hashtextextended('u2', 0))",
                                   kHour)),
            "2");
  EXPECT_EQ(Query(url, "SELECT count(*) FROM counter_users"), "2");

  // One batch in that hour: page_view by u1 (counted before the migration)
  // and u3, and signup by u1 (a series of its own).
  std::vector<NewEvent> events;
  for (const char* user : {"u1", "u3"}) {
    events.push_back(
        {"default", std::string("id-") + user,
         fmt::format(R"({{"event":"page_view","user_id":"{}","time":{}}})", user, kHour + 60000)});
  }
  ASSERT_TRUE(EnqueueAll(*s, events).ok());
  auto lease = s->Claim(ClaimRequest{"t/0", 10, 60000});
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  ASSERT_EQ(lease->events.size(), 2u);
  InStoreEffects work{.bit = 1, .effects = {}};
  work.effects.counters.push_back(CounterDelta{"default",
                                               "page_view",
                                               Granularity::kHour,
                                               kHour,
                                               static_cast<int64_t>(lease->events.size()),
                                               {"u1", "u3"}});
  work.effects.counters.push_back(
      CounterDelta{"default", "signup", Granularity::kHour, kHour, 1, {"u1"}});
  auto done = s->Complete(CompleteRequest{lease->token, lease->events, 1, 0, {work}});
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(Query(url, "SELECT count || '|' || users FROM counters WHERE event = 'page_view'"),
            "4|3");
  EXPECT_EQ(Query(url, "SELECT count || '|' || users FROM counters WHERE event = 'signup'"), "1|1");
  EXPECT_EQ(Query(url, "SELECT count(*) FROM counter_users"), "4");
}

}  // namespace
}  // namespace sluice
