#include "queue/sqlite/sqlite_schema.h"

#include "fmt/format.h"

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
};

static_assert(std::size(kMigrations) == kSqliteSchemaVersion);

}  // namespace

Status MigrateSqlite(SqliteConn& conn) {
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
  if (current > kSqliteSchemaVersion) {
    return fail(Status::Internal(fmt::format(
        "sqlite schema version {} is newer than this build ({})", current, kSqliteSchemaVersion)));
  }
  for (int64_t v = current; v < kSqliteSchemaVersion; ++v) {
    Status st = conn.Exec(kMigrations[v]);
    if (!st.ok()) return fail(st);
  }
  if (current < kSqliteSchemaVersion) {
    // PRAGMA takes no bound parameters; the value is a compile-time integer.
    static const std::string kSet = fmt::format("PRAGMA user_version={}", kSqliteSchemaVersion);
    Status st = conn.Exec(kSet.c_str());
    if (!st.ok()) return fail(st);
  }
  return conn.Commit();
}

}  // namespace sluice
