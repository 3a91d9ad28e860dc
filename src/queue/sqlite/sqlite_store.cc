// The SQLite claim protocol. docs/claim-protocol-sqlite.md has the SQL with
// the reasoning; the comments here say why each step is shaped as it is.
#include "queue/sqlite/sqlite_store.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <filesystem>
#include <random>
#include <thread>

#include "fmt/format.h"
#include "queue/sqlite/sqlite_schema.h"

namespace sluice {

namespace {

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

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

Result<StorePtr> SqliteStore::Open(const StoreOptions& options, const std::string& path) {
  if (path.empty()) return Status::InvalidArgument("sqlite store: empty path");
  if (options.pool_size < 1) return Status::InvalidArgument("sqlite store: pool_size < 1");
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
                          SqliteConn::Open(path, options.sync, options.busy_timeout_ms));
  SLUICE_RETURN_IF_ERROR(MigrateSqlite(*writer));
  std::vector<std::unique_ptr<SqliteConn>> conns;
  for (int i = 0; i < options.pool_size; ++i) {
    SLUICE_ASSIGN_OR_RETURN(auto conn,
                            SqliteConn::Open(path, options.sync, options.busy_timeout_ms));
    conns.push_back(std::move(conn));
  }
  // 4,000 pages (16 MiB at the default 4 KiB page) between checkpoints.
  SLUICE_ASSIGN_OR_RETURN(auto checkpointer, SqliteCheckpointer::Start(path, options.sync, 4000));
  checkpointer->Watch(*writer);
  return StorePtr(new SqliteStore(options, std::move(writer),
                                  std::make_unique<SqlitePool>(std::move(conns)),
                                  std::move(checkpointer)));
}

SqliteStore::SqliteStore(const StoreOptions& options, std::unique_ptr<SqliteConn> writer,
                         std::unique_ptr<SqlitePool> pool,
                         std::unique_ptr<SqliteCheckpointer> checkpointer)
    : options_(options),
      writer_(std::move(writer)),
      pool_(std::move(pool)),
      checkpointer_(std::move(checkpointer)) {}

Status SqliteStore::Write(const WriteFn& fn, Durability durability) {
  std::lock_guard<std::mutex> lock(write_mu_);
  SqliteConn* conn = writer_.get();
  SLUICE_RETURN_IF_ERROR(conn->SetDurable(durability == Durability::kDurable));
  // The busy handler already waited up to busy_timeout_ms; a few kinds of
  // busy (WAL recovery by another process) bypass it, so retry here too.
  const int64_t deadline = SteadyMs() + options_.busy_timeout_ms;
  while (true) {
    Status st = conn->BeginImmediate();
    if (st.ok()) break;
    if (st.code() != Code::kUnavailable || SteadyMs() >= deadline) return st;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  auto now = conn->NowMs();
  if (!now.ok()) {
    conn->Rollback();
    return now.status();
  }
  Status st;
  try {
    st = fn(*conn, *now);
  } catch (const std::exception& e) {
    // A consumer's effect builder runs in here; nothing may escape the store.
    st = Status::Internal(fmt::format("sqlite store: exception in transaction: {}", e.what()));
  }
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

Result<std::vector<EnqueueResult>> SqliteStore::Enqueue(std::span<const EnqueueBatch> batches) {
  // A row counts as new when the dedup upsert changed something: either it
  // inserted, or the existing entry had aged out of the window (then it is
  // refreshed). 0 changes = a duplicate, also within this very group.
  static constexpr char kDedup[] =
      "INSERT INTO dedup(project, insert_id, seen_at) VALUES (?1, ?2, ?3) "
      "ON CONFLICT(project, insert_id) DO UPDATE SET seen_at = excluded.seen_at "
      "WHERE dedup.seen_at < ?4";
  static constexpr char kInsert[] =
      "INSERT INTO queue(project, insert_id, body, visible_at, enqueued_at) "
      "VALUES (?1, ?2, ?3, ?4, ?4)";
  std::vector<EnqueueResult> results;
  Status st = Write([&](SqliteConn& c, int64_t now) -> Status {
    results.assign(batches.size(), EnqueueResult{});
    SLUICE_ASSIGN_OR_RETURN(Stmt dedup, c.Prepare(kDedup));
    SLUICE_ASSIGN_OR_RETURN(Stmt insert, c.Prepare(kInsert));
    dedup.Bind(3, now).Bind(4, now - options_.dedup_window_ms);
    insert.Bind(4, now);
    for (size_t b = 0; b < batches.size(); ++b) {
      for (const NewEvent& e : batches[b].events) {
        dedup.Reset();
        dedup.Bind(1, e.project).Bind(2, e.insert_id);
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

Status SqliteStore::FindHeldLocked(SqliteConn& c, int64_t now, int64_t token,
                                   std::span<const ClaimedEvent> events,
                                   std::vector<size_t>* held_idx,
                                   std::vector<std::pair<int64_t, uint64_t>>* held,
                                   int64_t* lease_rows) {
  held_idx->clear();
  held->clear();
  *lease_rows = 0;
  // One range scan of queue_token returns every row the token still holds
  // (ascending seq); the caller's rows are intersected with it. The write lock
  // is held from here to COMMIT, so what we read cannot change under us.
  static constexpr char kHeldByToken[] =
      "SELECT seq, done_mask FROM queue WHERE lease_token = ?1 AND state = 'leased' "
      "AND lease_until > ?2 ORDER BY seq";
  SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kHeldByToken));
  s.Bind(1, token).Bind(2, now);
  size_t i = 0;
  while (true) {
    SLUICE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    ++*lease_rows;
    const int64_t seq = s.Int(0);
    // events is ascending by seq (Lease::events), but a caller may pass any
    // order: fall back to a search when the merge cursor does not match.
    while (i < events.size() && events[i].seq < seq) ++i;
    size_t k = i;
    if (k >= events.size() || events[k].seq != seq) {
      k = events.size();
      for (size_t j = 0; j < events.size(); ++j) {
        if (events[j].seq == seq) {
          k = j;
          break;
        }
      }
      if (k == events.size()) continue;
    }
    held_idx->push_back(k);
    held->emplace_back(seq, static_cast<uint64_t>(s.Int(1)));
  }
  return Status::Ok();
}

Status SqliteStore::MarkLocked(SqliteConn& c, int64_t now, int64_t token,
                               std::span<const ClaimedEvent> events, uint64_t external_bits,
                               const std::vector<InStoreWork>& in_store, uint64_t skip_bits,
                               MarkDoneResult* marked,
                               std::vector<std::pair<int64_t, uint64_t>>* held,
                               int64_t* lease_rows) {
  marked->marked.clear();
  std::vector<size_t> held_idx;
  SLUICE_RETURN_IF_ERROR(FindHeldLocked(c, now, token, events, &held_idx, held, lease_rows));
  if (held->empty()) {
    return Status::LeaseLost(
        fmt::format("token {} holds none of the {} rows", token, events.size()));
  }
  uint64_t want = external_bits;
  for (const InStoreWork& w : in_store) want |= w.bit;
  if (want == 0) return Status::Ok();

  // In-store consumers see exactly the held rows their bit is not set on yet:
  // the effect and the bit commit together, so a redelivery skips them.
  std::vector<const ClaimedEvent*> fresh;
  for (const InStoreWork& w : in_store) {
    fresh.clear();
    for (size_t k = 0; k < held_idx.size(); ++k) {
      if (((*held)[k].second & w.bit) == 0) fresh.push_back(&events[held_idx[k]]);
    }
    if (fresh.empty() || !w.build) continue;
    Effects effects;
    w.build(std::span<const ClaimedEvent* const>(fresh.data(), fresh.size()), &effects);
    SLUICE_RETURN_IF_ERROR(ApplyEffectsLocked(c, effects));
  }
  SLUICE_ASSIGN_OR_RETURN(Stmt set, c.Prepare(kSetMask));
  for (auto& [seq, mask] : *held) {
    const uint64_t next = mask | want;
    if (next == mask) continue;
    // Complete deletes a row once every bit is set: writing its mask first
    // would only rewrite a row that is about to go.
    if ((next & skip_bits) != skip_bits || skip_bits == 0) {
      set.Reset();
      SLUICE_RETURN_IF_ERROR(set.Bind(1, seq).Bind(2, static_cast<int64_t>(next)).Run());
    }
    mask = next;
    marked->marked.push_back(seq);
  }
  return Status::Ok();
}

Result<MarkDoneResult> SqliteStore::MarkDone(const MarkDoneRequest& req) {
  MarkDoneResult result;
  if (req.events.empty()) return result;
  std::vector<std::pair<int64_t, uint64_t>> held;
  Status st = Write([&](SqliteConn& c, int64_t now) -> Status {
    int64_t lease_rows = 0;
    return MarkLocked(c, now, req.token, req.events, req.external_bits, req.in_store,
                      /*skip_bits=*/0, &result, &held, &lease_rows);
  }, Durability::kLease);
  if (!st.ok()) return st;
  return result;
}

Result<CompleteResult> SqliteStore::Complete(const CompleteRequest& req) {
  CompleteResult result;
  if (req.events.empty()) return result;
  Status st = Write([&](SqliteConn& c, int64_t now) -> Status {
    result = CompleteResult{};
    MarkDoneResult marked;
    std::vector<std::pair<int64_t, uint64_t>> held;
    int64_t lease_rows = 0;
    SLUICE_RETURN_IF_ERROR(MarkLocked(c, now, req.token, req.events, req.external_bits,
                                      req.in_store, req.all_bits, &marked, &held, &lease_rows));
    for (const auto& [seq, mask] : held) {
      if ((mask & req.all_bits) != req.all_bits) {
        result.remaining.push_back(seq);
      } else {
        result.deleted.push_back(seq);
      }
    }
    if (result.remaining.empty() && static_cast<int64_t>(held.size()) == lease_rows) {
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
  }, Durability::kLease);
  if (!st.ok()) return st;
  return result;
}

namespace {

// min(cap, base * 2^(attempts-1)) scaled by a uniform factor in [1-jitter, 1].
int64_t BackoffDelayMs(const BackoffPolicy& p, int64_t attempts) {
  int64_t delay = std::max<int64_t>(p.base_ms, 0);
  for (int64_t i = 1; i < attempts && delay < p.cap_ms; ++i) delay *= 2;
  delay = std::min(delay, p.cap_ms);
  const double jitter = std::clamp(p.jitter, 0.0, 1.0);
  thread_local std::mt19937_64 rng(std::random_device{}());
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  return std::max<int64_t>(p.min_delay_ms,
                           static_cast<int64_t>(static_cast<double>(delay) * (1.0 - jitter * u)));
}

}  // namespace

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
    SLUICE_ASSIGN_OR_RETURN(
        Stmt held, c.Prepare(kHeldAttempts));
    SLUICE_ASSIGN_OR_RETURN(Stmt dead, c.Prepare(kDead));
    SLUICE_ASSIGN_OR_RETURN(Stmt retry, c.Prepare(kRetry));
    held.Bind(3, req.token).Bind(4, now);
    for (int64_t seq : req.seqs) {
      held.Reset();
      held.Bind(1, seq);
      SLUICE_ASSIGN_OR_RETURN(bool row, held.Step());
      if (!row) continue;
      const int64_t attempts = held.Int(0);
      if (attempts >= req.backoff.max_attempts) {
        dead.Reset();
        SLUICE_RETURN_IF_ERROR(dead.Bind(1, seq).Bind(2, now).Bind(3, req.error).Run());
        ++result.dead;
      } else {
        retry.Reset();
        const int64_t at = now + BackoffDelayMs(req.backoff, attempts);
        SLUICE_RETURN_IF_ERROR(retry.Bind(1, seq).Bind(2, at).Bind(3, req.error).Run());
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

// ?1 project or '', ?2 "consumer NAME:" or '', ?3 JSON array of seqs or NULL,
// ?5 error text or '' (lower() folds ASCII only, as documented for DeadFilter).
// last_error names each consumer that failed the row, "; "-separated
// ("consumer a: ..; consumer b: .."), so ?2 matches at the start or after "; ".
#define SLUICE_DEAD_FILTER                                                   \
  "state = 'dead' AND (?1 = '' OR project = ?1) "                            \
  "AND (?2 = '' OR substr(coalesce(last_error, ''), 1, length(?2)) = ?2 "    \
  "     OR instr(coalesce(last_error, ''), '; ' || ?2) > 0) "                \
  "AND (?3 IS NULL OR seq IN (SELECT value FROM json_each(?3))) "            \
  "AND (?5 = '' OR instr(lower(coalesce(last_error, '')), lower(?5)) > 0)"

struct BoundFilter {
  std::string prefix;
  std::string seqs;  // "" = no seq filter
};

BoundFilter MakeFilter(const DeadFilter& f) {
  BoundFilter b;
  if (!f.consumer.empty()) b.prefix = "consumer " + f.consumer + ":";
  if (!f.seqs.empty()) {
    b.seqs.push_back('[');  // (not `= "["`: GCC 12 -Wrestrict false positive)
    for (size_t i = 0; i < f.seqs.size(); ++i) {
      if (i > 0) b.seqs += ',';
      b.seqs += std::to_string(f.seqs[i]);
    }
    b.seqs.push_back(']');
  }
  return b;
}

void BindFilter(Stmt& s, const DeadFilter& f, const BoundFilter& b) {
  s.Bind(1, f.project).Bind(2, b.prefix).Bind(5, f.error);
  if (b.seqs.empty()) {
    s.BindNull(3);
  } else {
    s.Bind(3, b.seqs);
  }
}

}  // namespace

Result<std::vector<DeadEvent>> SqliteStore::ListDead(const DeadFilter& filter) {
  static constexpr char kList[] =
      "SELECT seq, project, insert_id, body, attempts, done_mask, coalesce(last_error, ''), "
      "coalesce(died_at, 0) FROM queue WHERE " SLUICE_DEAD_FILTER " ORDER BY seq LIMIT ?4";
  const BoundFilter b = MakeFilter(filter);
  std::vector<DeadEvent> out;
  Status st = Read([&](SqliteConn& c, int64_t) -> Status {
    out.clear();
    SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kList));
    BindFilter(s, filter, b);
    s.Bind(4, static_cast<int64_t>(filter.limit > 0 ? filter.limit : 100));
    while (true) {
      SLUICE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      DeadEvent d;
      d.seq = s.Int(0);
      d.project = s.Str(1);
      d.insert_id = s.Str(2);
      d.body = s.Str(3);
      d.attempts = static_cast<int32_t>(s.Int(4));
      d.done_mask = static_cast<uint64_t>(s.Int(5));
      d.last_error = s.Str(6);
      d.died_at_ms = s.Int(7);
      out.push_back(std::move(d));
    }
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return out;
}

Result<int64_t> SqliteStore::RequeueDead(const DeadFilter& filter) {
  static constexpr char kRequeue[] =
      "UPDATE queue SET state = 'pending', visible_at = ?4, attempts = 0, died_at = NULL, "
      "reclaimed = 0 WHERE " SLUICE_DEAD_FILTER;
  const BoundFilter b = MakeFilter(filter);
  int64_t n = 0;
  Status st = Write([&](SqliteConn& c, int64_t now) -> Status {
    SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kRequeue));
    BindFilter(s, filter, b);
    SLUICE_RETURN_IF_ERROR(s.Bind(4, now).Run());
    n = s.Changes();
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return n;
}

Result<int64_t> SqliteStore::PurgeDead(const DeadFilter& filter) {
  static constexpr char kPurge[] = "DELETE FROM queue WHERE " SLUICE_DEAD_FILTER;
  const BoundFilter b = MakeFilter(filter);
  int64_t n = 0;
  Status st = Write([&](SqliteConn& c, int64_t) -> Status {
    SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kPurge));
    BindFilter(s, filter, b);
    SLUICE_RETURN_IF_ERROR(s.Run());
    n = s.Changes();
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return n;
}

}  // namespace sluice
