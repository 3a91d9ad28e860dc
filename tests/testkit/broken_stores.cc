#include "testkit/broken_stores.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>
#include <vector>

#include "queue/postgres/pg_conn.h"
#include "queue/sqlite/sqlite_db.h"

namespace sluice {
namespace {

// Rows of RETURNING come back in no particular order.
void SortBySeq(std::vector<ClaimedEvent>* events) {
  std::sort(events->begin(), events->end(),
            [](const ClaimedEvent& a, const ClaimedEvent& b) { return a.seq < b.seq; });
}

std::vector<int64_t> Seqs(std::span<const ClaimedEvent> events) {
  std::vector<int64_t> out;
  out.reserve(events.size());
  for (const ClaimedEvent& e : events) out.push_back(e.seq);
  return out;
}

// How long a re-owned row stays held: long enough for the write that follows.
constexpr int64_t kReownTtlMs = 60'000;

// ---- SQLite ----

constexpr char kSqliteFind[] =
    "SELECT seq FROM queue WHERE state != 'dead' AND visible_at <= ?1 ORDER BY seq LIMIT ?2";
constexpr char kSqliteTake[] =
    "UPDATE queue SET state = 'leased', lease_owner = ?2, lease_token = ?3, "
    "lease_until = ?4, visible_at = ?4, attempts = attempts + 1, "
    "reclaimed = (state = 'leased') WHERE seq = ?1 "
    "RETURNING seq, project, insert_id, body, done_mask, attempts, reclaimed";

ClaimedEvent ReadSqliteClaimed(const Stmt& s) {
  ClaimedEvent e;
  e.seq = s.Int(0);
  e.project = s.Str(1);
  e.insert_id = s.Str(2);
  e.body = s.Str(3);
  e.done_mask = static_cast<uint64_t>(s.Int(4));
  e.attempts = static_cast<int32_t>(s.Int(5));
  e.reclaimed = s.Int(6) != 0;
  return e;
}

// Runs fn inside BEGIN IMMEDIATE ... COMMIT on `c`.
template <typename Fn>
Status SqliteWrite(SqliteConn& c, Fn&& fn) {
  SLUICE_RETURN_IF_ERROR(c.BeginImmediate());
  Result<int64_t> now = c.NowMs();
  Status st = now.ok() ? fn(*now) : now.status();
  if (!st.ok()) {
    c.Rollback();
    return st;
  }
  st = c.Commit();
  if (!st.ok()) c.Rollback();
  return st;
}

Result<Lease> SqliteNaiveClaim(SqliteConn& c, const ClaimRequest& req) {
  std::vector<int64_t> seqs;
  {
    SLUICE_RETURN_IF_ERROR(c.BeginRead());
    Result<int64_t> now = c.NowMs();
    if (!now.ok()) {
      c.Rollback();
      return now.status();
    }
    Result<Stmt> find = c.Prepare(kSqliteFind);
    if (!find.ok()) {
      c.Rollback();
      return find.status();
    }
    find->Bind(1, *now).Bind(2, static_cast<int64_t>(req.max_events));
    while (true) {
      Result<bool> row = find->Step();
      if (!row.ok() || !*row) break;
      seqs.push_back(find->Int(0));
    }
    c.Rollback();
  }
  if (seqs.empty()) return Lease{};
  // In the service this was modelled on, the two steps were separate round
  // trips to a remote database; a short pause stands in for that latency so
  // the race shows up on a fast local file.
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  Lease lease;
  Status st = SqliteWrite(c, [&](int64_t now) -> Status {
    lease = Lease{};
    SLUICE_ASSIGN_OR_RETURN(Stmt next, c.Prepare("SELECT v + 1 FROM meta WHERE k = 'token'"));
    SLUICE_ASSIGN_OR_RETURN(bool has, next.Step());
    if (!has) return Status::Internal("naive claim: token counter missing");
    const int64_t token = next.Int(0);
    SLUICE_RETURN_IF_ERROR(next.Run());
    SLUICE_ASSIGN_OR_RETURN(Stmt take, c.Prepare(kSqliteTake));
    take.Bind(2, req.owner).Bind(3, token).Bind(4, now + req.lease_ttl_ms);
    for (int64_t seq : seqs) {
      take.Reset();
      take.Bind(1, seq);
      SLUICE_ASSIGN_OR_RETURN(bool row, take.Step());
      if (row) lease.events.push_back(ReadSqliteClaimed(take));
      SLUICE_RETURN_IF_ERROR(take.Run());
    }
    SLUICE_ASSIGN_OR_RETURN(Stmt set, c.Prepare("UPDATE meta SET v = ?1 WHERE k = 'token'"));
    SLUICE_RETURN_IF_ERROR(set.Bind(1, token).Run());
    lease.token = lease.events.empty() ? 0 : token;
    lease.lease_until_ms = now + req.lease_ttl_ms;
    return Status::Ok();
  });
  if (!st.ok()) return st;
  SortBySeq(&lease.events);
  return lease;
}

Status SqliteReown(SqliteConn& c, int64_t token, std::span<const int64_t> seqs) {
  return SqliteWrite(c, [&](int64_t now) -> Status {
    SLUICE_ASSIGN_OR_RETURN(
        Stmt s, c.Prepare("UPDATE queue SET state = 'leased', lease_token = ?2, "
                          "lease_until = ?3, visible_at = ?3 WHERE seq = ?1 AND state != 'dead'"));
    for (int64_t seq : seqs) {
      s.Reset();
      SLUICE_RETURN_IF_ERROR(s.Bind(1, seq).Bind(2, token).Bind(3, now + kReownTtlMs).Run());
    }
    return Status::Ok();
  });
}

Result<int64_t> SqliteExtendUnfenced(SqliteConn& c, int64_t token, int64_t ttl_ms) {
  int64_t until = 0;
  int64_t changed = 0;
  SLUICE_RETURN_IF_ERROR(SqliteWrite(c, [&](int64_t now) -> Status {
    until = now + ttl_ms;
    SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare("UPDATE queue SET lease_until = ?1, visible_at = ?1 "
                                              "WHERE lease_token = ?2 AND state = 'leased'"));
    SLUICE_RETURN_IF_ERROR(s.Bind(1, until).Bind(2, token).Run());
    changed = s.Changes();
    return Status::Ok();
  }));
  if (changed == 0) return Status::LeaseLost("extend (unfenced): token holds no rows");
  return until;
}

// ---- PostgreSQL ----

#define SLUICE_PG_RETURNING                                                              \
  " RETURNING seq, project, insert_id, body, done_mask, attempts, reclaimed, lease_token, " \
  "floor(extract(epoch FROM lease_until) * 1000)::bigint"

Lease PgLease(const PgResult& r) {
  Lease lease;
  for (int i = 0; i < r.rows(); ++i) {
    ClaimedEvent e;
    e.seq = r.Int(i, 0);
    e.project = r.Str(i, 1);
    e.insert_id = r.Str(i, 2);
    e.body = r.Str(i, 3);
    e.done_mask = static_cast<uint64_t>(r.Int(i, 4));
    e.attempts = static_cast<int32_t>(r.Int(i, 5));
    e.reclaimed = r.Bool(i, 6);
    lease.events.push_back(std::move(e));
  }
  if (!lease.events.empty()) {
    lease.token = r.Int(0, 7);
    lease.lease_until_ms = r.Int(0, 8);
  }
  SortBySeq(&lease.events);
  return lease;
}

Result<Lease> PgNaiveClaim(PgConn& c, const ClaimRequest& req) {
  PgParams find;
  find.Add(int64_t{req.max_events});
  SLUICE_ASSIGN_OR_RETURN(
      PgResult found, c.Exec("SELECT seq FROM queue WHERE state <> 'dead' AND visible_at <= now() "
                             "ORDER BY seq, visible_at LIMIT $1",
                             find));
  std::vector<int64_t> seqs;
  for (int i = 0; i < found.rows(); ++i) seqs.push_back(found.Int(i, 0));
  if (seqs.empty()) return Lease{};
  std::this_thread::yield();  // the window between the two steps
  PgParams take;
  take.AddArray(std::span<const int64_t>(seqs)).Add(req.owner).Add(req.lease_ttl_ms);
  SLUICE_ASSIGN_OR_RETURN(
      PgResult r, c.Exec("UPDATE queue SET state = 'leased', lease_owner = $2, "
                         "lease_token = (SELECT sluice_next_token()), "
                         "lease_until = now() + $3::bigint * interval '1 millisecond', "
                         "visible_at = now() + $3::bigint * interval '1 millisecond', "
                         "attempts = attempts + 1, reclaimed = (state = 'leased') "
                         "WHERE seq = ANY($1::bigint[])" SLUICE_PG_RETURNING,
                         take));
  return PgLease(r);
}

Status PgReown(PgConn& c, int64_t token, std::span<const int64_t> seqs) {
  PgParams p;
  p.AddArray(seqs).Add(token).Add(kReownTtlMs);
  return c
      .Exec("UPDATE queue SET state = 'leased', lease_token = $2::bigint, "
            "lease_until = now() + $3::bigint * interval '1 millisecond', "
            "visible_at = now() + $3::bigint * interval '1 millisecond' "
            "WHERE seq = ANY($1::bigint[]) AND state <> 'dead'",
            p)
      .status();
}

Result<int64_t> PgExtendUnfenced(PgConn& c, int64_t token, int64_t ttl_ms) {
  PgParams p;
  p.Add(ttl_ms).Add(token);
  SLUICE_ASSIGN_OR_RETURN(
      PgResult r,
      c.Exec("WITH u AS (UPDATE queue SET "
             "lease_until = now() + $1::bigint * interval '1 millisecond', "
             "visible_at = now() + $1::bigint * interval '1 millisecond' "
             "WHERE lease_token = $2::bigint AND state = 'leased' RETURNING lease_until) "
             "SELECT count(*), floor(extract(epoch FROM max(lease_until)) * 1000)::bigint FROM u",
             p));
  if (r.Int(0, 0) == 0) return Status::LeaseLost("extend (unfenced): token holds no rows");
  return r.Int(0, 1);
}

}  // namespace

Result<std::unique_ptr<RawSql>> RawSql::Open(const StoreOptions& options) {
  std::unique_ptr<RawSql> sql(new RawSql());
  const std::string& url = options.url;
  if (url.rfind("sqlite:", 0) == 0) {
    std::string path = url.substr(7);
    if (path.rfind("//", 0) == 0) path = path.substr(2);
    SLUICE_ASSIGN_OR_RETURN(
        sql->sqlite_,
        SqliteConn::Open(path, options.sync, options.busy_timeout_ms, &Clock::Real()));
  } else {
    PgSessionOptions session{options.sync, options.busy_timeout_ms, options.busy_timeout_ms,
                             "sluice-testkit"};
    SLUICE_ASSIGN_OR_RETURN(sql->pg_, PgConn::Connect(url, session));
  }
  return sql;
}

RawSql::~RawSql() = default;

Result<Lease> RawSql::NaiveClaim(const ClaimRequest& req) {
  std::lock_guard<std::mutex> lock(mu_);
  return sqlite_ ? SqliteNaiveClaim(*sqlite_, req) : PgNaiveClaim(*pg_, req);
}

Status RawSql::Reown(int64_t token, std::span<const ClaimedEvent> events) {
  const std::vector<int64_t> seqs = Seqs(events);
  return Reown(token, std::span<const int64_t>(seqs));
}

Status RawSql::Reown(int64_t token, std::span<const int64_t> seqs) {
  std::lock_guard<std::mutex> lock(mu_);
  return sqlite_ ? SqliteReown(*sqlite_, token, seqs) : PgReown(*pg_, token, seqs);
}

Status RawSql::ReownJob(int64_t token, const JobRef& ref) {
  std::lock_guard<std::mutex> lock(mu_);
  if (sqlite_) {
    SqliteConn& c = *sqlite_;
    return SqliteWrite(c, [&](int64_t now) -> Status {
      SLUICE_ASSIGN_OR_RETURN(
          Stmt s, c.Prepare("UPDATE jobs SET state = 'leased', lease_token = ?4, "
                            "lease_until = ?5, visible_at = ?5 WHERE job = ?1 AND project = ?2 "
                            "AND key = ?3 AND (state = 'leased' OR attempts > 0)"));
      s.Bind(1, ref.job).Bind(2, ref.project).Bind(3, ref.key).Bind(4, token);
      return s.Bind(5, now + kReownTtlMs).Run();
    });
  }
  PgParams p;
  p.Add(ref.job).Add(ref.project).Add(ref.key).Add(token).Add(kReownTtlMs);
  return pg_
      ->Exec("UPDATE jobs SET state = 'leased', lease_token = $4::bigint, "
             "lease_until = sluice_now_ms() + $5::bigint, visible_at = sluice_now_ms() + $5::bigint "
             "WHERE job = $1 AND project = $2 AND key = $3 AND (state = 'leased' OR attempts > 0)",
             p)
      .status();
}

Status UnfencedStore::CompleteJobRun(int64_t token, const JobRef& ref) {
  SLUICE_RETURN_IF_ERROR(sql_->ReownJob(token, ref));
  return inner()->CompleteJobRun(token, ref);
}

Result<FailResult> UnfencedStore::FailJobRun(int64_t token, const JobRef& ref,
                                             const std::string& error,
                                             const BackoffPolicy& backoff) {
  SLUICE_RETURN_IF_ERROR(sql_->ReownJob(token, ref));
  return inner()->FailJobRun(token, ref, error, backoff);
}

Result<int64_t> RawSql::ExtendUnfenced(int64_t token, int64_t lease_ttl_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  return sqlite_ ? SqliteExtendUnfenced(*sqlite_, token, lease_ttl_ms)
                 : PgExtendUnfenced(*pg_, token, lease_ttl_ms);
}

Result<int64_t> UnfencedStore::Extend(int64_t token, int64_t lease_ttl_ms) {
  return sql_->ExtendUnfenced(token, lease_ttl_ms);
}

Result<MarkDoneResult> UnfencedStore::MarkDone(const MarkDoneRequest& req) {
  SLUICE_RETURN_IF_ERROR(sql_->Reown(req.token, req.events));
  return inner()->MarkDone(req);
}

Result<CompleteResult> UnfencedStore::Complete(const CompleteRequest& req) {
  SLUICE_RETURN_IF_ERROR(sql_->Reown(req.token, req.events));
  return inner()->Complete(req);
}

Result<FailResult> UnfencedStore::Fail(const FailRequest& req) {
  SLUICE_RETURN_IF_ERROR(sql_->Reown(req.token, req.seqs));
  return inner()->Fail(req);
}

Result<std::vector<EnqueueResult>> IngestFaultStore::Enqueue(
    std::span<const EnqueueBatch> batches) {
  const int64_t first = requests_.fetch_add(static_cast<int64_t>(batches.size()));
  if (first >= options_.fail_first_requests) return inner()->Enqueue(batches);
  if (!options_.fail_after_commit) {
    return Status::Unavailable("injected failure (testkit: ingest.fail_first_requests)");
  }
  Result<std::vector<EnqueueResult>> r = inner()->Enqueue(batches);
  if (!r.ok()) return r;
  return Status::Unavailable("injected failure after commit (testkit: ingest.fail_after_commit)");
}

}  // namespace sluice
