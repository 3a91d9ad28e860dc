// SqliteStore: in-store aggregates (apply and read), named leases, dedup
// pruning, replicas and queue statistics.
#include <algorithm>

#include "fmt/format.h"
#include "queue/sqlite/sqlite_schema.h"
#include "queue/sqlite/sqlite_store.h"

namespace sluice {

// ---- in-store aggregates ----

Status SqliteStore::ApplyEffectsLocked(SqliteConn& c, const Effects& effects) {
  static constexpr char kGetProps[] =
      "SELECT properties FROM users WHERE project = ?1 AND user_id = ?2";
  // ?6 = merged properties, or NULL to keep the stored ones.
  static constexpr char kUpsertUser[] =
      "INSERT INTO users(project, user_id, first_seen, last_seen, events, properties) "
      "VALUES (?1, ?2, ?3, ?4, ?5, coalesce(?6, '{}')) "
      "ON CONFLICT(project, user_id) DO UPDATE SET "
      "first_seen = min(first_seen, excluded.first_seen), "
      "last_seen = max(last_seen, excluded.last_seen), events = events + excluded.events, "
      "properties = coalesce(?6, properties)";
  static constexpr char kUpsertUserEvent[] =
      "INSERT INTO user_events(project, user_id, event, count) VALUES (?1, ?2, ?3, ?4) "
      "ON CONFLICT(project, user_id, event) DO UPDATE SET count = count + excluded.count";
  static constexpr char kAddCounterUser[] =
      "INSERT OR IGNORE INTO counter_users(bucket, series, user_hash) VALUES (?1, ?2, ?3)";
  static constexpr char kUpsertCounter[] =
      "INSERT INTO counters(project, event, granularity, bucket, count, users) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
      "ON CONFLICT(project, event, granularity, bucket) DO UPDATE SET "
      "count = count + excluded.count, users = users + excluded.users";

  if (!effects.users.empty()) {
    SLUICE_ASSIGN_OR_RETURN(Stmt get, c.Prepare(kGetProps));
    SLUICE_ASSIGN_OR_RETURN(Stmt upsert, c.Prepare(kUpsertUser));
    SLUICE_ASSIGN_OR_RETURN(Stmt event, c.Prepare(kUpsertUserEvent));
    for (const UserDelta& u : effects.users) {
      // Property merges need the stored object: read-modify-write is safe
      // because the transaction holds the write lock.
      std::string props;
      const bool merge = !u.set.empty() || !u.set_once.empty();
      if (merge) {
        get.Reset();
        get.Bind(1, u.project).Bind(2, u.user_id);
        SLUICE_ASSIGN_OR_RETURN(bool row, get.Step());
        std::string stored = row ? get.Str(0) : std::string();
        props = MergeJsonObjects(MergeJsonObjects(stored, u.set, true), u.set_once, false);
      }
      upsert.Reset();
      upsert.Bind(1, u.project).Bind(2, u.user_id).Bind(3, u.first_seen_ms);
      upsert.Bind(4, u.last_seen_ms).Bind(5, u.events);
      if (merge) {
        upsert.Bind(6, props);
      } else {
        upsert.BindNull(6);
      }
      SLUICE_RETURN_IF_ERROR(upsert.Run());
      for (const auto& [name, count] : u.event_counts) {
        event.Reset();
        event.Bind(1, u.project).Bind(2, u.user_id).Bind(3, name).Bind(4, count);
        SLUICE_RETURN_IF_ERROR(event.Run());
      }
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
  return Status::Ok();
}

Result<UserProfile> SqliteStore::GetUser(const std::string& project, const std::string& user_id) {
  static constexpr char kUser[] =
      "SELECT first_seen, last_seen, events, properties FROM users "
      "WHERE project = ?1 AND user_id = ?2";
  static constexpr char kEvents[] =
      "SELECT event, count FROM user_events WHERE project = ?1 AND user_id = ?2 ORDER BY event";
  UserProfile p;
  p.project = project.empty() ? "default" : project;
  p.user_id = user_id;
  Status st = Read([&](SqliteConn& c, int64_t) -> Status {
    p.event_counts.clear();
    SLUICE_ASSIGN_OR_RETURN(Stmt u, c.Prepare(kUser));
    u.Bind(1, p.project).Bind(2, p.user_id);
    SLUICE_ASSIGN_OR_RETURN(bool row, u.Step());
    if (!row) return Status::NotFound(fmt::format("user {}/{} not found", p.project, user_id));
    p.first_seen_ms = u.Int(0);
    p.last_seen_ms = u.Int(1);
    p.events = u.Int(2);
    p.properties = u.Str(3);
    SLUICE_ASSIGN_OR_RETURN(Stmt e, c.Prepare(kEvents));
    e.Bind(1, p.project).Bind(2, p.user_id);
    while (true) {
      SLUICE_ASSIGN_OR_RETURN(bool more, e.Step());
      if (!more) break;
      p.event_counts.emplace_back(e.Str(0), e.Int(1));
    }
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return p;
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

// ---- named leases and dedup pruning ----

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

Result<int64_t> SqliteStore::PruneDedup(int64_t named_lease_token, int64_t limit) {
  static constexpr char kHeld[] = "SELECT 1 FROM leases WHERE token = ?1 AND until > ?2";
  static constexpr char kPrune[] =
      "DELETE FROM dedup WHERE (project, insert_id) IN "
      "(SELECT project, insert_id FROM dedup WHERE seen_at < ?1 ORDER BY seen_at LIMIT ?2)";
  if (limit <= 0) return int64_t{0};
  int64_t n = 0;
  Status st = Write([&](SqliteConn& c, int64_t now) -> Status {
    {
      SLUICE_ASSIGN_OR_RETURN(Stmt held, c.Prepare(kHeld));
      held.Bind(1, named_lease_token).Bind(2, now);
      SLUICE_ASSIGN_OR_RETURN(bool row, held.Step());
      if (!row) {
        return Status::LeaseLost(
            fmt::format("prune dedup: token {} holds no named lease", named_lease_token));
      }
    }
    SLUICE_ASSIGN_OR_RETURN(Stmt prune, c.Prepare(kPrune));
    SLUICE_RETURN_IF_ERROR(prune.Bind(1, now - options_.dedup_window_ms).Bind(2, limit).Run());
    n = prune.Changes();
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return n;
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
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return stats;
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
