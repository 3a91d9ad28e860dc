// The PostgreSQL claim protocol. Semantics mirror SqliteStore statement for
// statement (the conformance suite runs on both); the comments here say why
// each statement is shaped as it is for PostgreSQL. docs/operations.md has
// the EXPLAIN of the claim and the operational side.
#include "queue/postgres/postgres_store.h"

#include <algorithm>
#include <optional>
#include <string_view>
#include <unordered_set>
#include <utility>

#include "fmt/format.h"
#include "queue/lease_logic.h"
#include "queue/postgres/pg_schema.h"
#include "queue/postgres/pg_store.h"

namespace sluice {

Result<StorePtr> OpenPostgresStore(const StoreOptions& options, Clock* clock) {
  return PostgresStore::Open(options, clock);
}

namespace {

// Epoch ms of a timestamptz expression, truncated like the SQLite store's
// integer milliseconds.
#define SLUICE_MS(x) "floor(extract(epoch FROM " x ") * 1000)::bigint"

// Wake-up channel of LISTEN/NOTIFY. One NOTIFY per enqueue transaction:
// PostgreSQL folds identical notifications of a transaction into one.
constexpr char kChannel[] = "sluice_work";

// The advisory lock Enqueue holds shared while it draws seqs; the same
// constant is in sluice_refresh_head (pg_schema.cc, migration v2).
#define SLUICE_ENQUEUE_LOCK "127017875187045"

}  // namespace

Result<StorePtr> PostgresStore::Open(const StoreOptions& options, Clock* clock) {
  if (options.pool_size < 1) return Status::InvalidArgument("postgres store: pool_size < 1");
  if (options.busy_timeout_ms <= 0) {
    return Status::InvalidArgument("postgres store: busy_timeout_ms must be > 0");
  }
  SLUICE_RETURN_IF_ERROR(ValidateDedupWindow(options.dedup_window_ms, options.dedup_buckets));
  std::unique_ptr<PostgresStore> store(new PostgresStore(options, clock));
  {
    SLUICE_ASSIGN_OR_RETURN(auto conn, PgConn::Connect(options.url, store->session_));
    SLUICE_RETURN_IF_ERROR(MigratePostgres(*conn));
  }
  return StorePtr(std::move(store));
}

PostgresStore::PostgresStore(const StoreOptions& options, Clock* clock)
    : options_(options),
      clock_(clock),
      session_(PgSessionOptions{options.sync, options.busy_timeout_ms, options.busy_timeout_ms,
                                "sluice"}),
      pool_(std::make_unique<PgPool>(options.url, session_, options.pool_size,
                                     options.busy_timeout_ms, clock)) {}

PostgresStore::~PostgresStore() {
  listener_.reset();  // joins its thread before the pool goes away
}

void PostgresStore::SetWakeCallback(std::function<void()> cb) {
  if (listener_ == nullptr) {
    if (!cb) return;
    listener_ = std::make_unique<PgListener>(options_.url, session_, kChannel);
  }
  listener_->SetCallback(std::move(cb));
}

namespace {

// After a failed transaction on `h`: rolls it back and says whether to run it
// again. A pooled connection that died idle (server restart) failed before
// anything was committed: run again on a fresh one. A broken COMMIT has an
// unknown outcome and is reported as such. Deadlocks and serialization
// failures rolled everything back: retried a few times.
bool RollBackAndRetry(PgPool::Handle& h, bool commit_sent, int attempt) {
  const std::string sqlstate = h->last_sqlstate();
  h->Rollback();
  if (h->broken()) return !commit_sent && h.reused() && attempt == 0;
  return IsRetryableSqlState(sqlstate) && attempt < 4;
}

}  // namespace

Status PostgresStore::Txn(const TxnFn& fn) {
  for (int attempt = 0;; ++attempt) {
    SLUICE_ASSIGN_OR_RETURN(PgPool::Handle h, pool_->Acquire());
    PgConn& c = *h;
    bool commit_sent = false;
    Status st = c.Begin();
    if (st.ok()) {
      st = fn(c);
      if (st.ok()) {
        commit_sent = true;
        st = c.Commit();
      }
    }
    if (st.ok()) return st;
    if (RollBackAndRetry(h, commit_sent, attempt)) continue;
    return st;
  }
}

Status PostgresStore::Single(const TxnFn& fn, bool idempotent) {
  for (int attempt = 0;; ++attempt) {
    SLUICE_ASSIGN_OR_RETURN(PgPool::Handle h, pool_->Acquire());
    Status st = fn(*h);
    if (st.ok()) return st;
    if (h->broken()) {
      if (idempotent && h.reused() && attempt == 0) continue;
      return st;
    }
    // A deadlock or serialization failure rolled the statement back whole.
    if (IsRetryableSqlState(h->last_sqlstate()) && attempt < 4) continue;
    return st;
  }
}

Status PostgresStore::TxnPipelined(const PipelinedFn& fn) {
  for (int attempt = 0;; ++attempt) {
    SLUICE_ASSIGN_OR_RETURN(PgPool::Handle h, pool_->Acquire());
    PgConn& c = *h;
    bool commit_sent = false;
    Status st = fn(c, &commit_sent);
    if (st.ok()) return st;
    if (RollBackAndRetry(h, commit_sent, attempt)) continue;
    return st;
  }
}

namespace {

constexpr char kBegin[] = "BEGIN";
constexpr char kNoFlush[] = "SET LOCAL synchronous_commit = off";
constexpr char kCommit[] = "COMMIT";

// A COMMIT of a transaction that had failed reports ROLLBACK, not an error.
Status CheckCommitted(const PgResult& commit) {
  if (commit.CommandTag() == "ROLLBACK") {
    return Status::Internal("postgres: transaction rolled back");
  }
  return Status::Ok();
}

}  // namespace

std::vector<PgStatement> PostgresStore::BeginNoFlush() const {
  std::vector<PgStatement> out{{kBegin, nullptr}};
  if (options_.sync) out.push_back({kNoFlush, nullptr});
  return out;
}

Result<PgResult> PostgresStore::ExecTxn(PgConn& c, const char* sql, const PgParams& params,
                                        const char* set_local, Flush flush) const {
  // Without sync the session does not wait for the flush anyway.
  if (!options_.sync && set_local == nullptr) return c.Exec(sql, params);
  std::vector<PgStatement> pipeline =
      flush == Flush::kNoWait ? BeginNoFlush() : std::vector<PgStatement>{{kBegin, nullptr}};
  if (set_local != nullptr) pipeline.push_back({set_local, nullptr});
  const size_t at = pipeline.size();
  pipeline.push_back({sql, &params});
  pipeline.push_back({kCommit, nullptr});
  auto r = c.ExecPipeline(pipeline);
  if (!r.ok()) {
    c.Rollback();  // the pipeline stopped inside the transaction
    return r.status();
  }
  SLUICE_RETURN_IF_ERROR(CheckCommitted(r->back()));
  return std::move((*r)[at]);
}

void PostgresStore::MaybeRefreshHead() {
  // Claims start at queue_head.low; raising it is what keeps them off the
  // index entries of deleted rows (docs: "The low-water mark"). Every 100 ms
  // per store at most, and the function itself runs once per 100 ms across
  // all replicas; a failure only means the mark stays where it was.
  static constexpr int64_t kHeadRefreshMs = 100;
  static constexpr char kRefresh[] = "SELECT sluice_refresh_head($1::bigint)";
  const int64_t now = clock_->MonoMs();
  int64_t last = last_head_refresh_ms_.load(std::memory_order_relaxed);
  if (now - last < kHeadRefreshMs) return;
  if (!last_head_refresh_ms_.compare_exchange_strong(last, now)) return;
  PgParams params;
  params.Add(kHeadRefreshMs);
  (void)Single(
      [&](PgConn& c) -> Status {
        return ExecTxn(c, kRefresh, params, nullptr, Flush::kNoWait).status();
      },
      /*idempotent=*/true);
}

Result<int64_t> PostgresStore::NowMs() {
  static constexpr char kNow[] = "SELECT " SLUICE_MS("clock_timestamp()");
  int64_t now = 0;
  SLUICE_RETURN_IF_ERROR(Single(
      [&](PgConn& c) -> Status {
        SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kNow));
        now = r.Int(0, 0);
        return Status::Ok();
      },
      /*idempotent=*/true));
  return now;
}

// ---- ingest ----

Status PostgresStore::RefreshDedupBuckets() {
  static constexpr char kBuckets[] = "SELECT id, start_ms FROM dedup_buckets ORDER BY id";
  std::vector<DedupBucket> live;
  SLUICE_RETURN_IF_ERROR(Single(
      [&](PgConn& c) -> Status {
        SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kBuckets));
        live.clear();
        for (int i = 0; i < r.rows(); ++i) live.push_back({r.Int(i, 0), r.Int(i, 1)});
        return Status::Ok();
      },
      /*idempotent=*/true));
  if (live.empty()) return Status::Internal("postgres store: no dedup bucket");
  std::lock_guard<std::mutex> lock(dedup_mu_);
  dedup_live_ = std::move(live);
  return Status::Ok();
}

namespace {

// One statement for the whole group (so one transaction, one WAL flush). The
// keys that no older bucket holds go into the newest bucket (ON CONFLICT on
// its primary key refuses those it holds, also against a concurrent group:
// the second waits for the first's commit); only the keys inserted enter the
// queue, in request order so seq keeps FIFO. Keys are inserted in sorted
// order so two groups sharing keys lock them in the same order (no
// deadlock). Each older bucket is probed by a scalar subquery per row (a
// SubPlan: one index probe per row and bucket), never an anti-join that
// could hash a whole bucket.
//
// The registry guard (max(id) = $5, this store's newest bucket) makes
// dedup_buckets the statement's first relation: its ACCESS SHARE lock is
// taken before any bucket's and held until commit, so a rotation (ACCESS
// EXCLUSIVE on the registry, docs/claim-protocol-postgres.md "The dedup
// window") either waits for this group to commit or commits before this
// statement takes its snapshot; in the latter case the guard is false, the
// statement stores nothing, and its last row (batch -1) carries the newest
// id it saw. The shared advisory lock (an InitPlan, so taken before the
// first row is read, hence before any seq is drawn) is the barrier
// sluice_refresh_head waits on: see "The low-water mark" there.
std::string EnqueueSql(std::span<const DedupBucket> live) {
  std::string probes;
  for (size_t i = 0; i + 1 < live.size(); ++i) {
    probes += fmt::format(" AND (SELECT 1 FROM {} o WHERE o.h = input.h) IS NULL",
                          DedupTableName(live[i].id));
  }
  return fmt::format(
      "WITH input AS ("
      "  SELECT i.*, sluice_dedup_key(i.project, i.insert_id) AS h "
      "  FROM unnest($1::text[], $2::text[], $3::text[], $4::int[]) "
      "  WITH ORDINALITY AS i(project, insert_id, body, batch, ord) "
      "  WHERE (SELECT max(id) FROM dedup_buckets) = $5::bigint "
      "  AND (SELECT pg_advisory_xact_lock_shared(" SLUICE_ENQUEUE_LOCK
      ")) IS NOT NULL), "
      "d AS ("
      "  INSERT INTO {} AS x (h) SELECT h FROM input WHERE true{} ORDER BY h "
      "  ON CONFLICT (h) DO NOTHING RETURNING h), "
      "fresh AS (SELECT i.* FROM input i JOIN d USING (h)), "
      "q AS ("
      "  INSERT INTO queue (project, insert_id, body) "
      "  SELECT project, insert_id, body FROM fresh ORDER BY ord RETURNING 1) "
      "SELECT batch::bigint, count(*), pg_notify('sluice_work', '') IS NULL FROM fresh "
      "GROUP BY batch "
      "UNION ALL SELECT -1, max(id), false FROM dedup_buckets",
      DedupTableName(live.back().id), probes);
}

// undefined_table: a bucket this store still probes was dropped.
constexpr std::string_view kUndefinedTable = "42P01";

}  // namespace

Status PostgresStore::EnqueueOnce(std::span<const DedupBucket> live, const PgParams& params,
                                  std::vector<int64_t>* accepted, bool* stale) {
  // Generated text (it names the buckets), so it is not a cached prepared
  // statement: parsed and planned once per group commit.
  const std::string sql = EnqueueSql(live);
  return Single(
      [&](PgConn& c) -> Status {
        std::fill(accepted->begin(), accepted->end(), 0);
        *stale = false;
        Result<PgResult> r = c.ExecOnce(sql, params);
        if (!r.ok()) {
          *stale = c.last_sqlstate() == kUndefinedTable;
          return r.status();
        }
        for (int i = 0; i < r->rows(); ++i) {
          const int64_t b = r->Int(i, 0);
          if (b == -1) {
            *stale = r->Int(i, 1) != live.back().id;
          } else if (b >= 0 && b < static_cast<int64_t>(accepted->size())) {
            (*accepted)[b] = r->Int(i, 1);
          }
        }
        return Status::Ok();
      },
      /*idempotent=*/false);
}

Result<std::vector<EnqueueResult>> PostgresStore::Enqueue(std::span<const EnqueueBatch> batches) {
  std::vector<EnqueueResult> results(batches.size());
  // Duplicates inside the group never reach the database: an insert may not
  // touch one row twice, and the first occurrence is the one that counts.
  std::vector<std::string_view> projects, ids, bodies;
  std::vector<int64_t> batch_of;
  std::unordered_set<std::string> seen;
  std::string key;
  for (size_t b = 0; b < batches.size(); ++b) {
    for (const NewEvent& e : batches[b].events) {
      key.assign(e.project);
      key.push_back('\0');
      key.append(e.insert_id);
      if (!seen.insert(key).second) {
        ++results[b].duplicates;
        continue;
      }
      projects.push_back(e.project);
      ids.push_back(e.insert_id);
      bodies.push_back(e.body);
      batch_of.push_back(static_cast<int64_t>(b));
    }
  }
  if (projects.empty()) return results;
  std::vector<int64_t> accepted(batches.size(), 0);
  // A rotation or drop since this store last read the registry makes one
  // try store nothing (stale); a try after a refresh only meets another if
  // the duty rotated again meanwhile (buckets last hours in production;
  // tests rotate every few ms), hence a bounded number of tries.
  constexpr int kTries = 16;
  for (int attempt = 0;; ++attempt) {
    std::vector<DedupBucket> live;
    {
      std::lock_guard<std::mutex> lock(dedup_mu_);
      live = dedup_live_;
    }
    if (live.empty()) {
      SLUICE_RETURN_IF_ERROR(RefreshDedupBuckets());
      continue;
    }
    PgParams params;
    params.AddArray(std::span<const std::string_view>(projects))
        .AddArray(std::span<const std::string_view>(ids))
        .AddArray(std::span<const std::string_view>(bodies))
        .AddArray(std::span<const int64_t>(batch_of))
        .Add(live.back().id);
    bool stale = false;
    Status st = EnqueueOnce(live, params, &accepted, &stale);
    if (!stale) {
      if (!st.ok()) return st;
      break;
    }
    if (attempt + 1 >= kTries) {
      return st.ok() ? Status::Unavailable("postgres enqueue: dedup buckets kept changing") : st;
    }
    SLUICE_RETURN_IF_ERROR(RefreshDedupBuckets());
  }
  for (size_t b = 0; b < batches.size(); ++b) {
    results[b].accepted = accepted[b];
    results[b].duplicates =
        static_cast<int64_t>(batches[b].events.size()) - results[b].accepted;
  }
  return results;
}

// ---- claim ----

Result<Lease> PostgresStore::Claim(const ClaimRequest& req) {
  if (req.owner.empty() || req.max_events <= 0 || req.lease_ttl_ms <= 0) {
    return Status::InvalidArgument("claim: owner, max_events and lease_ttl_ms are required");
  }
  return ClaimAtomic(req);
}

namespace {

ClaimedEvent ReadClaimed(const PgResult& r, int i) {
  ClaimedEvent e;
  e.seq = r.Int(i, 0);
  e.project = r.Str(i, 1);
  e.insert_id = r.Str(i, 2);
  e.body = r.Str(i, 3);
  e.done_mask = static_cast<uint64_t>(r.Int(i, 4));
  e.attempts = static_cast<int32_t>(r.Int(i, 5));
  e.reclaimed = r.Bool(i, 6);
  return e;
}

#define SLUICE_CLAIM_RETURNING                                                           \
  " RETURNING seq, project, insert_id, body, done_mask, attempts, reclaimed, lease_token, " \
  SLUICE_MS("lease_until")

void FillLease(const PgResult& r, Lease* lease) {
  *lease = Lease{};
  for (int i = 0; i < r.rows(); ++i) lease->events.push_back(ReadClaimed(r, i));
  if (!lease->events.empty()) {
    lease->token = r.Int(0, 7);
    lease->lease_until_ms = r.Int(0, 8);
  }
  // Rows of RETURNING come back in no particular order.
  std::sort(lease->events.begin(), lease->events.end(),
            [](const ClaimedEvent& a, const ClaimedEvent& b) { return a.seq < b.seq; });
}

}  // namespace

Result<Lease> PostgresStore::ClaimAtomic(const ClaimRequest& req) {
  // One statement picks and leases the rows. The subquery walks queue_claim
  // in seq order and locks each candidate; SKIP LOCKED passes over rows a
  // concurrent claim (or a fenced write) has locked, so claimers never wait
  // for or take each other's rows, and the lock is held until this
  // statement's transaction commits with the rows leased. visible_at moves
  // with lease_until, so "pending and visible" and "leased and expired" are
  // the one condition visible_at <= now(). The token is an uncorrelated
  // scalar subquery: an InitPlan, run once, lazily, so the whole batch gets
  // one token and an empty claim burns none. now() is the statement's
  // transaction start on the server: every row gets the same deadline.
  // The picked seqs are an ARRAY(subquery): an uncorrelated InitPlan, so the
  // LIMIT + FOR UPDATE SKIP LOCKED scan runs exactly once and the UPDATE
  // probes the primary key with seq = ANY. The earlier "seq IN (subquery)"
  // let the planner make the subquery the inner side of a nested-loop semi
  // join; with statistics that say the queue is empty (autovacuum of a
  // drained queue leaves reltuples = 0), it did, and re-ran the locking scan
  // once per outer row: quadratic in the queue (claims ran into the statement
  // timeout until the next ANALYZE), and since each re-run skips the rows this
  // statement already updated, it leased every visible row, not max_events
  // (BENCHMARKS.md section 6, "A processing stall on PostgreSQL").
  // "ORDER BY seq, visible_at" is the same order as "ORDER BY seq" (seq is
  // unique) but only queue_claim (seq, visible_at) provides it, so the
  // planner walks that index and tests visible_at inside it, instead of the
  // primary key with a heap visit per leased row at the head of the queue
  // (docs/operations.md has both plans). Since the scan starts at the
  // low-water mark (seq >= queue_head.low), the planner also sees the primary
  // key + an incremental sort on visible_at as an option, and its cost model
  // prefers it; with a queue it believes empty it also sees the primary key +
  // a full sort. Both visit the heap for every live row and every dead index
  // entry from the head, so the claim turns both sorts off for itself; the
  // index order is then the only way to the ORDER BY.
  // One statement (the pipeline's extended protocol takes one per query):
  // set_config(..., true) is SET LOCAL.
  static constexpr char kNoSort[] =
      "SELECT set_config('enable_incremental_sort', 'off', true), "
      "set_config('enable_sort', 'off', true)";
  static constexpr char kClaim[] =
      "UPDATE queue SET state = 'leased', lease_owner = $1, "
      "lease_token = (SELECT sluice_next_token()), "
      "lease_until = now() + $3::bigint * interval '1 millisecond', "
      "visible_at = now() + $3::bigint * interval '1 millisecond', "
      "attempts = attempts + 1, reclaimed = (state = 'leased') "
      "WHERE seq = ANY (ARRAY(SELECT seq FROM queue WHERE seq >= (SELECT low FROM queue_head) "
      "AND state <> 'dead' AND visible_at <= now() "
      "ORDER BY seq, visible_at LIMIT $2 FOR UPDATE SKIP LOCKED))" SLUICE_CLAIM_RETURNING;
  PgParams params;
  params.Add(req.owner).Add(int64_t{req.max_events}).Add(req.lease_ttl_ms);
  Lease lease;
  // Re-running a claim whose outcome was lost is harmless: rows it may have
  // leased expire and are claimed again. The claim's commit waits for the
  // WAL flush (unlike the other lease writes): a claim forgotten in a crash
  // would make its rows claimable at once while its worker is still on them,
  // a second dispatch that no lease expiry explains (docs: "Commit
  // durability").
  Status st = Single(
      [&](PgConn& c) -> Status {
        SLUICE_ASSIGN_OR_RETURN(
            PgResult r, ExecTxn(c, kClaim, params, kNoSort, Flush::kWait));
        FillLease(r, &lease);
        return Status::Ok();
      },
      /*idempotent=*/true);
  if (!st.ok()) return st;
  return lease;
}

Result<int64_t> PostgresStore::PollDepth(int64_t exact_above, int64_t limit) {
  SLUICE_RETURN_IF_ERROR(CheckPollDepth(exact_above, limit));
  // Every live row has low <= seq <= the sequence's last value (the
  // low-water mark's invariant), so their difference bounds the depth from
  // above without reading the queue. Only above exact_above does it count,
  // from low (past the dead index entries below it): a plain count when the
  // bound says it reads at most `limit` rows (the planner may run it in
  // parallel; a LIMIT would keep it on one core), else at most `limit` rows.
  // One statement: CASE evaluates only the branch it takes.
  static constexpr char kDepth[] =
      "WITH b AS MATERIALIZED (SELECT greatest(0, (SELECT CASE WHEN is_called THEN last_value "
      "ELSE last_value - 1 END FROM queue_seq_seq) - (SELECT low FROM queue_head) + 1) AS ub) "
      "SELECT CASE WHEN ub <= $1::bigint THEN ub "
      "WHEN ub <= $2::bigint THEN (SELECT count(*) FROM queue "
      "WHERE state <> 'dead' AND seq >= (SELECT low FROM queue_head)) "
      "ELSE (SELECT count(*) FROM (SELECT 1 FROM queue "
      "WHERE state <> 'dead' AND seq >= (SELECT low FROM queue_head) LIMIT $2::bigint) t) END "
      "FROM b";
  PgParams params;
  params.Add(exact_above).Add(limit);
  int64_t depth = 0;
  Status st = Single(
      [&](PgConn& c) -> Status {
        SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kDepth, params));
        depth = r.Int(0, 0);
        return Status::Ok();
      },
      /*idempotent=*/true);
  if (!st.ok()) return st;
  return depth;
}

// ---- fenced writes ----

// Fenced statements take $2 = the caller's token. A row is held while
// lease_until > now(); the claim takes it over once visible_at (== lease_until
// while leased) <= now(), so "held" and "claimable" never overlap.
#define SLUICE_FENCE " AND lease_token = $2::bigint AND state = 'leased' AND lease_until > now()"

Result<int64_t> PostgresStore::Extend(int64_t token, int64_t lease_ttl_ms) {
  static constexpr char kExtend[] =
      "WITH u AS (UPDATE queue SET "
      "lease_until = now() + $1::bigint * interval '1 millisecond', "
      "visible_at = now() + $1::bigint * interval '1 millisecond' "
      "WHERE lease_token = $2::bigint AND state = 'leased' AND lease_until > now() "
      "RETURNING lease_until) "
      "SELECT count(*), " SLUICE_MS("max(lease_until)") " FROM u";
  return ExtendLease(kExtend, "extend", token, lease_ttl_ms);
}

Result<int64_t> PostgresStore::ExtendLease(const char* sql, const char* what, int64_t token,
                                           int64_t lease_ttl_ms) {
  if (lease_ttl_ms <= 0) {
    return Status::InvalidArgument(fmt::format("{}: lease_ttl_ms must be > 0", what));
  }
  PgParams params;
  params.Add(lease_ttl_ms).Add(token);
  int64_t until = 0;
  Status st = Single(
      [&](PgConn& c) -> Status {
        SLUICE_ASSIGN_OR_RETURN(PgResult r, ExecTxn(c, sql, params, nullptr, Flush::kNoWait));
        if (r.Int(0, 0) == 0) {
          return Status::LeaseLost(fmt::format("{}: token {} holds nothing", what, token));
        }
        until = r.Int(0, 1);
        return Status::Ok();
      },
      /*idempotent=*/true);
  if (!st.ok()) return st;
  return until;
}

Result<MarkPlan> PostgresStore::MarkLocked(PgConn& c, int64_t token,
                                           std::span<const ClaimedEvent> events,
                                           uint64_t external_bits,
                                           const std::vector<InStoreEffects>& in_store,
                                           std::optional<uint64_t> all_bits) {
  // FOR UPDATE: the rows stay locked to COMMIT, so a claimer (SKIP LOCKED)
  // cannot take them over in between even if the lease runs out meanwhile,
  // and a claimer that got there first made us re-check the fence against
  // its committed row (new token: not held any more). Locks are taken in
  // seq order, like every other multi-row lock on the queue.
  static constexpr char kHeld[] =
      "SELECT seq, done_mask FROM queue WHERE seq = ANY($1::bigint[])" SLUICE_FENCE
      " ORDER BY seq FOR UPDATE";
  std::vector<int64_t> seqs;
  seqs.reserve(events.size());
  for (const ClaimedEvent& e : events) seqs.push_back(e.seq);
  PgParams params;
  params.AddArray(std::span<const int64_t>(seqs)).Add(token);
  std::vector<PgStatement> pipeline = BeginNoFlush();
  pipeline.push_back({kHeld, &params});
  SLUICE_ASSIGN_OR_RETURN(std::vector<PgResult> results, c.ExecPipeline(pipeline));
  const PgResult& r = results.back();
  std::vector<HeldRow> held;
  held.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    held.push_back(HeldRow{r.Int(i, 0), static_cast<uint64_t>(r.Int(i, 1))});
  }
  const uint64_t in_store_bits = InStoreBits(in_store);
  MarkPlan plan = all_bits.has_value()
                      ? PlanComplete(events, held, *all_bits, external_bits, in_store_bits)
                      : PlanMarkDone(events, held, external_bits, in_store_bits);
  if (plan.outcome == MarkPlan::Outcome::kLeaseLost) {
    return Status::LeaseLost(
        fmt::format("token {} holds none of the {} rows", token, events.size()));
  }
  return plan;
}

namespace {

// Appends the statement that writes the new done_mask of `rows` to *out, its
// parameters in *p; part of MarkDone/Complete.
void SetMasks(const std::vector<HeldRow>& rows, PgParams* p, std::vector<PgStatement>* out) {
  static constexpr char kSetMasks[] =
      "UPDATE queue SET done_mask = u.m FROM unnest($1::bigint[], $2::bigint[]) AS u(seq, m) "
      "WHERE queue.seq = u.seq";
  if (rows.empty()) return;
  std::vector<int64_t> seqs, masks;
  for (const HeldRow& row : rows) {
    seqs.push_back(row.seq);
    masks.push_back(static_cast<int64_t>(row.done_mask));
  }
  p->AddArray(std::span<const int64_t>(seqs)).AddArray(std::span<const int64_t>(masks));
  out->push_back({kSetMasks, p});
}

// Ends a transaction that wrote nothing (stale effects): releases the row
// locks at once.
Status EndUnchanged(PgConn& c) {
  c.Rollback();
  if (c.broken()) return Status::Unavailable("postgres: rollback failed");
  return Status::Ok();
}

}  // namespace

Result<MarkDoneResult> PostgresStore::MarkDone(const MarkDoneRequest& req) {
  MarkDoneResult result;
  if (req.events.empty()) return result;
  Status st = TxnPipelined([&](PgConn& c, bool* commit_sent) -> Status {
    result = MarkDoneResult{};
    SLUICE_ASSIGN_OR_RETURN(MarkPlan plan,
                            MarkLocked(c, req.token, req.events, req.external_bits, req.in_store,
                                       /*all_bits=*/std::nullopt));
    if (TakeStale(plan, &result)) return EndUnchanged(c);
    result.marked = std::move(plan.marked);
    PgParams masks;
    std::vector<PgStatement> writes;
    SetMasks(plan.mask_writes, &masks, &writes);
    return ApplyEffects(c, req.in_store, writes, commit_sent);
  });
  if (!st.ok()) return st;
  return result;
}

Result<CompleteResult> PostgresStore::Complete(const CompleteRequest& req) {
  static constexpr char kDelete[] = "DELETE FROM queue WHERE seq = ANY($1::bigint[])";
  CompleteResult result;
  if (req.events.empty()) return result;
  Status st = TxnPipelined([&](PgConn& c, bool* commit_sent) -> Status {
    result = CompleteResult{};
    SLUICE_ASSIGN_OR_RETURN(MarkPlan plan, MarkLocked(c, req.token, req.events, req.external_bits,
                                                      req.in_store, req.all_bits));
    if (TakeStale(plan, &result)) return EndUnchanged(c);
    // Rows whose every bit is now set are deleted without writing the mask
    // first; the others keep their new bits. Both under the locks taken above.
    result.deleted = std::move(plan.deleted);
    result.remaining = std::move(plan.remaining);
    PgParams deleted, masks;
    std::vector<PgStatement> writes;
    if (!result.deleted.empty()) {
      deleted.AddArray(std::span<const int64_t>(result.deleted));
      writes.push_back({kDelete, &deleted});
    }
    SetMasks(plan.mask_writes, &masks, &writes);
    return ApplyEffects(c, req.in_store, writes, commit_sent);
  });
  if (!st.ok()) return st;
  if (!result.deleted.empty()) MaybeRefreshHead();
  return result;
}

Result<FailResult> PostgresStore::Fail(const FailRequest& req) {
  // Lock the held rows (fenced, seq order) and read their attempts; the
  // attempt limit and the backoff are decided in C++ by PlanFail, the one
  // definition both stores use; then one UPDATE writes every row and COMMIT
  // follows in the same round trip.
  static constexpr char kHeld[] =
      "SELECT seq, attempts FROM queue WHERE seq = ANY($1::bigint[])" SLUICE_FENCE
      " ORDER BY seq FOR UPDATE";
  static constexpr char kFail[] =
      "UPDATE queue SET "
      "state = CASE WHEN u.dead = 1 THEN 'dead' ELSE 'pending' END, "
      "died_at = CASE WHEN u.dead = 1 THEN now() END, "
      "visible_at = now() + u.delay * interval '1 millisecond', "
      "last_error = $4, lease_owner = NULL, lease_token = NULL, lease_until = NULL "
      "FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u(seq, dead, delay) "
      "WHERE queue.seq = u.seq";
  static constexpr char kCommit[] = "COMMIT";
  FailResult result;
  if (req.seqs.empty()) return result;
  std::vector<int64_t> seqs(req.seqs.begin(), req.seqs.end());
  std::sort(seqs.begin(), seqs.end());
  PgParams held_params;
  held_params.AddArray(std::span<const int64_t>(seqs)).Add(req.token);
  Status st = TxnPipelined([&](PgConn& c, bool* commit_sent) -> Status {
    result = FailResult{};
    std::vector<PgStatement> pipeline = BeginNoFlush();
    pipeline.push_back({kHeld, &held_params});
    SLUICE_ASSIGN_OR_RETURN(std::vector<PgResult> held, c.ExecPipeline(pipeline));
    const PgResult& r = held.back();
    if (r.rows() == 0) {
      return Status::LeaseLost(
          fmt::format("fail: token {} holds none of the {} rows", req.token, req.seqs.size()));
    }
    std::vector<int64_t> rows, dead, delays;
    for (int i = 0; i < r.rows(); ++i) {
      const FailStep step = PlanFail(req.backoff, r.Int(i, 1), BackoffJitter());
      rows.push_back(r.Int(i, 0));
      dead.push_back(step.dead ? 1 : 0);
      delays.push_back(step.delay_ms);
      ++(step.dead ? result.dead : result.retried);
    }
    PgParams params;
    params.AddArray(std::span<const int64_t>(rows))
        .AddArray(std::span<const int64_t>(dead))
        .AddArray(std::span<const int64_t>(delays))
        .Add(req.error);
    const PgStatement writes[] = {{kFail, &params}, {kCommit, nullptr}};
    *commit_sent = true;
    SLUICE_ASSIGN_OR_RETURN(std::vector<PgResult> done, c.ExecPipeline(writes));
    return CheckCommitted(done.back());
  });
  if (!st.ok()) return st;
  return result;
}

}  // namespace sluice
