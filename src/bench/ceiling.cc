#include "bench/ceiling.h"

#include <fmt/format.h>
#include <libpq-fe.h>

#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "bench/bench_util.h"
#include "common/clock.h"
#include "common/event.h"
#include "common/time.h"
#include "queue/effects.h"
#include "queue/open/open_store.h"
#include "queue/postgres/pg_conn.h"
#include "queue/sqlite/sqlite_db.h"
#include "queue/sqlite/sqlite_schema.h"

namespace sluice {
namespace {

constexpr char kProject[] = "default";

// The aggregate rows of one claim-sized batch, keyed and sorted as the
// consumers' effects are (one row per key: an upsert touches a row once).
struct BatchRows {
  std::map<std::string, std::tuple<int64_t, int64_t, int64_t>> users;  // first, last, events
  std::map<std::pair<std::string, std::string>, int64_t> user_events;  // (user, event) -> count
  // (event, granularity, bucket) -> (count, distinct users)
  std::map<std::tuple<std::string, std::string, int64_t>, std::pair<int64_t, int64_t>> counters;
  std::set<std::tuple<int64_t, int64_t, int64_t>> counter_users;  // (bucket, series, user hash)

  int64_t rows() const {
    return static_cast<int64_t>(users.size() + user_events.size() + counters.size() +
                                counter_users.size());
  }
};

// One transaction's rows, generated before its clock starts.
struct TxnRows {
  std::vector<std::string> ids;
  std::vector<std::string> bodies;
  std::vector<BatchRows> batches;
};

TxnRows Generate(const CeilingBenchOptions& o, const SyntheticEvents& gen, int64_t first,
                 int64_t count) {
  TxnRows t;
  t.ids.reserve(static_cast<size_t>(count));
  t.bodies.reserve(static_cast<size_t>(count));
  std::map<std::tuple<std::string, std::string, int64_t>, std::set<std::string>> distinct;
  for (int64_t k = 0; k < count; ++k) {
    const int64_t i = first + k;
    if (k % o.batch == 0) {
      if (!t.batches.empty()) {
        for (auto& [key, users] : distinct) {
          t.batches.back().counters[key].second = static_cast<int64_t>(users.size());
        }
      }
      distinct.clear();
      t.batches.emplace_back();
    }
    const Event e = gen.Make(o.template_events > 0 ? i % o.template_events : i);
    t.ids.push_back(fmt::format("ceil-{:016x}", i));
    t.bodies.push_back(ToBody(e));
    BatchRows& b = t.batches.back();
    auto [it, fresh] = b.users.try_emplace(e.user_id, e.time_ms, e.time_ms, 0);
    auto& [first_seen, last_seen, events] = it->second;
    first_seen = std::min(first_seen, e.time_ms);
    last_seen = std::max(last_seen, e.time_ms);
    ++events;
    ++b.user_events[{e.user_id, e.event}];
    for (Granularity g : kAllGranularities) {
      const int64_t bucket = BucketStartMs(g, e.time_ms);
      const std::tuple<std::string, std::string, int64_t> key{e.event, GranularityName(g), bucket};
      ++b.counters[key].first;
      distinct[key].insert(e.user_id);
      b.counter_users.emplace(bucket, CounterSeriesHash(kProject, e.event, GranularityName(g)),
                              CounterUserHash(e.user_id));
    }
  }
  for (auto& [key, users] : distinct) {
    t.batches.back().counters[key].second = static_cast<int64_t>(users.size());
  }
  return t;
}

// What one transaction wrote; `deleted` is the previous transaction's rows.
struct TxnCounts {
  int64_t rows = 0;
  int64_t aggregate_rows = 0;
  int64_t first_seq = 0;  // seq range of this transaction's queue rows, [first, end)
  int64_t end_seq = 0;
};

// ---- SQLite: prepared statements, the store's own connection settings ----

class SqliteWriter {
 public:
  static Result<std::unique_ptr<SqliteWriter>> Open(const StoreOptions& o) {
    constexpr std::string_view kScheme = "sqlite:";
    auto w = std::unique_ptr<SqliteWriter>(new SqliteWriter());
    SLUICE_ASSIGN_OR_RETURN(w->conn_, SqliteConn::Open(o.url.substr(kScheme.size()), o.sync,
                                                       o.busy_timeout_ms, &Clock::Real()));
    return w;
  }

  // Inserts t's rows and deletes the queue rows [del_first, del_end).
  Result<TxnCounts> Write(const TxnRows& t, int64_t del_first, int64_t del_end) {
    // The statements of the store (queue/sqlite), minus what needs a stored
    // value (property merges).
    // A fresh store has one dedup bucket, dedup_1: the store's statement
    // for one bucket (SqliteStore::Enqueue).
    static constexpr char kDedup[] =
        "INSERT INTO dedup_1(h1, h2) SELECT ?1, ?2 WHERE 1 ON CONFLICT DO NOTHING";
    static constexpr char kInsert[] =
        "INSERT INTO queue(project, insert_id, body, visible_at, enqueued_at) "
        "VALUES (?1, ?2, ?3, ?4, ?4)";
    static constexpr char kDelete[] = "DELETE FROM queue WHERE seq >= ?1 AND seq < ?2";
    static constexpr char kUser[] =
        "INSERT INTO users(project, user_id, first_seen, last_seen, events) "
        "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(project, user_id) DO UPDATE SET "
        "first_seen = min(first_seen, excluded.first_seen), "
        "last_seen = max(last_seen, excluded.last_seen), events = events + excluded.events";
    static constexpr char kUserEvent[] =
        "INSERT INTO user_events(project, user_id, event, count) VALUES (?1, ?2, ?3, ?4) "
        "ON CONFLICT(project, user_id, event) DO UPDATE SET count = count + excluded.count";
    static constexpr char kCounterUser[] =
        "INSERT OR IGNORE INTO counter_users(bucket, series, user_hash) VALUES (?1, ?2, ?3)";
    static constexpr char kCounter[] =
        "INSERT INTO counters(project, event, granularity, bucket, count, users) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
        "ON CONFLICT(project, event, granularity, bucket) DO UPDATE SET "
        "count = count + excluded.count, users = users + excluded.users";
    SqliteConn& c = *conn_;
    SLUICE_RETURN_IF_ERROR(c.BeginImmediate());
    Result<TxnCounts> r = WriteLocked(t, del_first, del_end, kDedup, kInsert, kDelete, kUser,
                                      kUserEvent, kCounterUser, kCounter);
    if (!r.ok()) {
      c.Rollback();
      return r;
    }
    SLUICE_RETURN_IF_ERROR(c.Commit());
    return r;
  }

 private:
  SqliteWriter() = default;

  Result<TxnCounts> WriteLocked(const TxnRows& t, int64_t del_first, int64_t del_end,
                                const char* dedup_sql, const char* insert_sql,
                                const char* delete_sql, const char* user_sql,
                                const char* user_event_sql, const char* counter_user_sql,
                                const char* counter_sql) {
    SqliteConn& c = *conn_;
    TxnCounts n;
    const int64_t now = WallNowMs();
    SLUICE_ASSIGN_OR_RETURN(Stmt dedup, c.Prepare(dedup_sql));
    SLUICE_ASSIGN_OR_RETURN(Stmt insert, c.Prepare(insert_sql));
    for (size_t k = 0; k < t.ids.size(); ++k) {
      const DedupKey key = SqliteDedupKey(kProject, t.ids[k]);
      dedup.Reset();
      dedup.Bind(1, key.h1).Bind(2, key.h2);
      SLUICE_RETURN_IF_ERROR(dedup.Run());
      insert.Reset();
      insert.Bind(1, kProject).Bind(2, t.ids[k]).Bind(3, t.bodies[k]).Bind(4, now);
      SLUICE_RETURN_IF_ERROR(insert.Run());
      const int64_t seq = sqlite3_last_insert_rowid(c.db());
      if (k == 0) n.first_seq = seq;
      n.end_seq = seq + 1;
    }
    n.rows += 2 * static_cast<int64_t>(t.ids.size());
    SLUICE_ASSIGN_OR_RETURN(Stmt user, c.Prepare(user_sql));
    SLUICE_ASSIGN_OR_RETURN(Stmt user_event, c.Prepare(user_event_sql));
    SLUICE_ASSIGN_OR_RETURN(Stmt counter_user, c.Prepare(counter_user_sql));
    SLUICE_ASSIGN_OR_RETURN(Stmt counter, c.Prepare(counter_sql));
    for (const BatchRows& b : t.batches) {
      for (const auto& [id, v] : b.users) {
        user.Reset();
        user.Bind(1, kProject).Bind(2, id).Bind(3, std::get<0>(v)).Bind(4, std::get<1>(v));
        user.Bind(5, std::get<2>(v));
        SLUICE_RETURN_IF_ERROR(user.Run());
      }
      for (const auto& [key, count] : b.user_events) {
        user_event.Reset();
        user_event.Bind(1, kProject).Bind(2, key.first).Bind(3, key.second).Bind(4, count);
        SLUICE_RETURN_IF_ERROR(user_event.Run());
      }
      for (const auto& [bucket, series, user_hash] : b.counter_users) {
        counter_user.Reset();
        counter_user.Bind(1, bucket).Bind(2, series).Bind(3, user_hash);
        SLUICE_RETURN_IF_ERROR(counter_user.Run());
      }
      for (const auto& [key, v] : b.counters) {
        counter.Reset();
        counter.Bind(1, kProject).Bind(2, std::get<0>(key)).Bind(3, std::get<1>(key));
        counter.Bind(4, std::get<2>(key)).Bind(5, v.first).Bind(6, v.second);
        SLUICE_RETURN_IF_ERROR(counter.Run());
      }
      n.aggregate_rows += b.rows();
    }
    if (del_end > del_first) {
      SLUICE_ASSIGN_OR_RETURN(Stmt del, c.Prepare(delete_sql));
      del.Bind(1, del_first).Bind(2, del_end);
      SLUICE_RETURN_IF_ERROR(del.Run());
      n.rows += del.Changes();
    }
    n.rows += n.aggregate_rows;
    return n;
  }

  std::unique_ptr<SqliteConn> conn_;
};

// ---- PostgreSQL: COPY for the queue rows, unnest inserts and upserts ----

// COPY text format: backslash, tab, newline and carriage return escaped.
void AppendCopyField(std::string_view s, std::string* out) {
  for (char ch : s) {
    switch (ch) {
      case '\\': *out += "\\\\"; break;
      case '\t': *out += "\\t"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      default: out->push_back(ch);
    }
  }
}

class PgWriter {
 public:
  static Result<std::unique_ptr<PgWriter>> Open(const StoreOptions& o) {
    auto w = std::unique_ptr<PgWriter>(new PgWriter());
    PgSessionOptions session;
    session.sync = o.sync;
    session.statement_timeout_ms = 600000;
    session.application_name = "sluice-bench-ceiling";
    SLUICE_ASSIGN_OR_RETURN(w->conn_, PgConn::Connect(o.url, session));
    return w;
  }

  Result<TxnCounts> Write(const TxnRows& t, int64_t del_first, int64_t del_end) {
    PgConn& c = *conn_;
    SLUICE_RETURN_IF_ERROR(c.Begin());
    Result<TxnCounts> r = WriteInTxn(t, del_first, del_end);
    if (!r.ok()) {
      c.Rollback();
      return r;
    }
    SLUICE_RETURN_IF_ERROR(c.Commit());
    return r;
  }

 private:
  PgWriter() = default;

  Status Copy(const char* sql, const std::string& data) {
    PGconn* pc = conn_->raw();
    PGresult* start = PQexec(pc, sql);
    const bool copying = PQresultStatus(start) == PGRES_COPY_IN;
    PQclear(start);
    if (!copying) return Status::Internal(fmt::format("{}: {}", sql, PQerrorMessage(pc)));
    if (PQputCopyData(pc, data.data(), static_cast<int>(data.size())) != 1 ||
        PQputCopyEnd(pc, nullptr) != 1) {
      return Status::Internal(fmt::format("COPY data: {}", PQerrorMessage(pc)));
    }
    Status st = Status::Ok();
    while (PGresult* res = PQgetResult(pc)) {
      if (PQresultStatus(res) != PGRES_COMMAND_OK && st.ok()) {
        st = Status::Internal(fmt::format("COPY: {}", PQresultErrorMessage(res)));
      }
      PQclear(res);
    }
    return st;
  }

  Result<TxnCounts> WriteInTxn(const TxnRows& t, int64_t del_first, int64_t del_end) {
    static constexpr char kUsers[] =
        "INSERT INTO users AS x (project, user_id, first_seen, last_seen, events) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) "
        "ON CONFLICT (project, user_id) DO UPDATE SET "
        "first_seen = least(x.first_seen, excluded.first_seen), "
        "last_seen = greatest(x.last_seen, excluded.last_seen), events = x.events + excluded.events";
    static constexpr char kUserEvents[] =
        "INSERT INTO user_events AS x (project, user_id, event, count) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) "
        "ON CONFLICT (project, user_id, event) DO UPDATE SET count = x.count + excluded.count";
    static constexpr char kCounterUsers[] =
        "INSERT INTO counter_users (bucket, series, user_hash) "
        "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) ON CONFLICT DO NOTHING";
    static constexpr char kCounters[] =
        "INSERT INTO counters AS x (project, event, granularity, bucket, count, users) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], "
        "$6::bigint[]) ON CONFLICT (project, event, granularity, bucket) DO UPDATE SET "
        "count = x.count + excluded.count, users = x.users + excluded.users";
    static constexpr char kMaxSeq[] = "SELECT coalesce(max(seq), 0) FROM queue";
    static constexpr char kDelete[] = "DELETE FROM queue WHERE seq >= $1 AND seq < $2";
    // A fresh store has one dedup bucket, dedup_1; the key is computed in
    // SQL as the store's enqueue computes it.
    static constexpr char kDedup[] =
        "INSERT INTO dedup_1 (h) SELECT sluice_dedup_key($1, id) FROM unnest($2::text[]) id "
        "ON CONFLICT DO NOTHING";
    TxnCounts n;
    std::string queue_rows;
    for (size_t k = 0; k < t.ids.size(); ++k) {
      queue_rows += kProject;
      queue_rows += '\t';
      AppendCopyField(t.ids[k], &queue_rows);
      queue_rows += '\t';
      AppendCopyField(t.bodies[k], &queue_rows);
      queue_rows += '\n';
    }
    SLUICE_ASSIGN_OR_RETURN(PgResult before, conn_->Exec(kMaxSeq));
    SLUICE_RETURN_IF_ERROR(Copy("COPY queue (project, insert_id, body) FROM STDIN", queue_rows));
    PgParams dedup;
    dedup.Add(kProject).AddArray(std::span<const std::string>(t.ids));
    SLUICE_RETURN_IF_ERROR(conn_->Exec(kDedup, dedup).status());
    SLUICE_ASSIGN_OR_RETURN(PgResult after, conn_->Exec(kMaxSeq));
    n.first_seq = before.Int(0, 0) + 1;
    n.end_seq = after.Int(0, 0) + 1;
    n.rows += 2 * static_cast<int64_t>(t.ids.size());
    for (const BatchRows& b : t.batches) {
      std::vector<std::string> up, uu, cp, ce, cg, ep, eu, ee;
      std::vector<int64_t> uf, ul, un, ec, cb, cc, cn, xb, xs, xh;
      for (const auto& [id, v] : b.users) {
        up.emplace_back(kProject);
        uu.push_back(id);
        uf.push_back(std::get<0>(v));
        ul.push_back(std::get<1>(v));
        un.push_back(std::get<2>(v));
      }
      for (const auto& [key, count] : b.user_events) {
        ep.emplace_back(kProject);
        eu.push_back(key.first);
        ee.push_back(key.second);
        ec.push_back(count);
      }
      for (const auto& [bucket, series, user_hash] : b.counter_users) {
        xb.push_back(bucket);
        xs.push_back(series);
        xh.push_back(user_hash);
      }
      for (const auto& [key, v] : b.counters) {
        cp.emplace_back(kProject);
        ce.push_back(std::get<0>(key));
        cg.push_back(std::get<1>(key));
        cb.push_back(std::get<2>(key));
        cc.push_back(v.first);
        cn.push_back(v.second);
      }
      PgParams pu, pe, px, pc;
      pu.AddArray(up).AddArray(uu).AddArray(uf).AddArray(ul).AddArray(un);
      pe.AddArray(ep).AddArray(eu).AddArray(ee).AddArray(ec);
      px.AddArray(xb).AddArray(xs).AddArray(xh);
      pc.AddArray(cp).AddArray(ce).AddArray(cg).AddArray(cb).AddArray(cc).AddArray(cn);
      const PgStatement statements[] = {
          {kUsers, &pu}, {kUserEvents, &pe}, {kCounterUsers, &px}, {kCounters, &pc}};
      SLUICE_ASSIGN_OR_RETURN(std::vector<PgResult> done, conn_->ExecPipeline(statements));
      n.aggregate_rows += b.rows();
    }
    if (del_end > del_first) {
      PgParams p;
      p.Add(del_first).Add(del_end);
      SLUICE_ASSIGN_OR_RETURN(PgResult del, conn_->Exec(kDelete, p));
      n.rows += del.Affected();
    }
    n.rows += n.aggregate_rows;
    return n;
  }

  std::unique_ptr<PgConn> conn_;
};

}  // namespace

Result<CeilingBenchResult> RunCeilingBench(const CeilingBenchOptions& o) {
  if (o.events <= 0 || o.batch <= 0 || o.txn_events < o.batch || o.users <= 0 ||
      o.template_events < 0) {
    return Status::InvalidArgument(
        "need events > 0, batch >= 1, txn-events >= batch, users >= 1, template-events >= 0");
  }
  {
    // The schema (and its migrations) exactly as the store makes it.
    SLUICE_ASSIGN_OR_RETURN(StorePtr store, OpenStore(o.store));
    SLUICE_ASSIGN_OR_RETURN(QueueStats stats, store->Stats());
    if (stats.pending + stats.leased + stats.dead > 0) {
      return Status::InvalidArgument("bench ceiling needs a store without events");
    }
  }
  const bool sqlite = o.store.url.rfind("sqlite:", 0) == 0;
  std::unique_ptr<SqliteWriter> sw;
  std::unique_ptr<PgWriter> pw;
  if (sqlite) {
    SLUICE_ASSIGN_OR_RETURN(sw, SqliteWriter::Open(o.store));
  } else {
    SLUICE_ASSIGN_OR_RETURN(pw, PgWriter::Open(o.store));
  }
  const SyntheticEvents gen(o.users, o.event_bytes, WallNowMs());
  CeilingBenchResult r;
  int64_t del_first = 0, del_end = 0;
  auto write = [&](const TxnRows& t) -> Result<TxnCounts> {
    const int64_t t0 = NowMicros();
    const double cpu0 = ProcessCpuSeconds();
    Result<TxnCounts> n = sqlite ? sw->Write(t, del_first, del_end) : pw->Write(t, del_first, del_end);
    r.seconds += static_cast<double>(NowMicros() - t0) / 1e6;
    r.cpu_s += ProcessCpuSeconds() - cpu0;
    if (n.ok()) {
      ++r.transactions;
      r.rows_written += n->rows;
      r.aggregate_rows += n->aggregate_rows;
      del_first = n->first_seq;
      del_end = n->end_seq;
    }
    return n;
  };
  for (int64_t first = 0; first < o.events; first += o.txn_events) {
    const TxnRows t = Generate(o, gen, first, std::min(o.txn_events, o.events - first));
    SLUICE_RETURN_IF_ERROR(write(t).status());
    r.events += static_cast<int64_t>(t.ids.size());
  }
  // The last transaction's queue rows are deleted by one more.
  SLUICE_RETURN_IF_ERROR(write(TxnRows()).status());
  r.events_per_s = r.seconds > 0 ? static_cast<double>(r.events) / r.seconds : 0;
  return r;
}

std::string CeilingBenchResult::ToJson(const CeilingBenchOptions& o) const {
  JsonObject opts;
  opts.Add("store", o.store.url).AddBool("sync", o.store.sync).Add("events", o.events);
  opts.Add("txn_events", o.txn_events).Add("batch", static_cast<int64_t>(o.batch));
  opts.Add("users", o.users).Add("event_bytes", static_cast<int64_t>(o.event_bytes));
  opts.Add("template_events", o.template_events);
  JsonObject j;
  j.Add("bench", "ceiling").AddRaw("options", opts.Build());
  j.Add("events", events).Add("transactions", transactions).Add("seconds", seconds);
  j.Add("events_per_s", events_per_s).Add("cpu_s", cpu_s).Add("rows_written", rows_written);
  j.Add("aggregate_rows", aggregate_rows);
  j.Add("rows_per_event", events > 0 ? static_cast<double>(rows_written) / events : 0.0);
  return j.Build();
}

std::string CeilingBenchResult::ToText(const CeilingBenchOptions& o) const {
  return fmt::format(
      "{:.0f} events/s  ({} events in {:.2f} s, {} transactions of up to {} events, {} rows "
      "written = {:.2f} per event, {} of them aggregate rows; client CPU {:.2f} s)\n",
      events_per_s, events, seconds, transactions, o.txn_events, rows_written,
      events > 0 ? static_cast<double>(rows_written) / static_cast<double>(events) : 0.0,
      aggregate_rows, cpu_s);
}

}  // namespace sluice
