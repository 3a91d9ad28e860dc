// SqliteStore: in-store aggregates (apply and read), named leases, dedup
// window maintenance, replicas and queue statistics.
#include <algorithm>

#include "fmt/format.h"
#include "queue/lease_logic.h"
#include "queue/sqlite/sqlite_schema.h"
#include "queue/sqlite/sqlite_store.h"

namespace sluice {

// ---- in-store aggregates ----

namespace {

// users: one row per (project, id), read, merged in C++ (MergeId) and
// written whole; read-modify-write is safe because the transaction holds
// the write lock. A delta with counts and times only is added in SQL
// (kAddId, NeedsStoredRow). link_* is the earliest link; user_links keeps every link
// with its earliest key (a row compare: time, then insert_id, bytewise).
constexpr char kGetId[] =
    "SELECT first_seen, last_seen, events, properties, user_seen, linked_to, link_target, "
    "link_time, link_insert_id FROM users WHERE project = ?1 AND user_id = ?2";
constexpr char kGetLinks[] =
    "SELECT to_id, time, insert_id FROM user_links WHERE project = ?1 AND from_id = ?2";
constexpr char kPutId[] =
    "INSERT INTO users(project, user_id, first_seen, last_seen, events, properties, user_seen, "
    "linked_to, link_target, link_time, link_insert_id) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
    "ON CONFLICT(project, user_id) DO UPDATE SET first_seen = excluded.first_seen, "
    "last_seen = excluded.last_seen, events = excluded.events, properties = excluded.properties, "
    "user_seen = excluded.user_seen, linked_to = excluded.linked_to, "
    "link_target = excluded.link_target, link_time = excluded.link_time, "
    "link_insert_id = excluded.link_insert_id";
// A delta that needs no stored row (NeedsStoredRow): added in SQL alone.
constexpr char kAddId[] =
    "INSERT INTO users(project, user_id, first_seen, last_seen, events, user_seen) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(project, user_id) DO UPDATE SET "
    "first_seen = CASE WHEN excluded.events = 0 THEN first_seen WHEN events = 0 "
    "THEN excluded.first_seen ELSE min(first_seen, excluded.first_seen) END, "
    "last_seen = CASE WHEN excluded.events = 0 THEN last_seen WHEN events = 0 "
    "THEN excluded.last_seen ELSE max(last_seen, excluded.last_seen) END, "
    "events = events + excluded.events, user_seen = max(user_seen, excluded.user_seen)";
constexpr char kPutLink[] =
    "INSERT INTO user_links(project, from_id, to_id, time, insert_id) VALUES (?1, ?2, ?3, ?4, ?5) "
    "ON CONFLICT(project, from_id, to_id) DO UPDATE SET time = excluded.time, "
    "insert_id = excluded.insert_id "
    "WHERE (excluded.time, excluded.insert_id) < (time, insert_id)";
constexpr char kUpsertUserEvent[] =
    "INSERT INTO user_events(project, user_id, event, count) VALUES (?1, ?2, ?3, ?4) "
    "ON CONFLICT(project, user_id, event) DO UPDATE SET count = count + excluded.count";
constexpr char kAddLinkCount[] = "UPDATE meta SET v = v + ?2 WHERE k = ?1";

// Reads the stored row of `id` (and every link when `all_links`).
Status ReadStoredId(Stmt& get, Stmt& links, const IdDelta& d, bool all_links, StoredId* out) {
  *out = StoredId{};
  get.Reset();
  get.Bind(1, d.project).Bind(2, d.id);
  SLUICE_ASSIGN_OR_RETURN(bool row, get.Step());
  if (row) {
    out->exists = true;
    IdState& s = out->state;
    s.first_seen_ms = get.Int(0);
    s.last_seen_ms = get.Int(1);
    s.events = get.Int(2);
    out->properties = get.Str(3);
    s.user_seen = get.Int(4) != 0;
    s.linked_to = get.Int(5) != 0;
    if (!get.IsNull(6)) s.links[get.Str(6)] = OpKey{get.Int(7), get.Str(8)};
  }
  if (all_links) {
    out->all_links = true;
    links.Reset();
    links.Bind(1, d.project).Bind(2, d.id);
    while (true) {
      SLUICE_ASSIGN_OR_RETURN(bool more, links.Step());
      if (!more) break;
      out->state.links[links.Str(0)] = OpKey{links.Int(1), links.Str(2)};
    }
  }
  return Status::Ok();
}

}  // namespace

Status SqliteStore::ApplyEffectsLocked(SqliteConn& c, const Effects& effects) {
  static constexpr char kAddCounterUser[] =
      "INSERT OR IGNORE INTO counter_users(bucket, series, user_hash) VALUES (?1, ?2, ?3)";
  static constexpr char kUpsertCounter[] =
      "INSERT INTO counters(project, event, granularity, bucket, count, users) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
      "ON CONFLICT(project, event, granularity, bucket) DO UPDATE SET "
      "count = count + excluded.count, users = users + excluded.users";

  if (!effects.users.empty()) {
    SLUICE_ASSIGN_OR_RETURN(Stmt get, c.Prepare(kGetId));
    SLUICE_ASSIGN_OR_RETURN(Stmt links, c.Prepare(kGetLinks));
    SLUICE_ASSIGN_OR_RETURN(Stmt put, c.Prepare(kPutId));
    SLUICE_ASSIGN_OR_RETURN(Stmt put_link, c.Prepare(kPutLink));
    SLUICE_ASSIGN_OR_RETURN(Stmt event, c.Prepare(kUpsertUserEvent));
    SLUICE_ASSIGN_OR_RETURN(Stmt add_id, c.Prepare(kAddId));
    auto add_events = [&](const IdDelta& d) -> Status {
      for (const auto& [name, count] : d.state.event_counts) {
        event.Reset();
        event.Bind(1, d.project).Bind(2, d.id).Bind(3, name).Bind(4, count);
        SLUICE_RETURN_IF_ERROR(event.Run());
      }
      return Status::Ok();
    };
    LinkCounts change;
    StoredId stored;
    for (const IdDelta& d : effects.users) {
      if (!NeedsStoredRow(d.state)) {  // the common case: counts and times only
        add_id.Reset();
        add_id.Bind(1, d.project).Bind(2, d.id).Bind(3, d.state.first_seen_ms);
        add_id.Bind(4, d.state.last_seen_ms).Bind(5, d.state.events);
        add_id.Bind(6, static_cast<int64_t>(d.state.user_seen));
        SLUICE_RETURN_IF_ERROR(add_id.Run());
        SLUICE_RETURN_IF_ERROR(add_events(d));
        continue;
      }
      SLUICE_RETURN_IF_ERROR(ReadStoredId(get, links, d, NeedsAllLinks(d.state), &stored));
      SLUICE_ASSIGN_OR_RETURN(IdWrite w, MergeId(stored, d.state));
      put.Reset();
      put.Bind(1, d.project).Bind(2, d.id).Bind(3, w.merged.first_seen_ms);
      put.Bind(4, w.merged.last_seen_ms).Bind(5, w.merged.events).Bind(6, w.properties);
      put.Bind(7, static_cast<int64_t>(w.merged.user_seen));
      put.Bind(8, static_cast<int64_t>(w.merged.linked_to));
      if (w.earliest) {
        put.Bind(9, w.earliest->first).Bind(10, w.earliest->second.time_ms);
        put.Bind(11, w.earliest->second.insert_id);
      } else {
        put.BindNull(9).BindNull(10).BindNull(11);
      }
      SLUICE_RETURN_IF_ERROR(put.Run());
      for (const auto& [target, key] : d.state.links) {
        put_link.Reset();
        put_link.Bind(1, d.project).Bind(2, d.id).Bind(3, target);
        put_link.Bind(4, key.time_ms).Bind(5, key.insert_id);
        SLUICE_RETURN_IF_ERROR(put_link.Run());
      }
      SLUICE_RETURN_IF_ERROR(add_events(d));
      change.applied += w.change.applied;
      change.refused += w.change.refused;
    }
    SLUICE_ASSIGN_OR_RETURN(Stmt add, c.Prepare(kAddLinkCount));
    for (const auto& [k, n] : {std::pair{"links_applied", change.applied},
                               std::pair{"links_refused", change.refused}}) {
      if (n == 0) continue;
      add.Reset();
      add.Bind(1, std::string_view(k)).Bind(2, n);
      SLUICE_RETURN_IF_ERROR(add.Run());
    }
  }
  if (!effects.counters.empty()) {
    SLUICE_ASSIGN_OR_RETURN(Stmt add_user, c.Prepare(kAddCounterUser));
    SLUICE_ASSIGN_OR_RETURN(Stmt upsert, c.Prepare(kUpsertCounter));
    for (const CounterDelta& d : effects.counters) {
      const char* gran = GranularityName(d.granularity);
      // Exact distinct users: count only the users this bucket had not seen.
      int64_t new_users = 0;
      // (Bind only after a reset: a statement left at its end refuses binds.)
      add_user.Reset();
      add_user.Bind(1, d.bucket_ms).Bind(2, CounterSeriesHash(d.project, d.event, gran));
      for (const std::string& user : d.users) {
        add_user.Reset();
        add_user.Bind(3, CounterUserHash(user));
        SLUICE_RETURN_IF_ERROR(add_user.Run());
        new_users += add_user.Changes();
      }
      upsert.Reset();
      upsert.Bind(1, d.project).Bind(2, d.event).Bind(3, gran).Bind(4, d.bucket_ms);
      upsert.Bind(5, d.count).Bind(6, new_users);
      SLUICE_RETURN_IF_ERROR(upsert.Run());
    }
  }
  // effects.jobs: applied by the caller after every consumer's other effects.
  return Status::Ok();
}

Result<UserProfile> SqliteStore::GetUser(const std::string& project, const std::string& user_id) {
  // The asked id's row names its person (PersonOf: the earliest link's
  // target unless the id is a root); the person's candidate rows are the
  // root, the ids whose earliest link targets it (users_link_target) and
  // the sources of links to it (user_links_to: refused merges).
  static constexpr char kCandidates[] =
      "SELECT ?2 UNION SELECT user_id FROM users WHERE project = ?1 AND link_target = ?2 "
      "UNION SELECT from_id FROM user_links WHERE project = ?1 AND to_id = ?2";
  static constexpr char kEvents[] =
      "SELECT event, count FROM user_events WHERE project = ?1 AND user_id = ?2";
  const std::string p = project.empty() ? "default" : project;
  UserProfile out;
  Status st = Read([&](SqliteConn& c, int64_t) -> Status {
    SLUICE_ASSIGN_OR_RETURN(Stmt get, c.Prepare(kGetId));
    SLUICE_ASSIGN_OR_RETURN(Stmt links, c.Prepare(kGetLinks));
    SLUICE_ASSIGN_OR_RETURN(Stmt events, c.Prepare(kEvents));
    StoredId asked;
    SLUICE_RETURN_IF_ERROR(ReadStoredId(get, links, IdDelta{p, user_id, {}}, false, &asked));
    if (!asked.exists) return Status::NotFound(fmt::format("user {}/{} not found", p, user_id));
    const std::string root = PersonOf(user_id, asked.state);
    SLUICE_ASSIGN_OR_RETURN(Stmt cand, c.Prepare(kCandidates));
    cand.Bind(1, p).Bind(2, root);
    std::vector<IdRow> rows;
    while (true) {
      SLUICE_ASSIGN_OR_RETURN(bool more, cand.Step());
      if (!more) break;
      rows.push_back(IdRow{cand.Str(0), {}});
    }
    for (IdRow& row : rows) {
      StoredId stored;
      SLUICE_RETURN_IF_ERROR(ReadStoredId(get, links, IdDelta{p, row.id, {}}, true, &stored));
      if (!stored.exists) continue;  // only the root can be missing, and it is not
      row.state = std::move(stored.state);
      SLUICE_RETURN_IF_ERROR(ParseProperties(
          stored.properties, OpKey{row.state.last_seen_ms, ""}, &row.state.properties));
      events.Reset();
      events.Bind(1, p).Bind(2, row.id);
      while (true) {
        SLUICE_ASSIGN_OR_RETURN(bool more, events.Step());
        if (!more) break;
        row.state.event_counts[events.Str(0)] = events.Int(1);
      }
    }
    out = MakeUserProfile(p, root, rows);
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return out;
}

Result<std::vector<CounterPoint>> SqliteStore::QueryCounters(const CounterQuery& q) {
  if (q.event.empty()) return Status::InvalidArgument("counters: event is required");
  static constexpr char kOne[] =
      "SELECT bucket, count, users FROM counters WHERE project = ?1 AND event = ?2 "
      "AND granularity = ?3 AND bucket >= ?4 AND bucket < ?5 ORDER BY bucket";
  static constexpr char kAll[] =
      "SELECT bucket, sum(count), sum(users) FROM counters WHERE event = ?2 "
      "AND granularity = ?3 AND bucket >= ?4 AND bucket < ?5 GROUP BY bucket ORDER BY bucket";
  std::vector<CounterPoint> out;
  Status st = Read([&](SqliteConn& c, int64_t) -> Status {
    out.clear();
    SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(q.project.empty() ? kAll : kOne));
    s.Bind(1, q.project).Bind(2, q.event).Bind(3, std::string_view(GranularityName(q.granularity)));
    s.Bind(4, q.from_ms).Bind(5, q.to_ms);
    while (true) {
      SLUICE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      out.push_back(CounterPoint{s.Int(0), s.Int(1), s.Int(2)});
    }
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return out;
}

// ---- named leases and the dedup window ----

Result<int64_t> SqliteStore::AcquireNamedLease(const std::string& name, const std::string& owner,
                                               int64_t ttl_ms) {
  static constexpr char kGet[] = "SELECT owner, token, until FROM leases WHERE name = ?1";
  static constexpr char kRenew[] = "UPDATE leases SET until = ?2 WHERE name = ?1";
  static constexpr char kTake[] =
      "INSERT INTO leases(name, owner, token, until) VALUES (?1, ?2, ?3, ?4) "
      "ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, token = excluded.token, "
      "until = excluded.until";
  static constexpr char kBump[] = "UPDATE meta SET v = v + 1 WHERE k = 'token' RETURNING v";
  if (name.empty() || owner.empty() || ttl_ms <= 0) {
    return Status::InvalidArgument("named lease: name, owner and ttl_ms are required");
  }
  int64_t token = 0;
  Status st = Write([&](SqliteConn& c, int64_t now) -> Status {
    {
      SLUICE_ASSIGN_OR_RETURN(Stmt get, c.Prepare(kGet));
      get.Bind(1, name);
      SLUICE_ASSIGN_OR_RETURN(bool row, get.Step());
      if (row && get.Int(2) > now) {
        if (get.Text(0) != owner) {
          return Status::Busy(fmt::format("lease {} held by {}", name, get.Text(0)));
        }
        // Renewal keeps the token: work fenced by it stays valid.
        token = get.Int(1);
        SLUICE_RETURN_IF_ERROR(get.Run());
        SLUICE_ASSIGN_OR_RETURN(Stmt renew, c.Prepare(kRenew));
        return renew.Bind(1, name).Bind(2, now + ttl_ms).Run();
      }
    }
    SLUICE_ASSIGN_OR_RETURN(Stmt bump, c.Prepare(kBump));
    SLUICE_ASSIGN_OR_RETURN(bool row, bump.Step());
    if (!row) return Status::Internal("sqlite store: token counter missing");
    token = bump.Int(0);
    SLUICE_RETURN_IF_ERROR(bump.Run());
    SLUICE_ASSIGN_OR_RETURN(Stmt take, c.Prepare(kTake));
    return take.Bind(1, name).Bind(2, owner).Bind(3, token).Bind(4, now + ttl_ms).Run();
  });
  if (!st.ok()) return st;
  return token;
}

Status SqliteStore::ReleaseNamedLease(const std::string& name, int64_t token) {
  static constexpr char kRelease[] = "DELETE FROM leases WHERE name = ?1 AND token = ?2";
  return Write([&](SqliteConn& c, int64_t) -> Status {
    SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kRelease));
    SLUICE_RETURN_IF_ERROR(s.Bind(1, name).Bind(2, token).Run());
    if (s.Changes() == 0) {
      return Status::LeaseLost(fmt::format("lease {} is not held under token {}", name, token));
    }
    return Status::Ok();
  });
}

Result<DedupMaintenance> SqliteStore::MaintainDedup(int64_t named_lease_token) {
  // One write transaction: the fence check, the registry read and the DDL
  // commit together, and every enqueue (which reads the registry in its own
  // write transaction) sees either none or all of it.
  static constexpr char kHeld[] = "SELECT 1 FROM leases WHERE token = ?1 AND until > ?2";
  static constexpr char kAdd[] = "INSERT INTO dedup_buckets(id, start_ms) VALUES (?1, ?2)";
  static constexpr char kRemove[] = "DELETE FROM dedup_buckets WHERE id = ?1";
  DedupMaintenance out;
  Status st = Write([&](SqliteConn& c, int64_t now) -> Status {
    out = DedupMaintenance{};
    {
      SLUICE_ASSIGN_OR_RETURN(Stmt held, c.Prepare(kHeld));
      held.Bind(1, named_lease_token).Bind(2, now);
      SLUICE_ASSIGN_OR_RETURN(bool row, held.Step());
      if (!row) {
        return Status::LeaseLost(
            fmt::format("maintain dedup: token {} holds no named lease", named_lease_token));
      }
    }
    SLUICE_ASSIGN_OR_RETURN(std::vector<DedupBucket> live, ReadDedupBuckets(c));
    const DedupPlan plan =
        PlanDedupMaintenance(live, now, options_.dedup_window_ms, options_.dedup_buckets);
    if (plan.create) {
      const std::string ddl = fmt::format(
          "CREATE TABLE {}(h1 INTEGER NOT NULL, h2 INTEGER NOT NULL, PRIMARY KEY (h1, h2)) "
          "WITHOUT ROWID",
          DedupTableName(plan.new_id));
      SLUICE_RETURN_IF_ERROR(c.Exec(ddl.c_str()));
      SLUICE_ASSIGN_OR_RETURN(Stmt add, c.Prepare(kAdd));
      SLUICE_RETURN_IF_ERROR(add.Bind(1, plan.new_id).Bind(2, now).Run());
      out.created = 1;
    }
    for (int64_t id : plan.drop) {
      const std::string ddl = fmt::format("DROP TABLE {}", DedupTableName(id));
      SLUICE_RETURN_IF_ERROR(c.Exec(ddl.c_str()));
      SLUICE_ASSIGN_OR_RETURN(Stmt remove, c.Prepare(kRemove));
      SLUICE_RETURN_IF_ERROR(remove.Bind(1, id).Run());
      ++out.dropped;
    }
    out.live = static_cast<int64_t>(live.size()) + out.created - out.dropped;
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return out;
}

// ---- replicas and status ----

Status SqliteStore::RegisterReplica(const ReplicaInfo& info) {
  static constexpr char kUpsert[] =
      "INSERT INTO replicas(id, host, pid, version, started, heartbeat) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(id) DO UPDATE SET host = excluded.host, "
      "pid = excluded.pid, version = excluded.version, started = excluded.started, "
      "heartbeat = excluded.heartbeat";
  if (info.id.empty()) return Status::InvalidArgument("replica id is required");
  return Write([&](SqliteConn& c, int64_t now) -> Status {
    SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kUpsert));
    s.Bind(1, info.id).Bind(2, info.host).Bind(3, info.pid).Bind(4, info.version);
    return s.Bind(5, info.started_ms > 0 ? info.started_ms : now).Bind(6, now).Run();
  });
}

Status SqliteStore::HeartbeatReplica(const std::string& id) {
  static constexpr char kBeat[] = "UPDATE replicas SET heartbeat = ?2 WHERE id = ?1";
  return Write([&](SqliteConn& c, int64_t now) -> Status {
    SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kBeat));
    SLUICE_RETURN_IF_ERROR(s.Bind(1, id).Bind(2, now).Run());
    if (s.Changes() == 0) return Status::NotFound(fmt::format("replica {} not registered", id));
    return Status::Ok();
  });
}

Status SqliteStore::RemoveReplica(const std::string& id) {
  static constexpr char kRemove[] = "DELETE FROM replicas WHERE id = ?1";
  return Write([&](SqliteConn& c, int64_t) -> Status {
    SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kRemove));
    return s.Bind(1, id).Run();
  });
}

Result<std::vector<ReplicaInfo>> SqliteStore::ListReplicas(int64_t alive_within_ms) {
  // Claim owners are "<replica id>/<loop>"; a live lease is one not expired.
  static constexpr char kList[] =
      "SELECT r.id, r.host, r.pid, r.version, r.started, r.heartbeat, "
      "(SELECT count(*) FROM queue q WHERE q.state = 'leased' AND q.lease_until > ?2 "
      "AND (q.lease_owner = r.id OR substr(q.lease_owner, 1, length(r.id) + 1) = r.id || '/')), "
      "r.stats FROM replicas r WHERE r.heartbeat >= ?1 ORDER BY r.id";
  std::vector<ReplicaInfo> out;
  Status st = Read([&](SqliteConn& c, int64_t now) -> Status {
    out.clear();
    SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kList));
    s.Bind(1, now - alive_within_ms).Bind(2, now);
    while (true) {
      SLUICE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      ReplicaInfo r;
      r.id = s.Str(0);
      r.host = s.Str(1);
      r.pid = s.Int(2);
      r.version = s.Str(3);
      r.started_ms = s.Int(4);
      r.heartbeat_ms = s.Int(5);
      r.leases_held = s.Int(6);
      r.stats = s.Str(7);
      out.push_back(std::move(r));
    }
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return out;
}

Result<QueueStats> SqliteStore::Stats() {
  // Each count walks a partial index rather than the table.
  static constexpr char kLive[] = "SELECT count(*) FROM queue WHERE state != 'dead'";
  static constexpr char kLeased[] =
      "SELECT count(*) FROM queue WHERE lease_token IS NOT NULL AND state = 'leased'";
  static constexpr char kDead[] = "SELECT count(*) FROM queue WHERE state = 'dead'";
  static constexpr char kOldest[] =
      "SELECT enqueued_at FROM queue WHERE state != 'dead' AND state = 'pending' "
      "ORDER BY seq LIMIT 1";  // "!= 'dead'" lets the planner walk queue_claim
  static constexpr char kLinks[] =
      "SELECT coalesce(sum(v) FILTER (WHERE k = 'links_applied'), 0), "
      "coalesce(sum(v) FILTER (WHERE k = 'links_refused'), 0) FROM meta "
      "WHERE k IN ('links_applied', 'links_refused')";
  QueueStats stats;
  Status st = Read([&](SqliteConn& c, int64_t now) -> Status {
    auto count = [&](const char* sql) -> Result<int64_t> {
      SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(sql));
      SLUICE_ASSIGN_OR_RETURN(bool row, s.Step());
      return row ? s.Int(0) : 0;
    };
    SLUICE_ASSIGN_OR_RETURN(int64_t live, count(kLive));
    SLUICE_ASSIGN_OR_RETURN(stats.leased, count(kLeased));
    SLUICE_ASSIGN_OR_RETURN(stats.dead, count(kDead));
    stats.pending = live - stats.leased;
    SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kOldest));
    SLUICE_ASSIGN_OR_RETURN(bool row, s.Step());
    stats.oldest_pending_age_ms = row ? std::max<int64_t>(0, now - s.Int(0)) : 0;
    SLUICE_ASSIGN_OR_RETURN(Stmt l, c.Prepare(kLinks));
    SLUICE_ASSIGN_OR_RETURN(bool links, l.Step());
    if (links) {
      stats.identity_links_applied = l.Int(0);
      stats.identity_links_refused = l.Int(1);
    }
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return stats;
}

Result<int64_t> SqliteStore::PollDepth(int64_t exact_above, int64_t limit) {
  SLUICE_RETURN_IF_ERROR(CheckPollDepth(exact_above, limit));
  // AUTOINCREMENT keeps the last seq issued in sqlite_sequence (one row); the
  // lowest live seq is the first entry of queue_claim. Rows are deleted
  // physically, so the count below reads only live index entries.
  static constexpr char kBound[] =
      "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'queue'), 0) - "
      "coalesce((SELECT min(seq) FROM queue WHERE state != 'dead'), "
      "(SELECT seq FROM sqlite_sequence WHERE name = 'queue') + 1, 1) + 1";
  // A plain count when the bound says it reads at most `limit` rows: SQLite
  // counts an index without decoding its rows, ~4x less CPU than through a
  // LIMIT subquery.
  static constexpr char kCount[] = "SELECT count(*) FROM queue WHERE state != 'dead'";
  static constexpr char kCountUpTo[] =
      "SELECT count(*) FROM (SELECT 1 FROM queue WHERE state != 'dead' LIMIT ?)";
  int64_t depth = 0;
  Status st = Read([&](SqliteConn& c, int64_t) -> Status {
    SLUICE_ASSIGN_OR_RETURN(Stmt b, c.Prepare(kBound));
    SLUICE_ASSIGN_OR_RETURN(bool row, b.Step());
    depth = row ? std::max<int64_t>(0, b.Int(0)) : 0;
    if (depth <= exact_above) return Status::Ok();
    const bool whole = depth <= limit;
    SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(whole ? kCount : kCountUpTo));
    if (!whole) s.Bind(1, limit);
    SLUICE_ASSIGN_OR_RETURN(bool counted, s.Step());
    depth = counted ? s.Int(0) : 0;
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return depth;
}

// ---- the console ----

namespace {

// Columns 0..6 of the head scan and of the probes (NULLs read as 0).
MaskGroup GroupOf(const Stmt& s) {
  MaskGroup g;
  g.done_mask = static_cast<uint64_t>(s.Int(0));
  g.events = s.Int(1);
  g.leased = s.Int(2);
  g.waiting = s.Int(3);
  g.oldest_ms = s.Int(4);
  g.oldest_pending_ms = s.Int(5);
  g.next_visible_ms = s.Int(6);
  return g;
}

}  // namespace

Status SqliteStore::PublishReplicaStats(const std::string& id, const std::string& stats_json) {
  static constexpr char kBeat[] = "UPDATE replicas SET heartbeat = ?2, stats = ?3 WHERE id = ?1";
  if (stats_json.size() > kMaxReplicaStatsBytes) {
    return Status::TooLarge(fmt::format("replica stats of {} bytes (at most {})",
                                        stats_json.size(), kMaxReplicaStatsBytes));
  }
  return Write([&](SqliteConn& c, int64_t now) -> Status {
    SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kBeat));
    SLUICE_RETURN_IF_ERROR(s.Bind(1, id).Bind(2, now).Bind(3, stats_json).Run());
    if (s.Changes() == 0) return Status::NotFound(fmt::format("replica {} not registered", id));
    return Status::Ok();
  });
}

Result<BacklogScan> SqliteStore::ScanBacklog(const BacklogScanRequest& req) {
  // The head scan walks the table in seq (rowid) order and stops after ?1
  // live rows; grouping by done_mask keeps the answer to a few rows whatever
  // the number of consumers. The dead scan walks queue_dead likewise.
  // "state != 'dead'" lets the planner use queue_claim's order.
  static constexpr char kLive[] =
      "SELECT done_mask, count(*), sum(state = 'leased'), "
      "sum(state = 'pending' AND visible_at > ?2), min(enqueued_at), "
      "min(CASE WHEN state = 'pending' THEN enqueued_at END), "
      "min(CASE WHEN state = 'pending' AND visible_at > ?2 THEN visible_at END), "
      "min(seq), max(seq) "
      "FROM (SELECT seq, done_mask, state, enqueued_at, visible_at FROM queue "
      "      WHERE state != 'dead' ORDER BY seq LIMIT ?1) GROUP BY done_mask";
  static constexpr char kDead[] =
      "SELECT done_mask, count(*), min(coalesce(died_at, 0)) "
      "FROM (SELECT done_mask, died_at FROM queue WHERE state = 'dead' ORDER BY seq LIMIT ?1) "
      "GROUP BY done_mask";
  // One rowid lookup per probe: seq ?1 + i * ?2 / ?3 for i in [0, ?3).
  static constexpr char kProbe[] =
      "WITH RECURSIVE p(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM p WHERE i + 1 < ?3) "
      "SELECT q.done_mask, count(*), sum(q.state = 'leased'), "
      "sum(q.state = 'pending' AND q.visible_at > ?4), min(q.enqueued_at), "
      "min(CASE WHEN q.state = 'pending' THEN q.enqueued_at END), "
      "min(CASE WHEN q.state = 'pending' AND q.visible_at > ?4 THEN q.visible_at END) "
      "FROM p JOIN queue q ON q.seq = ?1 + (p.i * ?2) / ?3 "
      "WHERE q.state != 'dead' GROUP BY q.done_mask";
  static constexpr char kTotals[] =
      "SELECT (SELECT count(*) FROM queue WHERE lease_token IS NOT NULL AND state = 'leased'), "
      "coalesce((SELECT max(seq) FROM queue), 0)";
  if (req.max_live <= 0 || req.max_dead <= 0 || req.samples <= 0) {
    return Status::InvalidArgument("scan backlog: max_live, max_dead and samples must be > 0");
  }
  BacklogScan out;
  Status st = Read([&](SqliteConn& c, int64_t now) -> Status {
    out = BacklogScan{};
    out.now_ms = now;
    {
      SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kLive));
      s.Bind(1, req.max_live).Bind(2, now);
      while (true) {
        SLUICE_ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        const MaskGroup g = GroupOf(s);
        const int64_t lo = s.Int(7);
        const int64_t hi = s.Int(8);
        if (out.first_live_seq == 0 || lo < out.first_live_seq) out.first_live_seq = lo;
        out.last_scanned_seq = std::max(out.last_scanned_seq, hi);
        out.live_scanned += g.events;
        out.live.push_back(g);
      }
      out.live_complete = out.live_scanned < req.max_live;
    }
    {
      SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kDead));
      s.Bind(1, req.max_dead);
      while (true) {
        SLUICE_ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        MaskGroup g;
        g.done_mask = static_cast<uint64_t>(s.Int(0));
        g.events = s.Int(1);
        g.oldest_ms = s.Int(2);
        out.dead_scanned += g.events;
        out.dead.push_back(g);
      }
      out.dead_complete = out.dead_scanned < req.max_dead;
    }
    {
      SLUICE_ASSIGN_OR_RETURN(Stmt t, c.Prepare(kTotals));
      SLUICE_ASSIGN_OR_RETURN(bool row, t.Step());
      if (row) {
        out.leased_total = t.Int(0);
        out.max_seq = t.Int(1);
      }
    }
    if (out.live_complete || out.max_seq <= out.last_scanned_seq) return Status::Ok();
    out.sample_span = out.max_seq - out.last_scanned_seq;
    out.samples_taken = std::min(req.samples, out.sample_span);
    SLUICE_ASSIGN_OR_RETURN(Stmt p, c.Prepare(kProbe));
    p.Bind(1, out.last_scanned_seq + 1).Bind(2, out.sample_span).Bind(3, out.samples_taken);
    p.Bind(4, now);
    while (true) {
      SLUICE_ASSIGN_OR_RETURN(bool row, p.Step());
      if (!row) break;
      out.sampled.push_back(GroupOf(p));
    }
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return out;
}

}  // namespace sluice
