#include "queue/postgres/pg_schema.h"

#include <iterator>

#include "fmt/format.h"

namespace sluice {

namespace {

// Key of the session advisory lock that serializes migrations across
// replicas ("sluice" in ASCII; any constant shared by every build works).
constexpr int64_t kMigrationLockKey = 0x736c75696365;

// Migration N takes the schema from version N-1 to N. Append only: a shipped
// migration is never edited. The mapping of the logical schema (DESIGN §3)
// follows the SQLite store column for column; times the store clock sets are
// timestamptz (server clock), event times are epoch ms (bigint).
constexpr const char* kMigrations[] = {
    // v1: the queue, dedup, leases, replicas, token sequence and aggregates.
    R"sql(
-- Fencing tokens for queue leases and named leases. nextval is atomic and
-- never goes backwards (CACHE 1), across every connection and replica.
CREATE SEQUENCE sluice_token AS bigint CACHE 1;

CREATE TABLE queue (
  seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- FIFO order
  project     text        NOT NULL,
  insert_id   text        NOT NULL,
  body        text        NOT NULL,
  state       text        NOT NULL DEFAULT 'pending'
                          CHECK (state IN ('pending', 'leased', 'dead')),
  attempts    integer     NOT NULL DEFAULT 0,
  visible_at  timestamptz NOT NULL DEFAULT now(),  -- == lease_until while leased
  lease_owner text,
  lease_token bigint,
  lease_until timestamptz,
  done_mask   bigint      NOT NULL DEFAULT 0,
  last_error  text,
  reclaimed   boolean     NOT NULL DEFAULT false,
  enqueued_at timestamptz NOT NULL DEFAULT now(),
  died_at     timestamptz
) WITH (
  -- Every row is inserted, updated 1-3 times (claim, extend, fail) and
  -- deleted within seconds: the table is small but churns. Free space on
  -- each page lets those updates stay on the row's page, and vacuum must
  -- run on a fixed number of dead rows, not a fraction of a tiny table,
  -- unthrottled (the table is small, so a run is short).
  fillfactor = 80,
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 5000,
  autovacuum_vacuum_insert_scale_factor = 0,
  autovacuum_vacuum_insert_threshold = 20000,
  autovacuum_analyze_scale_factor = 0.02,
  autovacuum_vacuum_cost_delay = 0
);
-- The claim scan: live rows in seq order; visible_at is an index column so
-- the scan skips leased and backing-off rows inside the index (no heap
-- visit), keeping the claim O(batch + rows in flight), not O(queue).
CREATE INDEX queue_claim ON queue (seq, visible_at) WHERE state <> 'dead';
-- Extend finds a lease's rows by token.
CREATE INDEX queue_token ON queue (lease_token) WHERE state = 'leased';
-- Dead-letter admin.
CREATE INDEX queue_dead ON queue (seq) WHERE state = 'dead';

CREATE TABLE dedup (
  project   text        NOT NULL,
  insert_id text        NOT NULL,
  seen_at   timestamptz NOT NULL,
  PRIMARY KEY (project, insert_id)
) WITH (autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0);
CREATE INDEX dedup_seen ON dedup (seen_at);

CREATE TABLE leases (
  name        text        PRIMARY KEY,
  owner       text        NOT NULL,
  token       bigint      NOT NULL,
  lease_until timestamptz NOT NULL
);

CREATE TABLE replicas (
  id        text        PRIMARY KEY,
  host      text        NOT NULL,
  pid       bigint      NOT NULL,
  version   text        NOT NULL,
  started   timestamptz NOT NULL,
  heartbeat timestamptz NOT NULL
);

CREATE TABLE users (
  project    text   NOT NULL,
  user_id    text   NOT NULL,
  first_seen bigint NOT NULL,  -- event time, epoch ms
  last_seen  bigint NOT NULL,
  events     bigint NOT NULL,
  properties text   NOT NULL DEFAULT '{}',
  PRIMARY KEY (project, user_id)
) WITH (fillfactor = 90);
CREATE TABLE user_events (
  project text   NOT NULL,
  user_id text   NOT NULL,
  event   text   NOT NULL,
  count   bigint NOT NULL,
  PRIMARY KEY (project, user_id, event)
) WITH (fillfactor = 90);
CREATE TABLE counters (
  project     text   NOT NULL,
  event       text   NOT NULL,
  granularity text   NOT NULL,
  bucket      bigint NOT NULL,  -- bucket start, epoch ms of the event time
  count       bigint NOT NULL,
  users       bigint NOT NULL,
  PRIMARY KEY (project, event, granularity, bucket)
) WITH (fillfactor = 70);  -- hot rows updated by every batch: room for HOT updates
CREATE INDEX counters_event ON counters (event, granularity, bucket);
CREATE TABLE counter_users (
  project     text   NOT NULL,
  event       text   NOT NULL,
  granularity text   NOT NULL,
  bucket      bigint NOT NULL,
  user_id     text   NOT NULL,
  PRIMARY KEY (project, event, granularity, bucket, user_id)
);
)sql",
    // v2: claims and fenced writes commit without waiting for the WAL flush
    // (docs/claim-protocol-postgres.md, "Commit durability"), which needs
    // tokens that stay unique across a crash; and the claim's low-water mark,
    // so claims start past the dead index entries at the head of the queue.
    R"sql(
-- Emptied by crash recovery (and on a promoted standby): an empty table means
-- tokens handed out since the last WAL flush may have been forgotten by
-- sluice_token. The first token after that jumps 2^40 past every one of them.
CREATE UNLOGGED TABLE sluice_boot (booted_at timestamptz NOT NULL);

-- Every lease token (queue claims and named leases) comes from here.
CREATE FUNCTION sluice_next_token() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM sluice_boot) THEN
    PERFORM pg_advisory_xact_lock(127017875187046);  -- one jump per crash
    IF NOT EXISTS (SELECT 1 FROM sluice_boot) THEN
      PERFORM setval('sluice_token', nextval('sluice_token') + 1099511627776);
      INSERT INTO sluice_boot VALUES (now());
    END IF;
    -- This transaction's token must be durable before anyone holds it.
    PERFORM set_config('synchronous_commit', 'on', true);
  END IF;
  RETURN nextval('sluice_token');
END
$fn$;

-- The claim's low-water mark: no row with state <> 'dead' has seq < low.
-- Claims scan queue_claim from low, so the index entries of rows deleted
-- below it (dead, but not removable while an old snapshot lives) are never
-- visited again. Raised by sluice_refresh_head, lowered by dead-letter requeue.
CREATE TABLE queue_head (
  id           boolean PRIMARY KEY DEFAULT true CHECK (id),
  low          bigint      NOT NULL DEFAULT 0,
  refreshed_at timestamptz NOT NULL DEFAULT '-infinity'
) WITH (fillfactor = 50);
INSERT INTO queue_head DEFAULT VALUES;

-- Raises queue_head.low to the lowest live seq, at most once per
-- min_interval_ms across all replicas. Returns the new mark, or NULL when it
-- did nothing (too early, another replica at it, or enqueues kept it waiting).
CREATE FUNCTION sluice_refresh_head(min_interval_ms bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
  cur bigint;
  top bigint;
  m   bigint;
BEGIN
  -- The row lock orders us with requeues (which lower low under it).
  SELECT low INTO cur FROM queue_head
   WHERE refreshed_at < clock_timestamp() - min_interval_ms * interval '1 millisecond'
   FOR UPDATE SKIP LOCKED;
  IF NOT FOUND THEN RETURN NULL; END IF;
  -- Barrier: every enqueue holds this lock shared while it draws seqs, so
  -- once we hold it every seq <= top belongs to a transaction that has
  -- ended, and every later enqueue draws seqs > top.
  -- Waiting stalls new enqueues (they queue behind us), hence the short
  -- lock_timeout: under a stream of overlapping enqueues we skip this round.
  BEGIN
    PERFORM set_config('lock_timeout', '10ms', true);
    PERFORM pg_advisory_lock(127017875187045);
    SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END INTO top
      FROM queue_seq_seq;
  EXCEPTION
    -- A session lock outlives the error: never leave it held. Even a lock
    -- wait that timed out may have been granted at the last moment (the
    -- grant wins the race and the error is raised anyway), so release
    -- unconditionally; sluice holds no other session-level advisory lock on
    -- pooled connections (the migration lock lives on its own connection).
    WHEN lock_not_available THEN
      PERFORM pg_advisory_unlock_all();
      -- Counts as a try: the next one is min_interval_ms away, cluster-wide.
      UPDATE queue_head SET refreshed_at = clock_timestamp();
      RETURN NULL;
    WHEN query_canceled OR others THEN
      PERFORM pg_advisory_unlock_all();
      RAISE;
  END;
  PERFORM pg_advisory_unlock(127017875187045);
  -- A new statement, so a new snapshot: it sees every row with seq <= top.
  SELECT min(seq) INTO m FROM queue
   WHERE state <> 'dead' AND seq >= cur AND seq <= top;
  m := coalesce(m, top + 1);
  UPDATE queue_head SET low = greatest(m, cur), refreshed_at = clock_timestamp();
  RETURN greatest(m, cur);
END
$fn$;
)sql",
    // v3: distinct users per counter bucket keyed by three bigints (bucket,
    // hash of the series, hash of the user) instead of five columns of which
    // four are text, as the SQLite store's v2: a smaller index and a cheaper
    // insert (docs/claim-protocol-postgres.md, "Effects"). The hashes are the
    // server's hashtextextended (the hash of hash partitioning, so stable
    // across PostgreSQL versions), computed in SQL so that this migration can
    // rehash the stored rows. Two users of one series and bucket whose 64-bit
    // hashes collide count once: with n users in a bucket the odds are about
    // n^2 / 2^65.
    R"sql(
-- The series of a counter: project, event and granularity name, each part
-- but the last prefixed by its length, so distinct triples never make the
-- same text. Inlined by the planner (one SQL expression, immutable).
CREATE FUNCTION sluice_counter_series(project text, event text, granularity text)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
  SELECT hashtextextended(length(project)::text || ':' || project || length(event)::text
                          || ':' || event || ':' || granularity, 0)
$fn$;
CREATE FUNCTION sluice_user_hash(user_id text)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
  SELECT hashtextextended(user_id, 0)
$fn$;

CREATE TABLE counter_users_v3 (
  bucket    bigint NOT NULL,  -- bucket start, epoch ms of the event time
  series    bigint NOT NULL,  -- sluice_counter_series(project, event, granularity)
  user_hash bigint NOT NULL,  -- sluice_user_hash(user_id)
  -- Bucket first: a live bucket's rows are contiguous (inserts touch few
  -- pages) and old buckets can be pruned by range.
  PRIMARY KEY (bucket, series, user_hash)
);
-- ON CONFLICT: two stored users whose hashes collide become one row.
INSERT INTO counter_users_v3 (bucket, series, user_hash)
SELECT bucket, sluice_counter_series(project, event, granularity), sluice_user_hash(user_id)
  FROM counter_users
 ORDER BY 1, 2, 3
ON CONFLICT DO NOTHING;
DROP TABLE counter_users;
ALTER TABLE counter_users_v3 RENAME TO counter_users;
ALTER INDEX counter_users_v3_pkey RENAME TO counter_users_pkey;
)sql",
    // v4: what each replica last published about itself (loops, rates,
    // per-consumer counts) for the console and `sluice status`.
    R"sql(
ALTER TABLE replicas ADD COLUMN stats text NOT NULL DEFAULT '';
)sql",
    // v5: keyed jobs (queue/jobs.h, docs/jobs.md), as the SQLite store's v4.
    // Times the store sets are epoch ms of the server clock (sluice_now_ms:
    // the transaction's now()), so the job SQL reads the same in both stores.
    R"sql(
CREATE FUNCTION sluice_now_ms() RETURNS bigint LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
  SELECT floor(extract(epoch FROM now()) * 1000)::bigint
$fn$;
CREATE TABLE jobs (
  job         text    NOT NULL,
  project     text    NOT NULL,
  key         text    NOT NULL,
  run         bigint  NOT NULL DEFAULT 1,
  state       text    NOT NULL DEFAULT 'pending' CHECK (state IN ('idle', 'pending', 'leased')),
  attempts    integer NOT NULL DEFAULT 0,
  visible_at  bigint  NOT NULL,  -- ms; due time, == lease_until while leased
  lease_owner text,
  lease_token bigint,
  lease_until bigint,
  reclaimed   boolean NOT NULL DEFAULT false,
  last_error  text,
  run_events  bigint  NOT NULL DEFAULT 0,
  run_first   bigint  NOT NULL DEFAULT 0,
  run_last    bigint  NOT NULL DEFAULT 0,
  pend_events bigint  NOT NULL DEFAULT 0,
  pend_first  bigint  NOT NULL DEFAULT 0,
  pend_last   bigint  NOT NULL DEFAULT 0,
  pend_since  bigint  NOT NULL DEFAULT 0,
  pend_due    bigint  NOT NULL DEFAULT 0,
  delay       bigint  NOT NULL DEFAULT 0,
  max_delay   bigint  NOT NULL DEFAULT 0,
  runs_done   bigint  NOT NULL DEFAULT 0,
  last_run    bigint  NOT NULL DEFAULT 0,
  PRIMARY KEY (job, project, key)
) WITH (fillfactor = 70);  -- every run updates its row 2-4 times: room for HOT updates
CREATE INDEX jobs_claim ON jobs (visible_at) WHERE state <> 'idle';
CREATE INDEX jobs_token ON jobs (lease_token) WHERE state = 'leased';

CREATE TABLE job_dead (
  id          bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job         text    NOT NULL,
  project     text    NOT NULL,
  key         text    NOT NULL,
  run         bigint  NOT NULL,
  events      bigint  NOT NULL,
  first_event bigint  NOT NULL,
  last_event  bigint  NOT NULL,
  attempts    integer NOT NULL,
  last_error  text    NOT NULL,
  died_at     bigint  NOT NULL
);
)sql",
    // v6: per-person profiles as mergeable state (src/profile/profile.h,
    // docs/users.md). users keeps one row per distinct id; properties hold
    // each property's registers (a plain value of v5 becomes a $set keyed at
    // the row's last_seen with an empty insert_id, so events older than the
    // stored value do not overwrite it; jsonb's key order and spacing are
    // rewritten canonically by the next write of the row); identity flags and
    // the earliest link are columns (link_target is indexed: the ids that join
    // a person); user_links keeps every link, earliest key per (from, to).
    R"sql(
ALTER TABLE users ADD COLUMN user_seen boolean NOT NULL DEFAULT false,
                  ADD COLUMN linked_to boolean NOT NULL DEFAULT false,
                  ADD COLUMN link_target text,
                  ADD COLUMN link_time bigint,
                  ADD COLUMN link_insert_id text;
UPDATE users SET properties = (
  SELECT coalesce(jsonb_object_agg(key, jsonb_build_object('w',
           jsonb_build_array(users.last_seen, '', value))), '{}'::jsonb)::text
    FROM jsonb_each(users.properties::jsonb))
 WHERE properties <> '{}';
CREATE INDEX users_link_target ON users (project, link_target) WHERE link_target IS NOT NULL;
CREATE TABLE user_links (
  project   text   NOT NULL,
  from_id   text   NOT NULL,
  to_id     text   NOT NULL,
  time      bigint NOT NULL,  -- the earliest link's key: event time, epoch ms ...
  insert_id text   NOT NULL,  -- ... then insert_id
  PRIMARY KEY (project, from_id, to_id)
);
CREATE INDEX user_links_to ON user_links (project, to_id);
-- sluice_identity_links: profile::CountLinks summed over users, one row kept
-- by the users effects (no row has links yet).
CREATE TABLE identity_links (
  one     boolean PRIMARY KEY DEFAULT true CHECK (one),
  applied bigint  NOT NULL,
  refused bigint  NOT NULL
);
INSERT INTO identity_links (applied, refused) VALUES (0, 0);
)sql",
    // v7: the compact dedup window (queue/dedup_window.h). A registry of
    // time buckets and one table per bucket holding only a 16-byte key,
    // dropped whole when it expires instead of row deletes by a seen_at
    // index. The key is computed in SQL, defined once here: md5 of the
    // length-prefixed (project, insert_id) as a uuid. Bucket 1 takes every
    // entry of the old table and starts at its oldest one, so each stays
    // refused for at least a window from now (entries already past the
    // window too: refused a little longer, never shorter).
    R"sql(
CREATE FUNCTION sluice_dedup_key(project text, insert_id text) RETURNS uuid
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT md5(octet_length(project)::text || ':' || project || insert_id)::uuid $$;
CREATE TABLE dedup_buckets (
  id       bigint PRIMARY KEY,
  start_ms bigint NOT NULL
);
INSERT INTO dedup_buckets (id, start_ms)
  SELECT 1, floor(extract(epoch FROM coalesce(min(seen_at), clock_timestamp())) * 1000)::bigint
  FROM dedup;
CREATE TABLE dedup_1 (h uuid PRIMARY KEY);
INSERT INTO dedup_1 (h)
  SELECT sluice_dedup_key(project, insert_id) FROM dedup ON CONFLICT DO NOTHING;
DROP TABLE dedup;
)sql",
};

static_assert(std::size(kMigrations) == kPostgresSchemaVersion);

}  // namespace

Status MigratePostgres(PgConn& conn, int64_t target) {
  if (target < 1 || target > kPostgresSchemaVersion) {
    return Status::InvalidArgument(fmt::format("no postgres schema version {}", target));
  }
  const std::string lock = fmt::format("SELECT pg_advisory_lock({})", kMigrationLockKey);
  const std::string unlock = fmt::format("SELECT pg_advisory_unlock({})", kMigrationLockKey);
  SLUICE_RETURN_IF_ERROR(conn.ExecOnce(lock).status());
  auto run = [&]() -> Status {
    SLUICE_RETURN_IF_ERROR(conn.ExecOnce(
                                   "CREATE TABLE IF NOT EXISTS sluice_schema ("
                                   " version integer PRIMARY KEY,"
                                   " applied_at timestamptz NOT NULL DEFAULT now())")
                               .status());
    SLUICE_ASSIGN_OR_RETURN(PgResult r,
                            conn.ExecOnce("SELECT coalesce(max(version), 0) FROM sluice_schema"));
    const int64_t current = r.Int(0, 0);
    if (current > kPostgresSchemaVersion) {
      return Status::Internal(fmt::format(
          "postgres schema version {} is newer than this build ({})", current,
          kPostgresSchemaVersion));
    }
    for (int64_t v = current; v < target; ++v) {
      SLUICE_RETURN_IF_ERROR(conn.Begin());
      Status st = conn.ExecOnce(kMigrations[v]).status();
      if (st.ok()) {
        st = conn.ExecOnce(fmt::format("INSERT INTO sluice_schema(version) VALUES ({})", v + 1))
                 .status();
      }
      if (st.ok()) st = conn.Commit();
      if (!st.ok()) {
        conn.Rollback();
        return st;
      }
    }
    return Status::Ok();
  };
  Status st = run();
  // The lock also goes away with the session if this fails.
  if (!conn.broken()) (void)conn.ExecOnce(unlock);
  return st;
}

}  // namespace sluice
