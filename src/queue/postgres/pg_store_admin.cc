// PostgresStore: in-store aggregates (apply and read), dead letters, named
// leases, dedup window maintenance, replicas and queue statistics.
#include <algorithm>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <string_view>
#include <tuple>
#include <utility>

#include "fmt/format.h"
#include "queue/lease_logic.h"
#include "queue/postgres/pg_store.h"

namespace sluice {

namespace {

#define SLUICE_MS(x) "floor(extract(epoch FROM " x ") * 1000)::bigint"

}  // namespace

// ---- in-store aggregates ----

namespace {

// Set-based: one statement per table family whatever the batch size. Rows
// are written in key order so concurrent batches touching the same users or
// counter buckets lock them in the same order (users, then counters; each
// sorted), which rules out deadlocks between them.
//
// users: read, merged in C++ (MergeId) and written whole. The rows are
// locked first: an INSERT .. DO NOTHING creates the ids not stored yet
// (waiting for a concurrent inserter of the same id), then SELECT .. FOR
// UPDATE locks every row in key order; a second reader of an id waits for
// the first to commit, so no merge is lost. The links of an id are written
// only by the holder of its users row, so reading them after the lock is
// exact. user_links keeps every link with its earliest key (a row compare:
// time, then insert_id bytewise as in SQLite); identity_links is
// profile::CountLinks summed over users, changed only when it changes.
constexpr char kCreateIds[] =
    "INSERT INTO users (project, user_id, first_seen, last_seen, events) "
    "SELECT p, u, 0, 0, 0 FROM unnest($1::text[], $2::text[]) AS t(p, u) ORDER BY 1, 2 "
    "ON CONFLICT (project, user_id) DO NOTHING";
constexpr char kLockIds[] =
    "SELECT x.project, x.user_id, x.first_seen, x.last_seen, x.events, x.properties, "
    "x.user_seen::int, x.linked_to::int, x.link_target, x.link_time, x.link_insert_id "
    "FROM users x JOIN unnest($1::text[], $2::text[]) AS t(p, u) "
    "ON x.project = t.p AND x.user_id = t.u ORDER BY x.project, x.user_id FOR UPDATE OF x";
constexpr char kReadLinks[] =
    "SELECT l.project, l.from_id, l.to_id, l.time, l.insert_id "
    "FROM user_links l JOIN unnest($1::text[], $2::text[]) AS t(p, u) "
    "ON l.project = t.p AND l.from_id = t.u";
constexpr char kWriteIds[] =
    "UPDATE users SET first_seen = w.f, last_seen = w.l, events = w.n, properties = w.props, "
    "user_seen = w.us <> 0, linked_to = w.lt <> 0, link_target = nullif(w.tgt, ''), "
    "link_time = CASE WHEN w.tgt = '' THEN NULL ELSE w.tt END, "
    "link_insert_id = CASE WHEN w.tgt = '' THEN NULL ELSE w.ti END "
    "FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], "
    "$7::bigint[], $8::bigint[], $9::text[], $10::bigint[], $11::text[]) "
    "AS w(p, u, f, l, n, props, us, lt, tgt, tt, ti) "
    "WHERE users.project = w.p AND users.user_id = w.u";
// A batch whose deltas need no stored row (NeedsStoredRow) is added in SQL
// alone, in one upsert (key order, like the locks above).
constexpr char kAddIds[] =
    "INSERT INTO users AS x (project, user_id, first_seen, last_seen, events, user_seen) "
    "SELECT p, u, f, l, n, us <> 0 FROM unnest($1::text[], $2::text[], $3::bigint[], "
    "$4::bigint[], $5::bigint[], $6::bigint[]) AS t(p, u, f, l, n, us) ORDER BY 1, 2 "
    "ON CONFLICT (project, user_id) DO UPDATE SET "
    "first_seen = CASE WHEN excluded.events = 0 THEN x.first_seen WHEN x.events = 0 "
    "THEN excluded.first_seen ELSE least(x.first_seen, excluded.first_seen) END, "
    "last_seen = CASE WHEN excluded.events = 0 THEN x.last_seen WHEN x.events = 0 "
    "THEN excluded.last_seen ELSE greatest(x.last_seen, excluded.last_seen) END, "
    "events = x.events + excluded.events, user_seen = x.user_seen OR excluded.user_seen";
constexpr char kAddUserEvents[] =
    "INSERT INTO user_events AS x (project, user_id, event, count) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) ORDER BY 1, 2, 3 "
    "ON CONFLICT (project, user_id, event) DO UPDATE SET count = x.count + excluded.count";
constexpr char kAddLinks[] =
    "INSERT INTO user_links AS x (project, from_id, to_id, time, insert_id) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[]) "
    "ORDER BY 1, 2, 3 "
    "ON CONFLICT (project, from_id, to_id) DO UPDATE SET time = excluded.time, "
    "insert_id = excluded.insert_id "
    "WHERE (excluded.time, excluded.insert_id COLLATE \"C\") < (x.time, x.insert_id COLLATE \"C\")";
constexpr char kAddLinkCounts[] =
    "UPDATE identity_links SET applied = applied + $1, refused = refused + $2";
// counters: counter_users rows that are new (ON CONFLICT DO NOTHING
// RETURNING) are exactly the distinct users this bucket had not seen; a
// concurrent batch inserting the same (bucket, series, user) waits for us
// and then sees the conflict, so a user is counted once per bucket. Keys
// are hashed by the server (sluice_counter_series, sluice_user_hash:
// migration v3), the functions the migration rehashed stored rows with.
// Each user row names its counter row by ordinal ($6), so the texts of a
// series are sent and hashed once per counter row, not once per user.
constexpr char kUpsertCounters[] =
    "WITH d AS ("
    "  SELECT d.*, sluice_counter_series(d.project, d.event, d.granularity) AS series "
    "  FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[]) "
    "  WITH ORDINALITY AS d(project, event, granularity, bucket, count, i)), "
    "cu AS ("
    "  INSERT INTO counter_users (bucket, series, user_hash) "
    "  SELECT d.bucket, d.series, sluice_user_hash(u.user_id) "
    "  FROM unnest($6::bigint[], $7::text[]) AS u(i, user_id) JOIN d USING (i) "
    "  ORDER BY 1, 2, 3 "
    "  ON CONFLICT DO NOTHING RETURNING bucket, series), "
    "n AS (SELECT bucket, series, count(*) AS users FROM cu GROUP BY 1, 2) "
    "INSERT INTO counters AS x (project, event, granularity, bucket, count, users) "
    "SELECT d.project, d.event, d.granularity, d.bucket, d.count, coalesce(n.users, 0) "
    "FROM d LEFT JOIN n USING (bucket, series) "
    "ORDER BY 1, 2, 3, 4 "
    "ON CONFLICT (project, event, granularity, bucket) DO UPDATE SET "
    "count = x.count + excluded.count, users = x.users + excluded.users";

// The users part of one transaction: the ids to lock, then what to write.
struct UserWrites {
  PgParams ids;    // kCreateIds, kLockIds
  PgParams links;  // kReadLinks: the ids whose every link MergeId needs
  PgParams rows, events, new_links, counts;
  bool any_events = false, any_links = false, any_counts = false;
};

// Fills the lock and read parameters from the request's id deltas.
void PrepareUserReads(const IdDeltaSet& deltas, UserWrites* out) {
  std::vector<std::string_view> p, u, lp, lu;
  for (const IdDelta* d : deltas.rows()) {
    p.push_back(d->project);
    u.push_back(d->id);
    if (NeedsAllLinks(d->state)) {
      lp.push_back(d->project);
      lu.push_back(d->id);
    }
  }
  out->ids.AddArray(std::span<const std::string_view>(p))
      .AddArray(std::span<const std::string_view>(u));
  out->links.AddArray(std::span<const std::string_view>(lp))
      .AddArray(std::span<const std::string_view>(lu));
}

// Appends the event-count rows of `d` (kAddUserEvents).
void AppendUserEvents(const IdDelta& d, std::vector<std::string>* ep, std::vector<std::string>* eu,
                      std::vector<std::string>* en, std::vector<int64_t>* ec) {
  for (const auto& [name, n] : d.state.event_counts) {
    ep->push_back(d.project);
    eu->push_back(d.id);
    en->push_back(name);
    ec->push_back(n);
  }
}

void SetUserEvents(std::vector<std::string>& ep, std::vector<std::string>& eu,
                   std::vector<std::string>& en, std::vector<int64_t>& ec, UserWrites* out) {
  out->any_events = !ep.empty();
  if (!out->any_events) return;
  out->events.AddArray(std::span<const std::string>(ep))
      .AddArray(std::span<const std::string>(eu))
      .AddArray(std::span<const std::string>(en))
      .AddArray(std::span<const int64_t>(ec));
}

// Fills kAddIds and kAddUserEvents for a batch no delta of which needs the
// stored row.
void PrepareUserAdds(const IdDeltaSet& deltas, UserWrites* out) {
  std::vector<std::string> rp, ru, ep, eu, en;
  std::vector<int64_t> rf, rl, rn, rus, ec;
  for (const IdDelta* d : deltas.rows()) {
    rp.push_back(d->project);
    ru.push_back(d->id);
    rf.push_back(d->state.first_seen_ms);
    rl.push_back(d->state.last_seen_ms);
    rn.push_back(d->state.events);
    rus.push_back(d->state.user_seen ? 1 : 0);
    AppendUserEvents(*d, &ep, &eu, &en, &ec);
  }
  out->rows.AddArray(std::span<const std::string>(rp))
      .AddArray(std::span<const std::string>(ru))
      .AddArray(std::span<const int64_t>(rf))
      .AddArray(std::span<const int64_t>(rl))
      .AddArray(std::span<const int64_t>(rn))
      .AddArray(std::span<const int64_t>(rus));
  SetUserEvents(ep, eu, en, ec, out);
}

// Merges the stored rows (kLockIds, kReadLinks results) with the deltas
// and fills the write parameters.
Status PrepareUserWrites(const IdDeltaSet& deltas, const PgResult& stored_rows,
                         const PgResult& stored_links, UserWrites* out) {
  using Key = std::pair<std::string_view, std::string_view>;
  std::map<Key, StoredId> stored;
  for (int i = 0; i < stored_rows.rows(); ++i) {
    StoredId& s = stored[{stored_rows.Text(i, 0), stored_rows.Text(i, 1)}];
    s.exists = true;
    s.state.first_seen_ms = stored_rows.Int(i, 2);
    s.state.last_seen_ms = stored_rows.Int(i, 3);
    s.state.events = stored_rows.Int(i, 4);
    s.properties = stored_rows.Str(i, 5);
    s.state.user_seen = stored_rows.Int(i, 6) != 0;
    s.state.linked_to = stored_rows.Int(i, 7) != 0;
    if (!stored_rows.IsNull(i, 8)) {
      s.state.links[stored_rows.Str(i, 8)] =
          OpKey{stored_rows.Int(i, 9), stored_rows.Str(i, 10)};
    }
  }
  for (int i = 0; i < stored_links.rows(); ++i) {
    auto it = stored.find({stored_links.Text(i, 0), stored_links.Text(i, 1)});
    if (it == stored.end()) continue;
    it->second.state.links[stored_links.Str(i, 2)] =
        OpKey{stored_links.Int(i, 3), stored_links.Str(i, 4)};
  }
  std::vector<std::string> rp, ru, rprops, rtgt, rti, ep, eu, en, lp, lf, lt, li;
  std::vector<int64_t> rf, rl, rn, rus, rlt, rtt, ec, ltime;
  LinkCounts change;
  for (const IdDelta* d : deltas.rows()) {
    auto it = stored.find({d->project, d->id});
    if (it == stored.end()) return Status::Internal("postgres: a locked users row is missing");
    it->second.all_links = NeedsAllLinks(d->state);
    SLUICE_ASSIGN_OR_RETURN(IdWrite w, MergeId(it->second, d->state));
    rp.push_back(d->project);
    ru.push_back(d->id);
    rf.push_back(w.merged.first_seen_ms);
    rl.push_back(w.merged.last_seen_ms);
    rn.push_back(w.merged.events);
    rprops.push_back(std::move(w.properties));
    rus.push_back(w.merged.user_seen ? 1 : 0);
    rlt.push_back(w.merged.linked_to ? 1 : 0);
    rtgt.push_back(w.earliest ? w.earliest->first : std::string());
    rtt.push_back(w.earliest ? w.earliest->second.time_ms : 0);
    rti.push_back(w.earliest ? w.earliest->second.insert_id : std::string());
    AppendUserEvents(*d, &ep, &eu, &en, &ec);
    for (const auto& [target, key] : d->state.links) {
      lp.push_back(d->project);
      lf.push_back(d->id);
      lt.push_back(target);
      ltime.push_back(key.time_ms);
      li.push_back(key.insert_id);
    }
    change.applied += w.change.applied;
    change.refused += w.change.refused;
  }
  out->rows.AddArray(std::span<const std::string>(rp))
      .AddArray(std::span<const std::string>(ru))
      .AddArray(std::span<const int64_t>(rf))
      .AddArray(std::span<const int64_t>(rl))
      .AddArray(std::span<const int64_t>(rn))
      .AddArray(std::span<const std::string>(rprops))
      .AddArray(std::span<const int64_t>(rus))
      .AddArray(std::span<const int64_t>(rlt))
      .AddArray(std::span<const std::string>(rtgt))
      .AddArray(std::span<const int64_t>(rtt))
      .AddArray(std::span<const std::string>(rti));
  SetUserEvents(ep, eu, en, ec, out);
  out->any_links = !lp.empty();
  if (out->any_links) {
    out->new_links.AddArray(std::span<const std::string>(lp))
        .AddArray(std::span<const std::string>(lf))
        .AddArray(std::span<const std::string>(lt))
        .AddArray(std::span<const int64_t>(ltime))
        .AddArray(std::span<const std::string>(li));
  }
  out->any_counts = change.applied != 0 || change.refused != 0;
  if (out->any_counts) out->counts.Add(change.applied).Add(change.refused);
  return Status::Ok();
}

// Fills the parameters of kUpsertCounters from every in-store consumer's
// counter deltas; false when there are none. One row per counter key (an
// upsert may not touch a row twice), numbered 1.. in key order as WITH
// ORDINALITY numbers them; one row per distinct (counter row, user).
bool PrepareCounters(std::span<const InStoreEffects> in_store, PgParams* out) {
  using Key = std::tuple<std::string_view, std::string_view, std::string_view, int64_t>;
  struct Row {
    int64_t count = 0;
    int64_t ordinal = 0;
  };
  std::map<Key, Row> counts;
  for (const InStoreEffects& part : in_store) {
    for (const CounterDelta& d : part.effects.counters) {
      counts[{d.project, d.event, GranularityName(d.granularity), d.bucket_ms}].count += d.count;
    }
  }
  if (counts.empty()) return false;
  std::vector<std::string_view> cp, ce, cg;
  std::vector<int64_t> cb, cc;
  for (auto& [k, row] : counts) {
    cp.push_back(std::get<0>(k));
    ce.push_back(std::get<1>(k));
    cg.push_back(std::get<2>(k));
    cb.push_back(std::get<3>(k));
    cc.push_back(row.count);
    row.ordinal = static_cast<int64_t>(cp.size());
  }
  std::set<std::pair<int64_t, std::string_view>> seen;
  for (const InStoreEffects& part : in_store) {
    for (const CounterDelta& d : part.effects.counters) {
      if (d.users.empty()) continue;
      const int64_t ordinal =
          counts.at({d.project, d.event, GranularityName(d.granularity), d.bucket_ms}).ordinal;
      for (const std::string& u : d.users) seen.insert({ordinal, u});
    }
  }
  std::vector<int64_t> ui;
  std::vector<std::string_view> uu;
  ui.reserve(seen.size());
  uu.reserve(seen.size());
  for (const auto& [ordinal, user] : seen) {
    ui.push_back(ordinal);
    uu.push_back(user);
  }
  out->AddArray(std::span<const std::string_view>(cp))
      .AddArray(std::span<const std::string_view>(ce))
      .AddArray(std::span<const std::string_view>(cg))
      .AddArray(std::span<const int64_t>(cb))
      .AddArray(std::span<const int64_t>(cc))
      .AddArray(std::span<const int64_t>(ui))
      .AddArray(std::span<const std::string_view>(uu));
  return true;
}

}  // namespace

Status PostgresStore::ApplyEffects(PgConn& c, std::span<const InStoreEffects> in_store,
                                   std::span<const PgStatement> before, bool* commit_sent) {
  static constexpr char kCommit[] = "COMMIT";
  // Everything up to the next statement whose input depends on a result is
  // sent as one pipeline.
  std::vector<PgStatement> pipeline(before.begin(), before.end());
  const IdDeltaSet deltas(in_store);
  UserWrites users;
  PgParams counter_params, job_params;
  const bool read = std::any_of(deltas.rows().begin(), deltas.rows().end(),
                                [](const IdDelta* d) { return NeedsStoredRow(d->state); });
  if (!deltas.rows().empty() && !read) {
    // Counts and times only (the common case): no read, no extra round trip.
    PrepareUserAdds(deltas, &users);
    pipeline.push_back({kAddIds, &users.rows});
    if (users.any_events) pipeline.push_back({kAddUserEvents, &users.events});
  } else if (!deltas.rows().empty()) {
    // The merge needs the stored rows: lock and read them (all of the batch's
    // ids, so that every transaction locks in key order), then merge.
    PrepareUserReads(deltas, &users);
    pipeline.push_back({kCreateIds, &users.ids});
    pipeline.push_back({kLockIds, &users.ids});
    pipeline.push_back({kReadLinks, &users.links});
    SLUICE_ASSIGN_OR_RETURN(std::vector<PgResult> results, c.ExecPipeline(pipeline));
    pipeline.clear();
    const size_t n = results.size();
    SLUICE_RETURN_IF_ERROR(PrepareUserWrites(deltas, results[n - 2], results[n - 1], &users));
    pipeline.push_back({kWriteIds, &users.rows});
    if (users.any_events) pipeline.push_back({kAddUserEvents, &users.events});
    if (users.any_links) pipeline.push_back({kAddLinks, &users.new_links});
    if (users.any_counts) pipeline.push_back({kAddLinkCounts, &users.counts});
  }
  if (PrepareCounters(in_store, &counter_params)) {
    pipeline.push_back({kUpsertCounters, &counter_params});
  }
  if (PrepareJobs(in_store, &job_params)) pipeline.push_back({UpsertJobsSql(), &job_params});
  pipeline.push_back({kCommit, nullptr});
  *commit_sent = true;
  SLUICE_ASSIGN_OR_RETURN(std::vector<PgResult> results, c.ExecPipeline(pipeline));
  if (results.back().CommandTag() == "ROLLBACK") {
    return Status::Internal("postgres: transaction rolled back");
  }
  return Status::Ok();
}

Result<UserProfile> PostgresStore::GetUser(const std::string& project,
                                           const std::string& user_id) {
  // One snapshot (REPEATABLE READ): the asked id's row names its person
  // (PersonOf), then one statement reads the person's candidate rows — the
  // root, the ids whose earliest link targets it (users_link_target), the
  // sources of links to it (user_links_to: refused merges) — with their
  // event counts and links, tagged by kind.
  static constexpr char kAsked[] =
      "SELECT user_seen::int, linked_to::int, link_target, link_time, link_insert_id "
      "FROM users WHERE project = $1 AND user_id = $2";
  static constexpr char kPerson[] =
      "WITH ids AS (SELECT $2::text AS id "
      "  UNION SELECT user_id FROM users WHERE project = $1 AND link_target = $2 "
      "  UNION SELECT from_id FROM user_links WHERE project = $1 AND to_id = $2) "
      "SELECT 0, u.user_id, u.first_seen, u.last_seen, u.events, u.properties, NULL::text, "
      "  u.user_seen::int, u.linked_to::int "
      "FROM users u JOIN ids ON u.project = $1 AND u.user_id = ids.id "
      "UNION ALL SELECT 1, e.user_id, e.count, 0, 0, e.event, NULL, 0, 0 "
      "FROM user_events e JOIN ids ON e.project = $1 AND e.user_id = ids.id "
      "UNION ALL SELECT 2, l.from_id, l.time, 0, 0, l.to_id, l.insert_id, 0, 0 "
      "FROM user_links l JOIN ids ON l.project = $1 AND l.from_id = ids.id";
  const std::string p = project.empty() ? "default" : project;
  UserProfile out;
  bool found = false;
  Status st = Txn([&](PgConn& c) -> Status {
    SLUICE_RETURN_IF_ERROR(
        c.ExecOnce("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").status());
    PgParams asked_params;
    asked_params.Add(p).Add(user_id);
    SLUICE_ASSIGN_OR_RETURN(PgResult a, c.Exec(kAsked, asked_params));
    found = a.rows() > 0;
    if (!found) return Status::Ok();
    IdState asked;
    asked.user_seen = a.Int(0, 0) != 0;
    asked.linked_to = a.Int(0, 1) != 0;
    if (!a.IsNull(0, 2)) asked.links[a.Str(0, 2)] = OpKey{a.Int(0, 3), a.Str(0, 4)};
    const std::string root = PersonOf(user_id, asked);
    PgParams person_params;
    person_params.Add(p).Add(root);
    SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kPerson, person_params));
    std::map<std::string, IdState> states;
    std::map<std::string, std::string> props;
    for (int i = 0; i < r.rows(); ++i) {
      IdState& s = states[r.Str(i, 1)];
      switch (r.Int(i, 0)) {
        case 0:
          s.first_seen_ms = r.Int(i, 2);
          s.last_seen_ms = r.Int(i, 3);
          s.events = r.Int(i, 4);
          props[r.Str(i, 1)] = r.Str(i, 5);
          s.user_seen = r.Int(i, 7) != 0;
          s.linked_to = r.Int(i, 8) != 0;
          break;
        case 1:
          s.event_counts[r.Str(i, 5)] = r.Int(i, 2);
          break;
        default:
          s.links[r.Str(i, 5)] = OpKey{r.Int(i, 2), r.Str(i, 6)};
          break;
      }
    }
    std::vector<IdRow> rows;
    for (auto& [id, s] : states) {
      auto text = props.find(id);
      if (text == props.end()) continue;  // no users row in this snapshot
      SLUICE_RETURN_IF_ERROR(
          ParseProperties(text->second, OpKey{s.last_seen_ms, ""}, &s.properties));
      rows.push_back(IdRow{id, std::move(s)});
    }
    out = MakeUserProfile(p, root, rows);
    return Status::Ok();
  });
  if (!st.ok()) return st;
  if (!found) return Status::NotFound(fmt::format("user {}/{} not found", p, user_id));
  return out;
}

Result<std::vector<CounterPoint>> PostgresStore::QueryCounters(const CounterQuery& q) {
  if (q.event.empty()) return Status::InvalidArgument("counters: event is required");
  static constexpr char kQuery[] =
      "SELECT bucket, sum(count)::bigint, sum(users)::bigint FROM counters "
      "WHERE ($1::text = '' OR project = $1::text) AND event = $2 AND granularity = $3 "
      "AND bucket >= $4 AND bucket < $5 GROUP BY bucket ORDER BY bucket";
  PgParams params;
  params.Add(q.project).Add(q.event).Add(GranularityName(q.granularity)).Add(q.from_ms).Add(
      q.to_ms);
  std::vector<CounterPoint> out;
  Status st = Single(
      [&](PgConn& c) -> Status {
        SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kQuery, params));
        out.clear();
        for (int i = 0; i < r.rows(); ++i) {
          out.push_back(CounterPoint{r.Int(i, 0), r.Int(i, 1), r.Int(i, 2)});
        }
        return Status::Ok();
      },
      /*idempotent=*/true);
  if (!st.ok()) return st;
  return out;
}

// ---- dead letters ----

namespace {

// $1 project or '', $2 seqs or NULL, $3 the paging cursor (rows above this
// seq). The consumer and error filters are applied in C++ on each page, by
// DeadLetterMatches (lease_logic.h), the one definition both stores use.
#define SLUICE_DEAD_PAGE                                      \
  "state = 'dead' AND ($1::text = '' OR project = $1::text) " \
  "AND ($2::bigint[] IS NULL OR seq = ANY($2::bigint[])) AND seq > $3::bigint "

// Dead rows are read in pages of this many, in seq order.
constexpr int64_t kDeadPage = 1000;

PgParams DeadPageParams(const DeadFilter& f, int64_t cursor, int64_t limit) {
  PgParams p;
  p.Add(f.project);
  if (f.seqs.empty()) {
    p.AddNull();
  } else {
    p.AddArray(std::span<const int64_t>(f.seqs));
  }
  p.Add(cursor).Add(limit);
  return p;
}

// Calls fn with the seqs of each page of dead rows matching `filter`
// (ascending seq), on `c` (inside the caller's transaction); fn may write them.
Status ForEachDeadPage(PgConn& c, const DeadFilter& filter,
                       const std::function<Status(std::span<const int64_t>)>& fn) {
  static constexpr char kPage[] =
      "SELECT seq, coalesce(last_error, '') FROM queue WHERE " SLUICE_DEAD_PAGE
      "ORDER BY seq LIMIT $4";
  int64_t cursor = std::numeric_limits<int64_t>::min();
  std::vector<int64_t> matching;
  while (true) {
    SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kPage, DeadPageParams(filter, cursor, kDeadPage)));
    matching.clear();
    for (int i = 0; i < r.rows(); ++i) {
      cursor = r.Int(i, 0);
      if (DeadLetterMatches(filter, r.Text(i, 1))) matching.push_back(cursor);
    }
    if (!matching.empty()) SLUICE_RETURN_IF_ERROR(fn(matching));
    if (r.rows() < kDeadPage) return Status::Ok();
  }
}

}  // namespace

Result<std::vector<DeadEvent>> PostgresStore::ListDead(const DeadFilter& filter) {
  static constexpr char kList[] =
      "SELECT seq, project, insert_id, body, attempts, done_mask, coalesce(last_error, ''), "
      "coalesce(" SLUICE_MS("died_at") ", 0) "
      "FROM queue WHERE " SLUICE_DEAD_PAGE "ORDER BY seq LIMIT $4";
  const size_t limit = static_cast<size_t>(filter.limit > 0 ? filter.limit : 100);
  // Without a consumer or error filter every row matches and one page is the
  // answer.
  const bool every_row_matches = filter.consumer.empty() && filter.error.empty();
  const int64_t page =
      every_row_matches ? static_cast<int64_t>(limit) : std::max<int64_t>(kDeadPage, limit);
  std::vector<DeadEvent> out;
  Status st = Single(
      [&](PgConn& c) -> Status {
        out.clear();
        int64_t cursor = std::numeric_limits<int64_t>::min();
        while (out.size() < limit) {
          SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kList, DeadPageParams(filter, cursor, page)));
          for (int i = 0; i < r.rows() && out.size() < limit; ++i) {
            cursor = r.Int(i, 0);
            if (!DeadLetterMatches(filter, r.Text(i, 6))) continue;
            DeadEvent d;
            d.seq = cursor;
            d.project = r.Str(i, 1);
            d.insert_id = r.Str(i, 2);
            d.body = r.Str(i, 3);
            d.attempts = static_cast<int32_t>(r.Int(i, 4));
            d.done_mask = static_cast<uint64_t>(r.Int(i, 5));
            d.last_error = r.Str(i, 6);
            d.died_at_ms = r.Int(i, 7);
            out.push_back(std::move(d));
          }
          if (r.rows() < page) break;
        }
        return Status::Ok();
      },
      /*idempotent=*/true);
  if (!st.ok()) return st;
  return out;
}

Result<int64_t> PostgresStore::RequeueDead(const DeadFilter& filter) {
  // Requeued rows are claimable at once: wake the other replicas too. They
  // may lie below the claim's low-water mark: lower it in the same
  // transaction (the row lock on queue_head orders this with a concurrent
  // sluice_refresh_head, which cannot have seen these rows live).
  static constexpr char kRequeue[] =
      "WITH r AS (UPDATE queue SET state = 'pending', visible_at = now(), attempts = 0, "
      "died_at = NULL, reclaimed = false WHERE state = 'dead' AND seq = ANY($1::bigint[]) "
      "RETURNING seq), "
      "h AS (UPDATE queue_head SET low = least(low, (SELECT min(seq) FROM r)) "
      "  WHERE EXISTS (SELECT 1 FROM r)) "
      "SELECT count(*), (count(*) > 0 AND pg_notify('sluice_work', '') IS NULL) FROM r";
  int64_t n = 0;
  Status st = Txn([&](PgConn& c) -> Status {
    n = 0;
    return ForEachDeadPage(c, filter, [&](std::span<const int64_t> seqs) -> Status {
      PgParams params;
      params.AddArray(seqs);
      SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kRequeue, params));
      n += r.Int(0, 0);
      return Status::Ok();
    });
  });
  if (!st.ok()) return st;
  return n;
}

Result<int64_t> PostgresStore::PurgeDead(const DeadFilter& filter) {
  static constexpr char kPurge[] =
      "DELETE FROM queue WHERE state = 'dead' AND seq = ANY($1::bigint[])";
  int64_t n = 0;
  Status st = Txn([&](PgConn& c) -> Status {
    n = 0;
    return ForEachDeadPage(c, filter, [&](std::span<const int64_t> seqs) -> Status {
      PgParams params;
      params.AddArray(seqs);
      SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kPurge, params));
      n += r.Affected();
      return Status::Ok();
    });
  });
  if (!st.ok()) return st;
  return n;
}

// ---- named leases and the dedup window ----

Result<int64_t> PostgresStore::AcquireNamedLease(const std::string& name,
                                                 const std::string& owner, int64_t ttl_ms) {
  // Lock the lease row (if any), then decide, as in SQLite: a live lease of
  // another owner -> kBusy; our own live lease is renewed and keeps its
  // token (work fenced by it stays valid); otherwise a new token.
  static constexpr char kGet[] =
      "SELECT owner, token, lease_until > now() FROM leases WHERE name = $1 FOR UPDATE";
  static constexpr char kRenew[] =
      "UPDATE leases SET lease_until = now() + $2::bigint * interval '1 millisecond' "
      "WHERE name = $1";
  static constexpr char kTake[] =
      "INSERT INTO leases AS l (name, owner, token, lease_until) "
      "VALUES ($1, $2, sluice_next_token(), now() + $3::bigint * interval '1 millisecond') "
      "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, token = excluded.token, "
      "lease_until = excluded.lease_until "
      "WHERE l.lease_until <= now() OR l.owner = excluded.owner RETURNING token";
  if (name.empty() || owner.empty() || ttl_ms <= 0) {
    return Status::InvalidArgument("named lease: name, owner and ttl_ms are required");
  }
  int64_t token = 0;
  Status st = Txn([&](PgConn& c) -> Status {
    PgParams get;
    get.Add(name);
    SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kGet, get));
    if (r.rows() > 0 && r.Bool(0, 2)) {
      if (r.Text(0, 0) != owner) {
        return Status::Busy(fmt::format("lease {} held by {}", name, r.Text(0, 0)));
      }
      token = r.Int(0, 1);
      PgParams renew;
      renew.Add(name).Add(ttl_ms);
      return c.Exec(kRenew, renew).status();
    }
    // Two first-time takers (no row to lock yet): the second INSERT waits
    // for the first's commit, then finds its live lease and takes nothing.
    PgParams take;
    take.Add(name).Add(owner).Add(ttl_ms);
    SLUICE_ASSIGN_OR_RETURN(PgResult t, c.Exec(kTake, take));
    if (t.rows() == 0) return Status::Busy(fmt::format("lease {} held by another owner", name));
    token = t.Int(0, 0);
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return token;
}

Status PostgresStore::ReleaseNamedLease(const std::string& name, int64_t token) {
  static constexpr char kRelease[] = "DELETE FROM leases WHERE name = $1 AND token = $2";
  PgParams params;
  params.Add(name).Add(token);
  return Single(
      [&](PgConn& c) -> Status {
        SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kRelease, params));
        if (r.Affected() == 0) {
          return Status::LeaseLost(
              fmt::format("lease {} is not held under token {}", name, token));
        }
        return Status::Ok();
      },
      /*idempotent=*/false);
}

Result<DedupMaintenance> PostgresStore::MaintainDedup(int64_t named_lease_token) {
  // ACCESS EXCLUSIVE on the registry first: it waits for every enqueue in
  // flight (each holds ACCESS SHARE on it until commit) and holds off new
  // ones until this commits, so no group straddles a rotation or a drop
  // (docs/claim-protocol-postgres.md "The dedup window"). The new bucket's
  // start is read after the lock (clock_timestamp(), not the transaction
  // start): every entry of its predecessor was accepted before it.
  // FOR SHARE on the lease row: a takeover (which updates the row) waits
  // until this commits, so the fence holds for the whole round.
  static constexpr char kLock[] = "LOCK TABLE dedup_buckets IN ACCESS EXCLUSIVE MODE";
  static constexpr char kHeld[] =
      "SELECT 1 FROM leases WHERE token = $1 AND lease_until > clock_timestamp() FOR SHARE";
  static constexpr char kBuckets[] =
      "SELECT id, start_ms, " SLUICE_MS("clock_timestamp()") " FROM dedup_buckets ORDER BY id";
  static constexpr char kNow[] = "SELECT " SLUICE_MS("clock_timestamp()");
  static constexpr char kAdd[] = "INSERT INTO dedup_buckets (id, start_ms) VALUES ($1, $2)";
  static constexpr char kRemove[] = "DELETE FROM dedup_buckets WHERE id = $1";
  DedupMaintenance out;
  Status st = Txn([&](PgConn& c) -> Status {
    out = DedupMaintenance{};
    SLUICE_RETURN_IF_ERROR(c.Exec(kLock).status());
    PgParams held;
    held.Add(named_lease_token);
    SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kHeld, held));
    if (r.rows() == 0) {
      return Status::LeaseLost(
          fmt::format("maintain dedup: token {} holds no named lease", named_lease_token));
    }
    SLUICE_ASSIGN_OR_RETURN(PgResult b, c.Exec(kBuckets));
    std::vector<DedupBucket> live;
    for (int i = 0; i < b.rows(); ++i) live.push_back({b.Int(i, 0), b.Int(i, 1)});
    int64_t now = 0;
    if (b.rows() > 0) {
      now = b.Int(0, 2);
    } else {
      SLUICE_ASSIGN_OR_RETURN(PgResult n, c.Exec(kNow));
      now = n.Int(0, 0);
    }
    const DedupPlan plan =
        PlanDedupMaintenance(live, now, options_.dedup_window_ms, options_.dedup_buckets);
    if (plan.create) {
      SLUICE_RETURN_IF_ERROR(c.ExecOnce(fmt::format("CREATE TABLE {} (h uuid PRIMARY KEY)",
                                                    DedupTableName(plan.new_id)))
                                 .status());
      PgParams add;
      add.Add(plan.new_id).Add(now);
      SLUICE_RETURN_IF_ERROR(c.Exec(kAdd, add).status());
      out.created = 1;
    }
    for (int64_t id : plan.drop) {
      PgParams remove;
      remove.Add(id);
      SLUICE_RETURN_IF_ERROR(c.Exec(kRemove, remove).status());
      SLUICE_RETURN_IF_ERROR(c.ExecOnce(fmt::format("DROP TABLE {}", DedupTableName(id))).status());
      ++out.dropped;
    }
    out.live = static_cast<int64_t>(live.size()) + out.created - out.dropped;
    return Status::Ok();
  });
  if (!st.ok()) return st;
  if (out.created + out.dropped > 0) (void)RefreshDedupBuckets();
  return out;
}

// ---- replicas and status ----

Status PostgresStore::RegisterReplica(const ReplicaInfo& info) {
  static constexpr char kUpsert[] =
      "INSERT INTO replicas (id, host, pid, version, started, heartbeat) "
      "VALUES ($1, $2, $3, $4, CASE WHEN $5::bigint > 0 "
      "  THEN to_timestamp($5::bigint / 1000.0) ELSE now() END, now()) "
      "ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
      "version = excluded.version, started = excluded.started, heartbeat = excluded.heartbeat";
  if (info.id.empty()) return Status::InvalidArgument("replica id is required");
  PgParams params;
  params.Add(info.id).Add(info.host).Add(info.pid).Add(info.version).Add(info.started_ms);
  return Single([&](PgConn& c) -> Status { return c.Exec(kUpsert, params).status(); },
                /*idempotent=*/true);
}

Status PostgresStore::HeartbeatReplica(const std::string& id) {
  static constexpr char kBeat[] = "UPDATE replicas SET heartbeat = now() WHERE id = $1";
  PgParams params;
  params.Add(id);
  return Single(
      [&](PgConn& c) -> Status {
        SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kBeat, params));
        if (r.Affected() == 0) return Status::NotFound(fmt::format("replica {} not registered", id));
        return Status::Ok();
      },
      /*idempotent=*/true);
}

Status PostgresStore::RemoveReplica(const std::string& id) {
  static constexpr char kRemove[] = "DELETE FROM replicas WHERE id = $1";
  PgParams params;
  params.Add(id);
  return Single([&](PgConn& c) -> Status { return c.Exec(kRemove, params).status(); },
                /*idempotent=*/true);
}

Result<std::vector<ReplicaInfo>> PostgresStore::ListReplicas(int64_t alive_within_ms) {
  // Claim owners are "<replica id>/<loop>"; a live lease is one not expired.
  // The count walks queue_token (leased rows only), not the queue.
  static constexpr char kList[] =
      "SELECT r.id, r.host, r.pid, r.version, " SLUICE_MS("r.started") ", "
      SLUICE_MS("r.heartbeat") ", "
      "(SELECT count(*) FROM queue q WHERE q.state = 'leased' AND q.lease_until > now() "
      " AND (q.lease_owner = r.id OR starts_with(q.lease_owner, r.id || '/'))), r.stats "
      "FROM replicas r WHERE r.heartbeat >= now() - $1::bigint * interval '1 millisecond' "
      "ORDER BY r.id COLLATE \"C\"";
  PgParams params;
  params.Add(alive_within_ms);
  std::vector<ReplicaInfo> out;
  Status st = Single(
      [&](PgConn& c) -> Status {
        SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kList, params));
        out.clear();
        for (int i = 0; i < r.rows(); ++i) {
          ReplicaInfo info;
          info.id = r.Str(i, 0);
          info.host = r.Str(i, 1);
          info.pid = r.Int(i, 2);
          info.version = r.Str(i, 3);
          info.started_ms = r.Int(i, 4);
          info.heartbeat_ms = r.Int(i, 5);
          info.leases_held = r.Int(i, 6);
          info.stats = r.Str(i, 7);
          out.push_back(std::move(info));
        }
        return Status::Ok();
      },
      /*idempotent=*/true);
  if (!st.ok()) return st;
  return out;
}

Result<QueueStats> PostgresStore::Stats() {
  // One statement (one snapshot). Each count walks a partial index; the
  // oldest pending row is the first 'pending' one in queue_claim's seq order.
  // Live rows are all at or above the claim's low-water mark, so those scans
  // start there, past the dead index entries of deleted rows.
  static constexpr char kStats[] =
      "SELECT (SELECT count(*) FROM queue WHERE state <> 'dead' "
      "  AND seq >= (SELECT low FROM queue_head)), "
      "(SELECT count(*) FROM queue WHERE state = 'leased'), "
      "(SELECT count(*) FROM queue WHERE state = 'dead'), "
      "coalesce((SELECT greatest(0, " SLUICE_MS("now()") " - " SLUICE_MS("enqueued_at") ") "
      "  FROM queue WHERE state = 'pending' AND seq >= (SELECT low FROM queue_head) "
      "  ORDER BY seq LIMIT 1), 0), "
      "(SELECT applied FROM identity_links), (SELECT refused FROM identity_links)";
  QueueStats stats;
  Status st = Single(
      [&](PgConn& c) -> Status {
        SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kStats));
        const int64_t live = r.Int(0, 0);
        stats.leased = r.Int(0, 1);
        stats.dead = r.Int(0, 2);
        stats.pending = live - stats.leased;
        stats.oldest_pending_age_ms = r.Int(0, 3);
        stats.identity_links_applied = r.Int(0, 4);
        stats.identity_links_refused = r.Int(0, 5);
        return Status::Ok();
      },
      /*idempotent=*/true);
  if (!st.ok()) return st;
  return stats;
}

// ---- the console ----

namespace {

// Seven columns from `first` of row `i`: done_mask, events, leased, waiting,
// oldest, oldest pending, next visible.
MaskGroup GroupOf(const PgResult& r, int i, int first) {
  MaskGroup g;
  g.done_mask = static_cast<uint64_t>(r.Int(i, first));
  g.events = r.Int(i, first + 1);
  g.leased = r.Int(i, first + 2);
  g.waiting = r.Int(i, first + 3);
  g.oldest_ms = r.Int(i, first + 4);
  g.oldest_pending_ms = r.Int(i, first + 5);
  g.next_visible_ms = r.Int(i, first + 6);
  return g;
}

}  // namespace

Status PostgresStore::PublishReplicaStats(const std::string& id, const std::string& stats_json) {
  static constexpr char kBeat[] =
      "UPDATE replicas SET heartbeat = now(), stats = $2 WHERE id = $1";
  if (stats_json.size() > kMaxReplicaStatsBytes) {
    return Status::TooLarge(fmt::format("replica stats of {} bytes (at most {})",
                                        stats_json.size(), kMaxReplicaStatsBytes));
  }
  PgParams params;
  params.Add(id).Add(stats_json);
  return Single(
      [&](PgConn& c) -> Status {
        SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kBeat, params));
        if (r.Affected() == 0) return Status::NotFound(fmt::format("replica {} not registered", id));
        return Status::Ok();
      },
      /*idempotent=*/true);
}

Result<BacklogScan> PostgresStore::ScanBacklog(const BacklogScanRequest& req) {
  // One statement, so one snapshot. kind 0: the head scan (the $1 lowest-seq
  // live rows, read from the claim's low-water mark, grouped by done_mask);
  // kind 1: the $2 oldest dead rows likewise; kind 2: totals (leased rows,
  // counted in queue_token, and the highest seq) and the store clock.
  static constexpr char kScan[] =
      "WITH live AS (SELECT seq, done_mask, state, enqueued_at, visible_at FROM queue "
      "  WHERE state <> 'dead' AND seq >= (SELECT low FROM queue_head) "
      "  ORDER BY seq LIMIT $1), "
      "dead AS (SELECT done_mask, died_at FROM queue WHERE state = 'dead' "
      "  ORDER BY seq LIMIT $2) "
      "SELECT 0, done_mask, count(*), count(*) FILTER (WHERE state = 'leased'), "
      "  count(*) FILTER (WHERE state = 'pending' AND visible_at > now()), "
      "  " SLUICE_MS("min(enqueued_at)") ", "
      "  coalesce(" SLUICE_MS("min(enqueued_at) FILTER (WHERE state = 'pending')") ", 0), "
      "  coalesce(" SLUICE_MS("min(visible_at) FILTER (WHERE state = 'pending' "
                              "AND visible_at > now())") ", 0), "
      "  min(seq), max(seq) FROM live GROUP BY done_mask "
      "UNION ALL "
      "SELECT 1, done_mask, count(*), 0, 0, coalesce(" SLUICE_MS("min(died_at)") ", 0), 0, 0, "
      "  0, 0 FROM dead GROUP BY done_mask "
      "UNION ALL "
      "SELECT 2, 0, (SELECT count(*) FROM queue WHERE state = 'leased'), 0, 0, "
      "  " SLUICE_MS("now()") ", 0, 0, 0, coalesce((SELECT max(seq) FROM queue), 0)";
  // One primary-key lookup per probe: seq $1 + i * $2 / $3 for i in [0, $3).
  static constexpr char kProbe[] =
      "SELECT q.done_mask, count(*), count(*) FILTER (WHERE q.state = 'leased'), "
      "  count(*) FILTER (WHERE q.state = 'pending' AND q.visible_at > now()), "
      "  " SLUICE_MS("min(q.enqueued_at)") ", "
      "  coalesce(" SLUICE_MS("min(q.enqueued_at) FILTER (WHERE q.state = 'pending')") ", 0), "
      "  coalesce(" SLUICE_MS("min(q.visible_at) FILTER (WHERE q.state = 'pending' "
                              "AND q.visible_at > now())") ", 0) "
      "FROM generate_series(0::bigint, $3::bigint - 1) AS p(i) "
      "JOIN queue q ON q.seq = $1::bigint + (p.i * $2::bigint) / $3::bigint "
      "WHERE q.state <> 'dead' GROUP BY q.done_mask";
  if (req.max_live <= 0 || req.max_dead <= 0 || req.samples <= 0) {
    return Status::InvalidArgument("scan backlog: max_live, max_dead and samples must be > 0");
  }
  PgParams params;
  params.Add(req.max_live).Add(req.max_dead);
  BacklogScan out;
  Status st = Single(
      [&](PgConn& c) -> Status {
        SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kScan, params));
        out = BacklogScan{};
        for (int i = 0; i < r.rows(); ++i) {
          const int64_t kind = r.Int(i, 0);
          if (kind == 2) {
            out.leased_total = r.Int(i, 2);
            out.now_ms = r.Int(i, 5);
            out.max_seq = r.Int(i, 9);
            continue;
          }
          const MaskGroup g = GroupOf(r, i, 1);
          if (kind == 0) {
            const int64_t lo = r.Int(i, 8);
            const int64_t hi = r.Int(i, 9);
            if (out.first_live_seq == 0 || lo < out.first_live_seq) out.first_live_seq = lo;
            out.last_scanned_seq = std::max(out.last_scanned_seq, hi);
            out.live_scanned += g.events;
            out.live.push_back(g);
          } else {
            out.dead_scanned += g.events;
            out.dead.push_back(g);
          }
        }
        out.live_complete = out.live_scanned < req.max_live;
        out.dead_complete = out.dead_scanned < req.max_dead;
        if (out.live_complete || out.max_seq <= out.last_scanned_seq) return Status::Ok();
        // A second statement (a later snapshot): the estimate it feeds
        // tolerates rows that moved in between.
        out.sample_span = out.max_seq - out.last_scanned_seq;
        out.samples_taken = std::min(req.samples, out.sample_span);
        PgParams probe;
        probe.Add(out.last_scanned_seq + 1).Add(out.sample_span).Add(out.samples_taken);
        SLUICE_ASSIGN_OR_RETURN(PgResult p, c.Exec(kProbe, probe));
        for (int i = 0; i < p.rows(); ++i) {
          out.sampled.push_back(GroupOf(p, i, 0));
        }
        return Status::Ok();
      },
      /*idempotent=*/true);
  if (!st.ok()) return st;
  return out;
}

}  // namespace sluice
