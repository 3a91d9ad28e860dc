// The SQLite claim protocol. docs/claim-protocol-sqlite.md has the SQL with
// the reasoning; the comments here say why each step is shaped as it is.
#include "queue/sqlite/sqlite_store.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <optional>

#include "fmt/format.h"
#include "queue/lease_logic.h"
#include "queue/sqlite/sqlite_schema.h"

namespace sluice {

namespace {

// Fenced statements bind ?3 = the caller's token and ?4 = now. A row is held
// while lease_until > now; the claim takes it over once visible_at (==
// lease_until while leased) <= now, so "held" and "claimable" never overlap.
#define SLUICE_FENCE " AND lease_token = ?3 AND state = 'leased' AND lease_until > ?4"
constexpr char kHeldAttempts[] = "SELECT attempts FROM queue WHERE seq = ?1" SLUICE_FENCE;
// Runs in the transaction that just read the row under the fence (write lock
// held), so no re-check is needed.
constexpr char kSetMask[] = "UPDATE queue SET done_mask = ?2 WHERE seq = ?1";
constexpr char kDeleteRow[] = "DELETE FROM queue WHERE seq = ?1";

constexpr char kNextToken[] = "SELECT v + 1 FROM meta WHERE k = 'token'";
constexpr char kSetToken[] = "UPDATE meta SET v = ?1 WHERE k = 'token'";

}  // namespace

Result<StorePtr> SqliteStore::Open(const StoreOptions& options, const std::string& path,
                                   Clock* clock) {
  if (path.empty()) return Status::InvalidArgument("sqlite store: empty path");
  if (options.pool_size < 1) return Status::InvalidArgument("sqlite store: pool_size < 1");
  SLUICE_RETURN_IF_ERROR(ValidateDedupWindow(options.dedup_window_ms, options.dedup_buckets));
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      return Status::IoError(
          fmt::format("sqlite store: cannot create {}: {}", parent.string(), ec.message()));
    }
  }
  // The writer first: it migrates. Then the readers.
  SLUICE_ASSIGN_OR_RETURN(auto writer,
                          SqliteConn::Open(path, options.sync, options.busy_timeout_ms, clock));
  SLUICE_RETURN_IF_ERROR(MigrateSqlite(*writer));
  std::vector<std::unique_ptr<SqliteConn>> conns;
  for (int i = 0; i < options.pool_size; ++i) {
    SLUICE_ASSIGN_OR_RETURN(auto conn,
                            SqliteConn::Open(path, options.sync, options.busy_timeout_ms, clock));
    conns.push_back(std::move(conn));
  }
  // 4,000 pages (16 MiB at the default 4 KiB page) between checkpoints.
  SLUICE_ASSIGN_OR_RETURN(auto checkpointer,
                          SqliteCheckpointer::Start(path, options.sync, 4000, clock));
  checkpointer->Watch(*writer);
  return StorePtr(new SqliteStore(options, clock, std::move(writer),
                                  std::make_unique<SqlitePool>(std::move(conns)),
                                  std::move(checkpointer)));
}

SqliteStore::SqliteStore(const StoreOptions& options, Clock* clock,
                         std::unique_ptr<SqliteConn> writer, std::unique_ptr<SqlitePool> pool,
                         std::unique_ptr<SqliteCheckpointer> checkpointer)
    : options_(options),
      clock_(clock),
      writer_(std::move(writer)),
      pool_(std::move(pool)),
      checkpointer_(std::move(checkpointer)) {}

Status SqliteStore::Write(const WriteFn& fn, Durability durability) {
  std::lock_guard<std::mutex> lock(write_mu_);
  SqliteConn* conn = writer_.get();
  SLUICE_RETURN_IF_ERROR(conn->SetDurable(durability == Durability::kDurable));
  // The busy handler already waited up to busy_timeout_ms; a few kinds of
  // busy (WAL recovery by another process) bypass it, so retry here too.
  const int64_t deadline = clock_->MonoMs() + options_.busy_timeout_ms;
  while (true) {
    Status st = conn->BeginImmediate();
    if (st.ok()) break;
    if (st.code() != Code::kUnavailable || clock_->MonoMs() >= deadline) return st;
    clock_->SleepMs(1);
  }
  auto now = conn->NowMs();
  if (!now.ok()) {
    conn->Rollback();
    return now.status();
  }
  // Only store code runs here: in-store effects arrive as data (effects.h).
  Status st = fn(*conn, *now);
  if (!st.ok()) {
    conn->Rollback();
    return st;
  }
  st = conn->Commit();
  if (!st.ok()) conn->Rollback();
  return st;
}

Status SqliteStore::Read(const WriteFn& fn) {
  auto conn = pool_->Acquire();
  SLUICE_RETURN_IF_ERROR(conn->BeginRead());
  auto now = conn->NowMs();
  Status st = now.ok() ? fn(*conn, *now) : now.status();
  conn->Rollback();  // a read transaction has nothing to keep
  return st;
}

Result<int64_t> SqliteStore::NowMs() {
  auto conn = pool_->Acquire();
  return conn->NowMs();
}

// ---- ingest ----

Result<std::vector<DedupBucket>> SqliteStore::ReadDedupBuckets(SqliteConn& c) {
  static constexpr char kBuckets[] = "SELECT id, start_ms FROM dedup_buckets ORDER BY id";
  SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kBuckets));
  std::vector<DedupBucket> out;
  while (true) {
    SLUICE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back(DedupBucket{s.Int(0), s.Int(1)});
  }
  return out;
}

namespace {

// Inserts key (?1, ?2) into the newest bucket unless an older bucket holds
// it; the newest bucket's own primary key refuses it there (DO NOTHING). The
// WHERE clause is always present: SQLite requires one before an upsert on
// INSERT ... SELECT.
std::string DedupInsertSql(std::span<const DedupBucket> live) {
  std::string sql =
      fmt::format("INSERT INTO {}(h1, h2) SELECT ?1, ?2 WHERE 1", DedupTableName(live.back().id));
  for (size_t i = 0; i + 1 < live.size(); ++i) {
    sql += fmt::format(" AND NOT EXISTS (SELECT 1 FROM {} WHERE h1 = ?1 AND h2 = ?2)",
                       DedupTableName(live[i].id));
  }
  sql += " ON CONFLICT DO NOTHING";
  return sql;
}

}  // namespace

Result<std::vector<EnqueueResult>> SqliteStore::Enqueue(std::span<const EnqueueBatch> batches) {
  // A row is new when its key went into the newest dedup bucket: 0 changes
  // = a live bucket holds it (a duplicate, also within this very group).
  // The registry is read inside the write transaction, so no maintenance
  // (of any process on this file) can rotate or drop between it and the
  // inserts.
  static constexpr char kInsert[] =
      "INSERT INTO queue(project, insert_id, body, visible_at, enqueued_at) "
      "VALUES (?1, ?2, ?3, ?4, ?4)";
  std::vector<EnqueueResult> results;
  Status st = Write([&](SqliteConn& c, int64_t now) -> Status {
    results.assign(batches.size(), EnqueueResult{});
    SLUICE_ASSIGN_OR_RETURN(std::vector<DedupBucket> live, ReadDedupBuckets(c));
    if (live.empty()) return Status::Internal("sqlite store: no dedup bucket");
    SLUICE_ASSIGN_OR_RETURN(Stmt dedup, c.PrepareGenerated(DedupInsertSql(live)));
    SLUICE_ASSIGN_OR_RETURN(Stmt insert, c.Prepare(kInsert));
    insert.Bind(4, now);
    for (size_t b = 0; b < batches.size(); ++b) {
      for (const NewEvent& e : batches[b].events) {
        const DedupKey key = SqliteDedupKey(e.project, e.insert_id);
        dedup.Reset();
        dedup.Bind(1, key.h1).Bind(2, key.h2);
        SLUICE_RETURN_IF_ERROR(dedup.Run());
        if (dedup.Changes() == 0) {
          ++results[b].duplicates;
          continue;
        }
        insert.Reset();
        insert.Bind(1, e.project).Bind(2, e.insert_id).Bind(3, e.body);
        SLUICE_RETURN_IF_ERROR(insert.Run());
        ++results[b].accepted;
      }
    }
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return results;
}

// ---- claim ----

Result<Lease> SqliteStore::Claim(const ClaimRequest& req) {
  if (req.owner.empty() || req.max_events <= 0 || req.lease_ttl_ms <= 0) {
    return Status::InvalidArgument("claim: owner, max_events and lease_ttl_ms are required");
  }
  return ClaimAtomic(req);
}

namespace {

constexpr char kAnyClaimable[] =
    "SELECT 1 FROM queue WHERE state != 'dead' AND visible_at <= ?1 LIMIT 1";

// Rows of RETURNING come back in no particular order.
void SortBySeq(std::vector<ClaimedEvent>* events) {
  std::sort(events->begin(), events->end(),
            [](const ClaimedEvent& a, const ClaimedEvent& b) { return a.seq < b.seq; });
}

ClaimedEvent ReadClaimed(const Stmt& s) {
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

}  // namespace

Result<Lease> SqliteStore::ClaimAtomic(const ClaimRequest& req) {
  {
    // Idle loops poll: answer "nothing to do" from a read snapshot without
    // taking the write lock or burning a token.
    auto conn = pool_->Acquire();
    SLUICE_ASSIGN_OR_RETURN(int64_t now, conn->NowMs());
    SLUICE_ASSIGN_OR_RETURN(Stmt any, conn->Prepare(kAnyClaimable));
    any.Bind(1, now);
    SLUICE_ASSIGN_OR_RETURN(bool row, any.Step());
    if (!row) return Lease{};
  }
  // One statement picks and leases the rows: the subquery and the UPDATE see
  // the same snapshot under the write lock, so no other claimer can take the
  // same rows in between. visible_at moves with lease_until, so "pending and
  // visible" and "leased and expired" are the one condition visible_at <= now.
  static constexpr char kClaim[] =
      "UPDATE queue SET state = 'leased', lease_owner = ?1, lease_token = ?2, "
      "lease_until = ?3, visible_at = ?3, attempts = attempts + 1, "
      "reclaimed = (state = 'leased') "
      "WHERE seq IN (SELECT seq FROM queue WHERE state != 'dead' AND visible_at <= ?4 "
      "ORDER BY seq LIMIT ?5) "
      "RETURNING seq, project, insert_id, body, done_mask, attempts, reclaimed";
  Lease lease;
  Status st = Write([&](SqliteConn& c, int64_t now) -> Status {
    lease = Lease{};
    // The token is taken under the write lock and only stored when rows were
    // claimed, so an empty claim burns no token.
    SLUICE_ASSIGN_OR_RETURN(Stmt next, c.Prepare(kNextToken));
    SLUICE_ASSIGN_OR_RETURN(bool has, next.Step());
    if (!has) return Status::Internal("sqlite store: token counter missing");
    const int64_t token = next.Int(0);
    SLUICE_RETURN_IF_ERROR(next.Run());
    SLUICE_ASSIGN_OR_RETURN(Stmt claim, c.Prepare(kClaim));
    claim.Bind(1, req.owner).Bind(2, token).Bind(3, now + req.lease_ttl_ms).Bind(4, now);
    claim.Bind(5, static_cast<int64_t>(req.max_events));
    while (true) {
      SLUICE_ASSIGN_OR_RETURN(bool row, claim.Step());
      if (!row) break;
      lease.events.push_back(ReadClaimed(claim));
    }
    if (lease.events.empty()) return Status::Ok();
    SLUICE_ASSIGN_OR_RETURN(Stmt set, c.Prepare(kSetToken));
    SLUICE_RETURN_IF_ERROR(set.Bind(1, token).Run());
    lease.token = token;
    lease.lease_until_ms = now + req.lease_ttl_ms;
    return Status::Ok();
  }, Durability::kLease);
  if (!st.ok()) return st;
  SortBySeq(&lease.events);
  return lease;
}

// ---- fenced writes ----

Result<int64_t> SqliteStore::Extend(int64_t token, int64_t lease_ttl_ms) {
  static constexpr char kFenced[] =
      "UPDATE queue SET lease_until = ?1, visible_at = ?1 WHERE 1" SLUICE_FENCE;
  if (lease_ttl_ms <= 0) return Status::InvalidArgument("extend: lease_ttl_ms must be > 0");
  int64_t until = 0;
  Status st = Write([&](SqliteConn& c, int64_t now) -> Status {
    until = now + lease_ttl_ms;
    SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kFenced));
    SLUICE_RETURN_IF_ERROR(s.Bind(1, until).Bind(3, token).Bind(4, now).Run());
    if (s.Changes() == 0)
      return Status::LeaseLost(fmt::format("extend: token {} holds no rows", token));
    return Status::Ok();
  }, Durability::kLease);
  if (!st.ok()) return st;
  return until;
}

Status SqliteStore::ReadHeldLocked(SqliteConn& c, int64_t now, int64_t token,
                                   std::vector<HeldRow>* held) {
  held->clear();
  // One range scan of queue_token returns every row the token still holds
  // (ascending seq); lease_logic intersects the caller's rows with it. The
  // write lock is held from here to COMMIT, so what we read cannot change
  // under us.
  static constexpr char kHeldByToken[] =
      "SELECT seq, done_mask FROM queue WHERE lease_token = ?1 AND state = 'leased' "
      "AND lease_until > ?2 ORDER BY seq";
  SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kHeldByToken));
  s.Bind(1, token).Bind(2, now);
  while (true) {
    SLUICE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    held->push_back(HeldRow{s.Int(0), static_cast<uint64_t>(s.Int(1))});
  }
  return Status::Ok();
}

Result<MarkPlan> SqliteStore::MarkLocked(SqliteConn& c, int64_t now, int64_t token,
                                         std::span<const ClaimedEvent> events,
                                         uint64_t external_bits,
                                         const std::vector<InStoreEffects>& in_store,
                                         std::optional<uint64_t> all_bits, int64_t* lease_rows) {
  std::vector<HeldRow> held;
  SLUICE_RETURN_IF_ERROR(ReadHeldLocked(c, now, token, &held));
  *lease_rows = static_cast<int64_t>(held.size());
  const uint64_t in_store_bits = InStoreBits(in_store);
  MarkPlan plan = !all_bits.has_value()
                      ? PlanMarkDone(events, held, external_bits, in_store_bits)
                      : PlanComplete(events, held, *all_bits, external_bits, in_store_bits);
  if (plan.outcome == MarkPlan::Outcome::kLeaseLost) {
    return Status::LeaseLost(
        fmt::format("token {} holds none of the {} rows", token, events.size()));
  }
  if (plan.outcome == MarkPlan::Outcome::kStale) return plan;
  // The plan checked that each consumer's effects cover exactly the held rows
  // whose bit flips now: effect and bit commit together, so a redelivery
  // skips them.
  for (const InStoreEffects& e : in_store) {
    if (!e.effects.empty()) SLUICE_RETURN_IF_ERROR(ApplyEffectsLocked(c, e.effects));
  }
  // Jobs last: a user-keyed delta is scheduled on the person its id has once
  // this transaction's users effects (links included) are written.
  for (const InStoreEffects& e : in_store) {
    if (!e.effects.jobs.empty()) SLUICE_RETURN_IF_ERROR(ApplyJobDeltasLocked(c, now, e.effects.jobs));
  }
  SLUICE_ASSIGN_OR_RETURN(Stmt set, c.Prepare(kSetMask));
  for (const HeldRow& row : plan.mask_writes) {
    set.Reset();
    SLUICE_RETURN_IF_ERROR(set.Bind(1, row.seq).Bind(2, static_cast<int64_t>(row.done_mask)).Run());
  }
  return plan;
}

Result<MarkDoneResult> SqliteStore::MarkDone(const MarkDoneRequest& req) {
  MarkDoneResult result;
  if (req.events.empty()) return result;
  Status st = Write(
      [&](SqliteConn& c, int64_t now) -> Status {
        result = MarkDoneResult{};
        int64_t lease_rows = 0;
        SLUICE_ASSIGN_OR_RETURN(MarkPlan plan, MarkLocked(c, now, req.token, req.events,
                                                          req.external_bits, req.in_store,
                                                          /*all_bits=*/std::nullopt, &lease_rows));
        if (TakeStale(plan, &result)) return Status::Ok();
        result.marked = std::move(plan.marked);
        return Status::Ok();
      },
      Durability::kLease);
  if (!st.ok()) return st;
  return result;
}

Result<CompleteResult> SqliteStore::Complete(const CompleteRequest& req) {
  CompleteResult result;
  if (req.events.empty()) return result;
  Status st = Write(
      [&](SqliteConn& c, int64_t now) -> Status {
        result = CompleteResult{};
        int64_t lease_rows = 0;
        SLUICE_ASSIGN_OR_RETURN(MarkPlan plan,
                                MarkLocked(c, now, req.token, req.events, req.external_bits,
                                           req.in_store, req.all_bits, &lease_rows));
        if (TakeStale(plan, &result)) return Status::Ok();
        result.deleted = std::move(plan.deleted);
        result.remaining = std::move(plan.remaining);
        if (result.remaining.empty() && static_cast<int64_t>(result.deleted.size()) == lease_rows) {
          // The whole lease is done (the usual case): one statement deletes it.
          static constexpr char kDeleteLease[] =
              "DELETE FROM queue WHERE lease_token = ?1 AND state = 'leased' AND lease_until > ?2";
          SLUICE_ASSIGN_OR_RETURN(Stmt del, c.Prepare(kDeleteLease));
          SLUICE_RETURN_IF_ERROR(del.Bind(1, req.token).Bind(2, now).Run());
          if (del.Changes() != lease_rows) {
            return Status::Internal(fmt::format("complete: token {} deleted {} rows, held {}",
                                                req.token, del.Changes(), lease_rows));
          }
          return Status::Ok();
        }
        SLUICE_ASSIGN_OR_RETURN(Stmt del, c.Prepare(kDeleteRow));
        for (int64_t seq : result.deleted) {
          del.Reset();
          SLUICE_RETURN_IF_ERROR(del.Bind(1, seq).Run());
        }
        return Status::Ok();
      },
      Durability::kLease);
  if (!st.ok()) return st;
  return result;
}

Result<FailResult> SqliteStore::Fail(const FailRequest& req) {
  static constexpr char kDead[] =
      "UPDATE queue SET state = 'dead', died_at = ?2, visible_at = ?2, last_error = ?3, "
      "lease_owner = NULL, lease_token = NULL, lease_until = NULL WHERE seq = ?1";
  static constexpr char kRetry[] =
      "UPDATE queue SET state = 'pending', visible_at = ?2, last_error = ?3, "
      "lease_owner = NULL, lease_token = NULL, lease_until = NULL WHERE seq = ?1";
  FailResult result;
  if (req.seqs.empty()) return result;
  Status st = Write([&](SqliteConn& c, int64_t now) -> Status {
    result = FailResult{};
    SLUICE_ASSIGN_OR_RETURN(Stmt held, c.Prepare(kHeldAttempts));
    SLUICE_ASSIGN_OR_RETURN(Stmt dead, c.Prepare(kDead));
    SLUICE_ASSIGN_OR_RETURN(Stmt retry, c.Prepare(kRetry));
    held.Bind(3, req.token).Bind(4, now);
    for (int64_t seq : req.seqs) {
      held.Reset();
      held.Bind(1, seq);
      SLUICE_ASSIGN_OR_RETURN(bool row, held.Step());
      if (!row) continue;
      const FailStep step = PlanFail(req.backoff, held.Int(0), BackoffJitter());
      if (step.dead) {
        dead.Reset();
        SLUICE_RETURN_IF_ERROR(dead.Bind(1, seq).Bind(2, now).Bind(3, req.error).Run());
        ++result.dead;
      } else {
        retry.Reset();
        SLUICE_RETURN_IF_ERROR(
            retry.Bind(1, seq).Bind(2, now + step.delay_ms).Bind(3, req.error).Run());
        ++result.retried;
      }
    }
    if (result.dead + result.retried == 0) {
      return Status::LeaseLost(
          fmt::format("fail: token {} holds none of the {} rows", req.token, req.seqs.size()));
    }
    return Status::Ok();
  }, Durability::kLease);
  if (!st.ok()) return st;
  return result;
}

// ---- dead letters ----

namespace {

// ?1 project or '', ?2 JSON array of seqs or NULL, ?3 the paging cursor (rows
// above this seq). The consumer and error filters are applied in C++ on each
// page, by DeadLetterMatches (lease_logic.h), the one definition both stores
// use.
#define SLUICE_DEAD_PAGE                          \
  "state = 'dead' AND (?1 = '' OR project = ?1) " \
  "AND (?2 IS NULL OR seq IN (SELECT value FROM json_each(?2))) AND seq > ?3 "

// Dead rows are read in pages of this many, in seq order.
constexpr int64_t kDeadPage = 1000;

std::string SeqsJson(std::span<const int64_t> seqs) {
  std::string out;
  out.push_back('[');  // (not `= "["`: GCC 12 -Wrestrict false positive)
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(seqs[i]);
  }
  out.push_back(']');
  return out;
}

void BindDeadPage(Stmt& s, const DeadFilter& f, const std::string& seqs_json, int64_t cursor) {
  s.Bind(1, f.project);
  if (f.seqs.empty()) {
    s.BindNull(2);
  } else {
    s.Bind(2, seqs_json);
  }
  s.Bind(3, cursor);
}

}  // namespace

Status SqliteStore::ForEachDeadPageLocked(
    SqliteConn& c, const DeadFilter& filter,
    const std::function<Status(std::span<const int64_t>)>& fn) {
  static constexpr char kPage[] =
      "SELECT seq, coalesce(last_error, '') FROM queue WHERE " SLUICE_DEAD_PAGE
      "ORDER BY seq LIMIT ?4";
  const std::string seqs_json = SeqsJson(filter.seqs);
  SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kPage));
  int64_t cursor = std::numeric_limits<int64_t>::min();
  std::vector<int64_t> matching;
  while (true) {
    s.Reset();
    BindDeadPage(s, filter, seqs_json, cursor);
    s.Bind(4, kDeadPage);
    int64_t rows = 0;
    matching.clear();
    while (true) {
      SLUICE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      ++rows;
      cursor = s.Int(0);
      if (DeadLetterMatches(filter, s.Text(1))) matching.push_back(cursor);
    }
    s.Reset();  // done reading before fn writes
    if (!matching.empty()) SLUICE_RETURN_IF_ERROR(fn(matching));
    if (rows < kDeadPage) return Status::Ok();
  }
}

Result<std::vector<DeadEvent>> SqliteStore::ListDead(const DeadFilter& filter) {
  static constexpr char kList[] =
      "SELECT seq, project, insert_id, body, attempts, done_mask, coalesce(last_error, ''), "
      "coalesce(died_at, 0) FROM queue WHERE " SLUICE_DEAD_PAGE "ORDER BY seq LIMIT ?4";
  const size_t limit = static_cast<size_t>(filter.limit > 0 ? filter.limit : 100);
  const std::string seqs_json = SeqsJson(filter.seqs);
  std::vector<DeadEvent> out;
  Status st = Read([&](SqliteConn& c, int64_t) -> Status {
    out.clear();
    SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kList));
    // Without a consumer or error filter every row matches and one page is the
  // answer.
    const bool every_row_matches = filter.consumer.empty() && filter.error.empty();
    const int64_t page =
        every_row_matches ? static_cast<int64_t>(limit) : std::max<int64_t>(kDeadPage, limit);
    int64_t cursor = std::numeric_limits<int64_t>::min();
    while (out.size() < limit) {
      s.Reset();
      BindDeadPage(s, filter, seqs_json, cursor);
      s.Bind(4, page);
      int64_t rows = 0;
      while (out.size() < limit) {
        SLUICE_ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        ++rows;
        cursor = s.Int(0);
        if (!DeadLetterMatches(filter, s.Text(6))) continue;
        DeadEvent d;
        d.seq = cursor;
        d.project = s.Str(1);
        d.insert_id = s.Str(2);
        d.body = s.Str(3);
        d.attempts = static_cast<int32_t>(s.Int(4));
        d.done_mask = static_cast<uint64_t>(s.Int(5));
        d.last_error = s.Str(6);
        d.died_at_ms = s.Int(7);
        out.push_back(std::move(d));
      }
      if (rows < page) break;
    }
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return out;
}

Result<int64_t> SqliteStore::RequeueDead(const DeadFilter& filter) {
  static constexpr char kRequeue[] =
      "UPDATE queue SET state = 'pending', visible_at = ?2, attempts = 0, died_at = NULL, "
      "reclaimed = 0 WHERE state = 'dead' AND seq IN (SELECT value FROM json_each(?1))";
  int64_t n = 0;
  Status st = Write([&](SqliteConn& c, int64_t now) -> Status {
    n = 0;
    SLUICE_ASSIGN_OR_RETURN(Stmt u, c.Prepare(kRequeue));
    return ForEachDeadPageLocked(c, filter, [&](std::span<const int64_t> seqs) -> Status {
      const std::string json = SeqsJson(seqs);  // bound without a copy
      u.Reset();
      SLUICE_RETURN_IF_ERROR(u.Bind(1, json).Bind(2, now).Run());
      n += u.Changes();
      return Status::Ok();
    });
  });
  if (!st.ok()) return st;
  return n;
}

Result<int64_t> SqliteStore::PurgeDead(const DeadFilter& filter) {
  static constexpr char kPurge[] =
      "DELETE FROM queue WHERE state = 'dead' AND seq IN (SELECT value FROM json_each(?1))";
  int64_t n = 0;
  Status st = Write([&](SqliteConn& c, int64_t) -> Status {
    n = 0;
    SLUICE_ASSIGN_OR_RETURN(Stmt d, c.Prepare(kPurge));
    return ForEachDeadPageLocked(c, filter, [&](std::span<const int64_t> seqs) -> Status {
      const std::string json = SeqsJson(seqs);  // bound without a copy
      d.Reset();
      SLUICE_RETURN_IF_ERROR(d.Bind(1, json).Run());
      n += d.Changes();
      return Status::Ok();
    });
  });
  if (!st.ok()) return st;
  return n;
}

}  // namespace sluice
