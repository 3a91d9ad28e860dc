#include "queue/sqlite/sqlite_schema.h"

#include <string>

#include "fmt/format.h"
#include "profile/profile.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace sluice {

namespace {

// Migration N takes the schema from version N-1 to N. Append only: a shipped
// migration is never edited.
constexpr const char* kMigrations[] = {
    // v1: the queue, dedup, leases, replicas, token counter and aggregates.
    R"sql(
CREATE TABLE queue (
  seq         INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: FIFO + monotonic
  project     TEXT    NOT NULL,
  insert_id   TEXT    NOT NULL,
  body        TEXT    NOT NULL,
  state       TEXT    NOT NULL DEFAULT 'pending', -- pending | leased | dead
  attempts    INTEGER NOT NULL DEFAULT 0,
  visible_at  INTEGER NOT NULL,                   -- ms; == lease_until while leased
  lease_owner TEXT,
  lease_token INTEGER,
  lease_until INTEGER,
  done_mask   INTEGER NOT NULL DEFAULT 0,
  last_error  TEXT,
  reclaimed   INTEGER NOT NULL DEFAULT 0,
  enqueued_at INTEGER NOT NULL,
  died_at     INTEGER
);
-- The claim scan: live rows in seq order. visible_at and state make it a
-- covering index, so rows that are leased or backing off are skipped without
-- touching the table, and the scan stops after LIMIT claimable rows.
CREATE INDEX queue_claim ON queue(seq, visible_at, state) WHERE state != 'dead';
-- Extend finds a lease's rows by token.
CREATE INDEX queue_token ON queue(lease_token) WHERE state = 'leased';
-- Dead-letter admin.
CREATE INDEX queue_dead ON queue(seq) WHERE state = 'dead';

CREATE TABLE dedup (
  project   TEXT    NOT NULL,
  insert_id TEXT    NOT NULL,
  seen_at   INTEGER NOT NULL,
  PRIMARY KEY (project, insert_id)
) WITHOUT ROWID;
CREATE INDEX dedup_seen ON dedup(seen_at);

CREATE TABLE leases (
  name  TEXT PRIMARY KEY,
  owner TEXT    NOT NULL,
  token INTEGER NOT NULL,
  until INTEGER NOT NULL
);

CREATE TABLE replicas (
  id        TEXT PRIMARY KEY,
  host      TEXT    NOT NULL,
  pid       INTEGER NOT NULL,
  version   TEXT    NOT NULL,
  started   INTEGER NOT NULL,
  heartbeat INTEGER NOT NULL
);

CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
INSERT INTO meta(k, v) VALUES ('token', 0);

CREATE TABLE users (
  project    TEXT    NOT NULL,
  user_id    TEXT    NOT NULL,
  first_seen INTEGER NOT NULL,
  last_seen  INTEGER NOT NULL,
  events     INTEGER NOT NULL,
  properties TEXT    NOT NULL DEFAULT '{}',
  PRIMARY KEY (project, user_id)
);
CREATE TABLE user_events (
  project TEXT    NOT NULL,
  user_id TEXT    NOT NULL,
  event   TEXT    NOT NULL,
  count   INTEGER NOT NULL,
  PRIMARY KEY (project, user_id, event)
) WITHOUT ROWID;
CREATE TABLE counters (
  project     TEXT    NOT NULL,
  event       TEXT    NOT NULL,
  granularity TEXT    NOT NULL,
  bucket      INTEGER NOT NULL,
  count       INTEGER NOT NULL,
  users       INTEGER NOT NULL,
  PRIMARY KEY (project, event, granularity, bucket)
) WITHOUT ROWID;
CREATE INDEX counters_event ON counters(event, granularity, bucket);
CREATE TABLE counter_users (
  project     TEXT    NOT NULL,
  event       TEXT    NOT NULL,
  granularity TEXT    NOT NULL,
  bucket      INTEGER NOT NULL,
  user_id     TEXT    NOT NULL,
  PRIMARY KEY (project, event, granularity, bucket, user_id)
) WITHOUT ROWID;
)sql",
    // v2: distinct users per counter bucket keyed by integers (bucket, hash of
    // the series, hash of the user) instead of five text columns: a third of
    // the index size and far cheaper inserts. Bucket first: one bucket's
    // rows are contiguous (inserts of a live bucket touch few pages, and old
    // buckets can be pruned by range). Two users of one series and bucket
    // whose 64-bit hashes collide count once: with n users in a bucket the
    // odds are about n^2 / 2^65 (3e-6 for ten million).
    R"sql(
CREATE TABLE counter_users_v2 (
  bucket    INTEGER NOT NULL,  -- bucket start, epoch ms
  series    INTEGER NOT NULL,  -- CounterSeriesHash(project, event, granularity)
  user_hash INTEGER NOT NULL,  -- CounterUserHash(user_id)
  PRIMARY KEY (bucket, series, user_hash)
) WITHOUT ROWID;
INSERT OR IGNORE INTO counter_users_v2(bucket, series, user_hash)
  SELECT bucket, sluice_counter_series(project, event, granularity), sluice_user_hash(user_id)
  FROM counter_users;
DROP TABLE counter_users;
ALTER TABLE counter_users_v2 RENAME TO counter_users;
)sql",
    // v3: what each replica last published about itself (loops, rates,
    // per-consumer counts) for the console and `sluice status`.
    R"sql(
ALTER TABLE replicas ADD COLUMN stats TEXT NOT NULL DEFAULT '';
)sql",
    // v4: keyed jobs (queue/jobs.h, docs/jobs.md). One row per (job,
    // project, key): the claimed run's frozen content (run_*) and the events
    // pending for the next run (pend_*). Claimed like the queue: visible_at
    // is the due time while pending and == lease_until while leased.
    R"sql(
CREATE TABLE jobs (
  job         TEXT    NOT NULL,
  project     TEXT    NOT NULL,
  key         TEXT    NOT NULL,
  run         INTEGER NOT NULL DEFAULT 1,          -- current run; the same on its retries
  state       TEXT    NOT NULL DEFAULT 'pending',  -- idle | pending | leased
  attempts    INTEGER NOT NULL DEFAULT 0,          -- claims of the current run
  visible_at  INTEGER NOT NULL,                    -- ms; due time, == lease_until while leased
  lease_owner TEXT,
  lease_token INTEGER,
  lease_until INTEGER,
  reclaimed   INTEGER NOT NULL DEFAULT 0,
  last_error  TEXT,
  run_events  INTEGER NOT NULL DEFAULT 0,          -- frozen at the run's first claim
  run_first   INTEGER NOT NULL DEFAULT 0,          -- event time, ms
  run_last    INTEGER NOT NULL DEFAULT 0,
  pend_events INTEGER NOT NULL DEFAULT 0,          -- for the next run not yet claimed
  pend_first  INTEGER NOT NULL DEFAULT 0,
  pend_last   INTEGER NOT NULL DEFAULT 0,
  pend_since  INTEGER NOT NULL DEFAULT 0,          -- store clock of the first pending upsert
  pend_due    INTEGER NOT NULL DEFAULT 0,          -- min(last upsert + delay, since + max_delay)
  delay       INTEGER NOT NULL DEFAULT 0,          -- ms, of the last upsert (the job's config)
  max_delay   INTEGER NOT NULL DEFAULT 0,
  runs_done   INTEGER NOT NULL DEFAULT 0,
  last_run    INTEGER NOT NULL DEFAULT 0,          -- store clock of the last completion
  PRIMARY KEY (job, project, key)
);
-- The claim scan: due or expired runs, earliest first.
CREATE INDEX jobs_claim ON jobs(visible_at) WHERE state != 'idle';
-- Extend finds a lease's runs by token.
CREATE INDEX jobs_token ON jobs(lease_token) WHERE state = 'leased';

CREATE TABLE job_dead (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  job         TEXT    NOT NULL,
  project     TEXT    NOT NULL,
  key         TEXT    NOT NULL,
  run         INTEGER NOT NULL,
  events      INTEGER NOT NULL,
  first_event INTEGER NOT NULL,
  last_event  INTEGER NOT NULL,
  attempts    INTEGER NOT NULL,
  last_error  TEXT    NOT NULL,
  died_at     INTEGER NOT NULL
);
)sql",
    // v5: per-person profiles as mergeable state (src/profile/profile.h,
    // docs/users.md). users keeps one row per distinct id; properties hold
    // each property's registers (a plain value of v4 becomes a $set keyed at
    // the row's last_seen with an empty insert_id, so events older than the
    // stored value do not overwrite it); identity flags and the earliest link
    // are columns (link_target is indexed: the ids that join a person);
    // user_links keeps every link, earliest key per (from, to).
    R"sql(
ALTER TABLE users ADD COLUMN user_seen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN linked_to INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN link_target TEXT;
ALTER TABLE users ADD COLUMN link_time INTEGER;
ALTER TABLE users ADD COLUMN link_insert_id TEXT;
UPDATE users SET properties = sluice_profile_state(properties, last_seen)
 WHERE properties != '{}';
CREATE INDEX users_link_target ON users(project, link_target) WHERE link_target IS NOT NULL;
CREATE TABLE user_links (
  project   TEXT    NOT NULL,
  from_id   TEXT    NOT NULL,
  to_id     TEXT    NOT NULL,
  time      INTEGER NOT NULL,  -- the earliest link's key: event time, epoch ms ...
  insert_id TEXT    NOT NULL,  -- ... then insert_id
  PRIMARY KEY (project, from_id, to_id)
) WITHOUT ROWID;
CREATE INDEX user_links_to ON user_links(project, to_id);
-- sluice_identity_links: profile::CountLinks summed over users, kept by the
-- users effects (no row has links yet).
INSERT INTO meta(k, v) VALUES ('links_applied', 0), ('links_refused', 0);
)sql",
    // v6: the compact dedup window (queue/dedup_window.h). A registry of
    // time buckets and one table per bucket holding only the 128-bit key
    // hash (SqliteDedupKey), dropped whole when it expires instead of row
    // deletes by a seen_at index. Bucket 1 takes every entry of the old
    // table and starts at its oldest one, so each stays refused for at
    // least a window from now (entries already past the window too: they
    // are refused a little longer, never shorter).
    R"sql(
CREATE TABLE dedup_buckets (
  id       INTEGER PRIMARY KEY,
  start_ms INTEGER NOT NULL
);
INSERT INTO dedup_buckets(id, start_ms)
  SELECT 1, coalesce(min(seen_at),
                     CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER))
  FROM dedup;
CREATE TABLE dedup_1 (
  h1 INTEGER NOT NULL,
  h2 INTEGER NOT NULL,
  PRIMARY KEY (h1, h2)
) WITHOUT ROWID;
INSERT OR IGNORE INTO dedup_1(h1, h2)
  SELECT sluice_dedup_h1(project, insert_id), sluice_dedup_h2(project, insert_id) FROM dedup;
DROP TABLE dedup;
)sql",
};

static_assert(std::size(kMigrations) == kSqliteSchemaVersion);

std::string_view ArgText(sqlite3_value* v) {
  const unsigned char* p = sqlite3_value_text(v);
  if (p == nullptr) return {};
  return {reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_value_bytes(v))};
}

// The hashes as SQL functions, for the v2 data migration.
void SeriesHashFn(sqlite3_context* ctx, int, sqlite3_value** argv) {
  sqlite3_result_int64(
      ctx, CounterSeriesHash(ArgText(argv[0]), ArgText(argv[1]), ArgText(argv[2])));
}
void UserHashFn(sqlite3_context* ctx, int, sqlite3_value** argv) {
  sqlite3_result_int64(ctx, CounterUserHash(ArgText(argv[0])));
}

// sluice_dedup_h1/h2(project, insert_id): the halves of SqliteDedupKey, for
// the v6 data migration.
void DedupH1Fn(sqlite3_context* ctx, int, sqlite3_value** argv) {
  sqlite3_result_int64(ctx, SqliteDedupKey(ArgText(argv[0]), ArgText(argv[1])).h1);
}
void DedupH2Fn(sqlite3_context* ctx, int, sqlite3_value** argv) {
  sqlite3_result_int64(ctx, SqliteDedupKey(ArgText(argv[0]), ArgText(argv[1])).h2);
}

// sluice_profile_state(plain properties, last_seen): the v5 data migration.
void ProfileStateFn(sqlite3_context* ctx, int, sqlite3_value** argv) {
  PropertyMap props;
  Status st = ParseProperties(ArgText(argv[0]), OpKey{sqlite3_value_int64(argv[1]), ""}, &props);
  if (!st.ok()) {
    sqlite3_result_error(ctx, st.message().c_str(), -1);
    return;
  }
  const std::string out = SerializeProperties(props);
  sqlite3_result_text(ctx, out.data(), static_cast<int>(out.size()), SQLITE_TRANSIENT);
}

Status RegisterHashFunctions(SqliteConn& conn) {
  constexpr int kFlags = SQLITE_UTF8 | SQLITE_DETERMINISTIC;
  int rc = sqlite3_create_function_v2(conn.db(), "sluice_counter_series", 3, kFlags, nullptr,
                                      &SeriesHashFn, nullptr, nullptr, nullptr);
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function_v2(conn.db(), "sluice_user_hash", 1, kFlags, nullptr,
                                    &UserHashFn, nullptr, nullptr, nullptr);
  }
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function_v2(conn.db(), "sluice_profile_state", 2, kFlags, nullptr,
                                    &ProfileStateFn, nullptr, nullptr, nullptr);
  }
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function_v2(conn.db(), "sluice_dedup_h1", 2, kFlags, nullptr, &DedupH1Fn,
                                    nullptr, nullptr, nullptr);
  }
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function_v2(conn.db(), "sluice_dedup_h2", 2, kFlags, nullptr, &DedupH2Fn,
                                    nullptr, nullptr, nullptr);
  }
  if (rc != SQLITE_OK) return SqliteError(rc, conn.db(), "create hash functions");
  return Status::Ok();
}

}  // namespace

int64_t CounterSeriesHash(std::string_view project, std::string_view event,
                          std::string_view granularity) {
  std::string key;
  key.reserve(project.size() + event.size() + granularity.size() + 2);
  key.append(project);
  key.push_back('\0');
  key.append(event);
  key.push_back('\0');
  key.append(granularity);
  return static_cast<int64_t>(XXH3_64bits(key.data(), key.size()));
}

int64_t CounterUserHash(std::string_view user_id) {
  return static_cast<int64_t>(XXH3_64bits(user_id.data(), user_id.size()));
}

DedupKey SqliteDedupKey(std::string_view project, std::string_view insert_id) {
  // "<bytes of project>:" + project + insert_id: the length prefix makes the
  // split unambiguous ("ab"+"c" and "a"+"bc" differ), as in PostgreSQL's key.
  std::string key = fmt::format("{}:", project.size());
  key.append(project);
  key.append(insert_id);
  const XXH128_hash_t h = XXH3_128bits(key.data(), key.size());
  return DedupKey{static_cast<int64_t>(h.high64), static_cast<int64_t>(h.low64)};
}

Status MigrateSqlite(SqliteConn& conn, int target) {
  SLUICE_RETURN_IF_ERROR(RegisterHashFunctions(conn));
  SLUICE_RETURN_IF_ERROR(conn.BeginImmediate());
  auto fail = [&](Status st) {
    conn.Rollback();
    return st;
  };
  auto version = conn.Prepare("PRAGMA user_version");
  if (!version.ok()) return fail(version.status());
  auto row = version->Step();
  if (!row.ok()) return fail(row.status());
  const int64_t current = *row ? version->Int(0) : 0;
  (void)version->Run();
  if (target < 1 || target > kSqliteSchemaVersion) {
    return fail(Status::InvalidArgument(fmt::format("no sqlite schema version {}", target)));
  }
  if (current > kSqliteSchemaVersion) {
    return fail(Status::Internal(fmt::format(
        "sqlite schema version {} is newer than this build ({})", current, kSqliteSchemaVersion)));
  }
  for (int64_t v = current; v < target; ++v) {
    Status st = conn.Exec(kMigrations[v]);
    if (!st.ok()) return fail(st);
  }
  if (current < target) {
    // PRAGMA takes no bound parameters; the value is an integer we format.
    const std::string set = fmt::format("PRAGMA user_version={}", target);
    Status st = conn.Exec(set.c_str());
    if (!st.ok()) return fail(st);
  }
  return conn.Commit();
}

}  // namespace sluice
